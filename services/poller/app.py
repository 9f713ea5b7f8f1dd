"""The poller's Celery app: Redis broker (no result backend), the commands of
``shared.commands`` with retries declared once on each task, and the redbeat schedule.

``make_app`` builds everything from settings; importing this module has no side effects.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from typing import Any

from celery import Celery, Task

from services.poller import lifecycle, metrics
from services.poller.context import Context
from services.poller.provision import give_up, provision
from shared import commands, keys, redis_client
from shared.kaltura import KalturaFacade, errors
from shared.kaltura.errors import KalturaRetryableError
from shared.kaltura.models import VendorTask
from shared.settings import GatewaySettings, IngestSettings, KalturaSettings, PollerSettings, load

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
    client = redis_client.sync_client(redis_url, **BROKER_SOCKET_OPTIONS)
    ctx = Context(
        redis=client,
        kaltura=KalturaFacade(kaltura, observe=metrics.observe_kaltura),
        kaltura_settings=kaltura,
        poller=poller,
        media_url=media_url,
        caption_url=caption_url or load(GatewaySettings).public_url,
        window_margin_seconds=window_margin_seconds,
    )
    app.reachlive = ctx  # type: ignore[attr-defined]
    _register(app, ctx)
    return app


def _send_provision(app: Celery, job: VendorTask, holder: str) -> None:
    # The accessKey travels in the message (the worker needs it as ks); kwargsrepr keeps it out
    # of Celery's logs and events.
    app.send_task(
        commands.PROVISION,
        args=[job.id],
        kwargs={"job": dataclasses.asdict(job)},
        task_id=holder,
        queue=commands.QUEUE,
        kwargsrepr=repr({"job": job.public()}),
    )


def _send_check(
    app: Celery, event_id: str, task_ids: list[str], jobs: dict[str, VendorTask], holder: str, countdown: float
) -> None:
    app.send_task(
        commands.CHECK_EVENT,
        args=[event_id, task_ids],
        kwargs={"jobs": {t: dataclasses.asdict(j) for t, j in jobs.items()}},
        task_id=holder,
        queue=commands.QUEUE,
        countdown=countdown or None,
        kwargsrepr=repr({"jobs": {t: j.public() for t, j in jobs.items()}}),
    )


def _register(app: Celery, ctx: Context) -> None:
    ctx.send_provision = lambda job, holder: _send_provision(app, job, holder)
    ctx.send_check = lambda event_id, task_ids, jobs, holder, countdown: _send_check(
        app, event_id, task_ids, jobs, holder, countdown
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
        self: Task, event_id: str, task_ids: list[str], jobs: dict[str, Any] | None = None
    ) -> dict[str, int]:
        listing = {t: VendorTask(**j) for t, j in (jobs or {}).items()}
        try:
            return lifecycle.check_event(ctx, str(event_id), [str(t) for t in task_ids], listing)
        finally:
            ctx.check_lock(str(event_id), self.request.id or "").release()

    @app.task(name=commands.PROVISION, shared=False, bind=True, ignore_result=True, **retry)
    def provision_task(self: Task, task_id: str, job: dict[str, Any] | None = None) -> str:
        holder = self.request.id or str(uuid.uuid4())
        vendor_task = VendorTask(**job) if job else None
        try:
            return provision(ctx, task_id, vendor_task, holder)
        except KalturaRetryableError as exc:
            spent = self.request.retries >= self.max_retries or (
                exc.code == errors.CANNOT_UPDATE_SCHEDULE_EVENT_FEATURE
                and self.request.retries >= ctx.poller.feature_lock_retries
            )
            if spent:
                return give_up(ctx, str(task_id), vendor_task, holder, exc)
            log.info("provision will retry after %s", exc.code, extra={"task_id": task_id})
            ctx.lock(str(task_id), holder).extend()
            raise

    @app.task(name=commands.PROCESSING, shared=False, ignore_result=True, **retry)
    def processing(event_id: str) -> int:
        return lifecycle.processing(ctx, str(event_id))

    @app.task(name=commands.FINALIZE, shared=False, ignore_result=True, **retry)
    def finalize(task_id: str, outcome: str, reason: str = "") -> str:
        return lifecycle.finalize(ctx, str(task_id), outcome, reason)
