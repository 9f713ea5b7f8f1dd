"""The poller's Celery app: Redis broker (no result backend), the commands of
``shared.commands`` with retries declared once on each task, and the redbeat schedule.

``make_app`` builds everything from settings; importing this module has no side effects.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from celery import Celery, Task

from services.poller import lifecycle, metrics
from services.poller.context import Context
from services.poller.provision import give_up, provision
from services.poller.resend import resend_status
from services.poller.sealing import Sealer
from shared import commands, keys, redis_client
from shared.kaltura import KalturaFacade, errors
from shared.kaltura.errors import KalturaRetryableError
from shared.settings import CommonSettings, GatewaySettings, IngestSettings, KalturaSettings, PollerSettings, load

log = logging.getLogger(__name__)

POLL_ENTRY = "reach-poll"
# Socket deadlines of the broker's and redbeat's Redis connections: longer than kombu's BRPOP
# block (1 s), short enough that a frozen Redis is an error within seconds, not a hang.
BROKER_SOCKET_OPTIONS = {"socket_timeout": 10.0, "socket_connect_timeout": 5.0}


def make_app(
    redis_url: str,
    kaltura: KalturaSettings | None = None,
    poller: PollerSettings | None = None,
    *,
    media_url: str | None = None,
    caption_url: str | None = None,
    window_margin_seconds: float | None = None,
) -> Celery:
    kaltura = kaltura or load(KalturaSettings)
    poller = poller or load(PollerSettings)
    if media_url is None or window_margin_seconds is None:
        ingest = load(IngestSettings)  # the poller judges windows with the ingest's margin
        media_url = media_url or ingest.public_url
        window_margin_seconds = ingest.window_margin_seconds if window_margin_seconds is None else window_margin_seconds
    # A redis+sentinel:// URL becomes kombu's sentinel:// broker and redbeat's sentinel options
    # (shared/redis_client.py): every Redis client of the poller follows a failover.
    broker_url, broker_options = redis_client.celery_broker(redis_url)
    app = Celery("reachlive-poller", broker=broker_url, set_as_current=False)
    app.conf.update(
        broker_transport_options={**commands.broker_options(), **BROKER_SOCKET_OPTIONS, **broker_options},
        # Issue 18: ride through Redis outages in process, at start too, without giving up (the
        # worker's reconnect loop is services/poller/broker.py; the beat's, services/poller/beat.py).
        broker_connection_retry_on_startup=True,
        broker_connection_retry=True,
        broker_connection_max_retries=None,
        broker_channel_error_retry=True,
        task_default_queue=commands.QUEUE,
        task_ignore_result=True,
        result_backend=None,
        task_serializer="json",
        accept_content=["json"],
        task_acks_late=True,  # a worker that dies mid-task leaves it for another (tasks are idempotent)
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        # redbeat: one leader among beat replicas (its lock), schedule kept in Redis.
        beat_scheduler="services.poller.beat:Scheduler",  # redbeat's, through outages
        beat_max_loop_interval=poller.beat_max_interval_seconds,
        # Without timeouts a frozen Redis (SIGSTOP, a stalled failover) hangs the beat's tick for
        # good; with them, the tick fails, reports the outage and retries.
        **redis_client.redbeat_settings(redis_url, **BROKER_SOCKET_OPTIONS),
        redbeat_key_prefix=keys.BEAT_PREFIX,
        redbeat_lock_timeout=int(poller.beat_lock_seconds),
        beat_schedule={
            POLL_ENTRY: {
                "task": commands.POLL,
                "schedule": kaltura.poll_seconds,
                # A poll older than its period is worth nothing: the next one is coming.
                "options": {"queue": commands.QUEUE, "expires": max(1.0, kaltura.poll_seconds)},
            },
        },
    )
    client = redis_client.sync_client(
        redis_url, client_name=redis_client.client_name("poller"), **BROKER_SOCKET_OPTIONS
    )
    ctx = Context(
        redis=client,
        kaltura=KalturaFacade(kaltura, observe=metrics.observe_kaltura),
        kaltura_settings=kaltura,
        poller=poller,
        media_url=media_url,
        caption_url=caption_url or load(GatewaySettings).public_url,
        window_margin_seconds=window_margin_seconds,
        sealer=Sealer.from_settings(poller),
        retention_seconds=load(CommonSettings).retention_seconds,
    )
    app.reachlive = ctx  # type: ignore[attr-defined]
    _register(app, ctx)
    return app


# Messages carry ids, never an accessKey (issue 19): a Celery message sits in Redis in the clear,
# is redelivered and may be logged. The worker re-reads the job from getJobs (vendor KS) to
# provision, and the task's sealed accessKey from the registry to check it.
def _send_provision(app: Celery, task_id: str, holder: str) -> None:
    app.send_task(commands.PROVISION, args=[task_id], task_id=holder, queue=commands.QUEUE)


def _send_check(
    app: Celery, event_id: str, task_ids: list[str], listed: dict[str, int], holder: str, countdown: float
) -> None:
    app.send_task(
        commands.CHECK_EVENT,
        args=[event_id, task_ids],
        kwargs={"listed": listed},
        task_id=holder,
        queue=commands.QUEUE,
        countdown=countdown or None,
    )


def _listed(listed: dict[str, Any] | None, jobs: dict[str, Any] | None) -> dict[str, int]:
    """Task id → the status getJobs listed; ``jobs`` is a message of the previous version (whole
    jobs, accessKeys included: only their status is read)."""
    if listed is not None:
        return {str(t): int(s) for t, s in listed.items()}
    return {str(t): int(j.get("status", 0)) for t, j in (jobs or {}).items()}


def _register(app: Celery, ctx: Context) -> None:
    ctx.send_provision = lambda task_id, holder: _send_provision(app, task_id, holder)
    ctx.send_check = lambda event_id, task_ids, listed, holder, countdown: _send_check(
        app, event_id, task_ids, listed, holder, countdown
    )
    retry: dict[str, Any] = {
        "autoretry_for": (KalturaRetryableError,),
        "retry_backoff": True,
        "retry_backoff_max": ctx.poller.retry_backoff_max_seconds,
        "retry_jitter": True,
        "max_retries": ctx.poller.max_retries,
    }

    # A failed poll or reconcile is not retried: the next beat tick is the retry.
    @app.task(name=commands.POLL, shared=False, ignore_result=True)
    def poll() -> dict[str, int]:
        return lifecycle.poll(ctx)

    @app.task(name=commands.RECONCILE, shared=False, ignore_result=True)
    def reconcile() -> dict[str, int]:
        return lifecycle.reconcile(ctx)

    @app.task(name=commands.CHECK_EVENT, shared=False, bind=True, ignore_result=True)
    def check_event(
        self: Task,
        event_id: str,
        task_ids: list[str],
        listed: dict[str, int] | None = None,
        jobs: dict[str, Any] | None = None,
    ) -> dict[str, int]:
        try:
            return lifecycle.check_event(ctx, str(event_id), [str(t) for t in task_ids], _listed(listed, jobs))
        finally:
            ctx.check_lock(str(event_id), self.request.id or "").release()

    @app.task(name=commands.PROVISION, shared=False, bind=True, ignore_result=True, **retry)
    def provision_task(self: Task, task_id: str, job: dict[str, Any] | None = None) -> str:
        # ``job``: a message of the previous version carried the listed job, accessKey included;
        # it is not used: the job is re-read from getJobs now (fresher, too, after a queue wait).
        holder = self.request.id or str(uuid.uuid4())
        try:
            return provision(ctx, task_id, None, holder)
        except KalturaRetryableError as exc:
            spent = self.request.retries >= self.max_retries or (
                exc.code == errors.CANNOT_UPDATE_SCHEDULE_EVENT_FEATURE
                and self.request.retries >= ctx.poller.feature_lock_retries
            )
            if spent:
                return give_up(ctx, str(task_id), None, holder, exc)
            log.info("provision will retry after %s", exc.code, extra={"task_id": task_id})
            ctx.lock(str(task_id), holder).extend()
            raise

    @app.task(name=commands.PROCESSING, shared=False, ignore_result=True, **retry)
    def processing(event_id: str) -> int:
        return lifecycle.processing(ctx, str(event_id))

    @app.task(name=commands.FINALIZE, shared=False, ignore_result=True, **retry)
    def finalize(task_id: str, outcome: str, reason: str = "", resend: bool = False) -> str:
        if resend:  # reachlive admin resend-status: the stored final status again (resend.py)
            return resend_status(ctx, str(task_id))
        return lifecycle.finalize(ctx, str(task_id), outcome, reason)
