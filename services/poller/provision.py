"""``reach.provision`` (docs/design.md section 2, item 2): one PENDING task to SCHEDULED, or refused.

Order of work, chosen so that no key is ever handed out that the registry does not know, and a
re-run after a crash never hands out a second set silently:

1. the provision lock (``keys.provision_lock``) and the registry: done or in progress → no-op;
   a task whose window has passed (getJobs' dates) → ERROR instead, once (``window.py``);
   the job (its accessKey included) is read from getJobs with the vendor KS here, never taken from
   the message (issue 19: Celery messages carry ids only);
2. ``entryVendorTask.get`` (reach_vendor profile) with the accessKey: catalog item, reach profile;
3. refusals → ERROR with a readable errDescription: not a live feature, unsupported language,
   window longer than ``durationLimit``, a source language other than the event's;
4. ``scheduleEvent.get``: the task's feature ``LiveCaptionFeature-reach-<taskId>``; gone → cancel;
5. if the feature already carries endpoints whose hashes are ours (a crash after
   updateLiveFeature), keep them; otherwise fresh key/token: registry first (with the accessKey
   sealed, ``sealing.py``, for reconcile's checks), then
   ``updateLiveFeature`` (the four fields), and a warning when endpoints of someone else are replaced;
6. ``updateJob`` SCHEDULED with ``externalTaskId`` (vendor KS), then the registry status.
"""

from __future__ import annotations

import logging
import time

from services.poller import metrics, usage, window
from services.poller.context import Context
from services.poller.store import drop_indexes, find_task, merge_event, set_task_fields
from shared import journal, keys, registry
from shared.hashing import new_secret, same_secret
from shared.kaltura import errors
from shared.kaltura.errors import KalturaError, KalturaPermanentError
from shared.kaltura.languages import UnsupportedLanguage, resolve
from shared.kaltura.models import (
    ABORTED,
    ERROR,
    FEATURE_PREFIX,
    FINAL_STATUSES,
    LIVE_CAPTION,
    LIVE_FEATURES,
    LIVE_TRANSLATION,
    PENDING,
    PROCESSING,
    SCHEDULED,
    CatalogItem,
    ScheduleEvent,
    TaskDetails,
    VendorTask,
    feature_name,
)
from shared.logs import log_context
from shared.registry import EventRecord, TaskRecord

log = logging.getLogger(__name__)

# Codes that mean the order is gone: cancel (revoke what we hold), never ERROR it.
CANCEL_CODES = frozenset(
    {
        errors.ENTRY_VENDOR_TASK_NOT_FOUND,
        errors.FEATURE_NAME_NOT_FOUND,
        errors.CANNOT_UPDATE_STATUS_OF_TASK_WHICH_IS_IN_FINAL_STATE,
        errors.SCHEDULE_EVENT_ID_NOT_FOUND,
    }
)


class Refusal(Exception):
    """The task cannot be served; the message is its errDescription."""


def provision(ctx: Context, task_id: str, job: VendorTask | None, holder: str) -> str:
    """Returns the outcome: scheduled | duplicate | refused | cancelled | gone | failed.

    Retryable Kaltura errors propagate (the Celery task retries); the lock stays with ``holder``.
    """
    task_id = str(task_id)
    with log_context(task_id=task_id):
        lock = ctx.lock(task_id, holder)
        if not lock.take():
            metrics.TASKS.labels("duplicate").inc()
            log.info("provision already in progress elsewhere: no-op")
            return "duplicate"
        started = time.perf_counter()
        try:
            done, job = _job(ctx, task_id, job)
            outcome = done or _provision(ctx, task_id, job)
        except KalturaPermanentError as exc:
            outcome = handle_permanent(ctx, task_id, job, exc)
        except KalturaError:
            raise  # retryable: keep the lock through the Celery retry
        except Exception:
            lock.release()
            raise
        lock.release()
        if outcome == "scheduled":
            metrics.PROVISION_SECONDS.observe(time.perf_counter() - started)
        metrics.TASKS.labels(outcome).inc()
        return outcome


def _job(ctx: Context, task_id: str, job: VendorTask | None) -> tuple[str | None, VendorTask | None]:
    """(an outcome if there is nothing to do, the job to provision): done or in progress in the
    registry → duplicate; else the job from getJobs (vendor KS) unless given (in-process callers)."""
    rec = find_task(ctx.redis, task_id)
    if rec is not None and (rec.status in (SCHEDULED, PROCESSING) or rec.status in FINAL_STATUSES or rec.cancelled):
        log.info("task already provisioned: no-op", extra={"status": rec.status})
        return "duplicate", job
    if job is None:
        job = ctx.kaltura.find_job(task_id)
        if job is None and rec is not None:
            # An earlier attempt (this one before its retry) stored endpoints that may have
            # reached Kaltura; the order has left PENDING/SCHEDULED without us: final or gone.
            cancel(ctx, task_id, "no longer pending or scheduled at Kaltura")
            return "cancelled", None
        if job is None:
            log.info("task no longer pending or scheduled at Kaltura: nothing to provision")
            return "gone", None
    if job.status not in (PENDING, SCHEDULED):
        return "gone", job
    return None, job


def _provision(ctx: Context, task_id: str, job: VendorTask) -> str:
    with log_context(event_id=job.scheduled_event_id):
        late = _past_window(ctx, task_id, job)
        if late is not None:
            return late
        details = ctx.kaltura.get_task(task_id, job.access_key)
        if details.task.status in FINAL_STATUSES:
            cancel(ctx, task_id, f"task is final at Kaltura (status {details.task.status})")
            return "cancelled"
        try:
            plan = _plan(ctx, task_id, job, details)
        except Refusal as exc:
            refuse(ctx, task_id, str(exc), str(job.scheduled_event_id or ""))
            return "refused"
        event = ctx.kaltura.get_schedule_event(job.scheduled_event_id, job.access_key, task_id)
        feature = event.feature(task_id)
        if feature is None:
            cancel(ctx, task_id, f"{feature_name(task_id)} is not on the scheduled event (FEATURE_NAME_NOT_FOUND)")
            return "cancelled"
        try:
            _check_event_language(ctx, event, plan)
        except Refusal as exc:
            refuse(ctx, task_id, str(exc), str(job.scheduled_event_id or ""))
            return "refused"
        rec = _endpoints(ctx, task_id, job, event, plan, find_task(ctx.redis, task_id))
        external = ctx.external_task_id(event.id, task_id)
        if details.task.status != SCHEDULED:
            ctx.kaltura.update_job(task_id, SCHEDULED, external_task_id=external)
        elif job.external_task_id != external:
            ctx.kaltura.update_job(task_id, external_task_id=external)
        set_task_fields(ctx.redis, rec, status=str(SCHEDULED))
        ends = max(job.end, event.end) + event.post_end
        registry.expire_event_at(ctx.redis, rec.event, *ctx.expire_event_after(ends))
        log.info("task scheduled", extra={"kind": plan.kind, "language": plan.language})
        journal.record(
            ctx.redis, rec.event, "provisioned", task=task_id, service=plan.kind, language=plan.language_code,
            window=f"{journal.utc(rec.start)} to {journal.utc(rec.end)}", status_sent="SCHEDULED",
        )  # fmt: skip
        return "scheduled"


def _past_window(ctx: Context, task_id: str, job: VendorTask) -> str | None:
    """A task whose window has passed is never provisioned, whatever the registry holds (its
    records expire REACHLIVE_RETENTION_DAYS after the window, and Kaltura keeps listing an
    unfinished task): it goes ERROR instead, and Kaltura stops listing it, so this happens once.
    Judged from getJobs' own dates (and the event's registry window, if the registry still has
    it: a moved window)."""
    event = registry.read_event_sync(ctx.redis, str(job.scheduled_event_id)) if job.scheduled_event_id else None
    start, end = window.bounds(float(job.start), float(job.end), event)
    if not window.passed(ctx.clock(), end, ctx.window_margin_seconds):
        return None
    # SCHEDULED: it was given a mediaUrl and never used it (else it would be PROCESSING).
    no_show = job.status == SCHEDULED and not (event is not None and event.session == "1")
    reason = window.no_media_reason(start, end, ctx.media_url) if no_show else window.expired_reason(start, end)
    refuse(ctx, task_id, reason, str(job.scheduled_event_id or ""))
    if no_show:
        metrics.NO_SHOWS.inc()
        if job.scheduled_event_id:
            journal.record(ctx.redis, str(job.scheduled_event_id), "no_show", task=task_id)
    return "no_show" if no_show else "expired"


class _Plan:
    def __init__(
        self,
        feature: int,
        kind: str,
        source: str,
        source_code: str,
        language: str,
        language_code: str,
        max_chars: int,
        profanity: bool,
    ) -> None:
        self.feature, self.kind = feature, kind
        self.source, self.source_code = source, source_code
        self.language, self.language_code = language, language_code
        self.max_chars, self.profanity = max_chars, profanity


def _plan(ctx: Context, task_id: str, job: VendorTask, details: TaskDetails) -> _Plan:
    """What to serve, or a Refusal with the errDescription for a Kaltura admin."""
    item = details.catalog_item
    if item is None and job.catalog_item_id:
        item = ctx.kaltura.get_catalog_item(job.catalog_item_id, job.access_key, task_id)
    item = item or CatalogItem()
    # The trimmed `get` has no serviceFeature (facts.md): the catalog item's, else getJobs'.
    feature = item.service_feature or job.service_feature or details.task.service_feature
    if feature not in LIVE_FEATURES:
        raise Refusal(
            f"reachlive serves live captions and live translations only (serviceFeature {LIVE_CAPTION} or "
            f"{LIVE_TRANSLATION}); this task's catalog item has serviceFeature {feature or 'unknown'}"
        )
    try:
        source = resolve(item.source_language)
        target = resolve(item.target_language) if feature == LIVE_TRANSLATION else source
    except UnsupportedLanguage as exc:
        raise Refusal(str(exc)) from None
    if item.duration_limit > 0 and job.end > job.start:
        minutes = (job.end - job.start) / 60
        if minutes > item.duration_limit:
            raise Refusal(
                f"the scheduled window is {minutes:g} minutes, longer than the catalog item's "
                f"durationLimit of {item.duration_limit} minutes"
            )
    profile = details.reach_profile
    return _Plan(
        feature=feature,
        kind="caption" if feature == LIVE_CAPTION else "translation",
        source=source.iso,
        source_code=source.code,
        language=target.iso,
        language_code=target.code,
        max_chars=(profile.max_chars if profile and profile.max_chars > 0 else 0),
        profanity=bool(profile and profile.profanity_removal),
    )


def _check_event_language(ctx: Context, event: ScheduleEvent, plan: _Plan) -> None:
    """One media session per event speaks one language (docs/design.md section 2): a task that orders
    another source language for the same event cannot share it."""
    current = registry.read_event_sync(ctx.redis, str(event.id))
    if current is None or current.status == "cancelled":
        return
    live_tasks = [
        t
        for t in (
            registry.read_task_sync(ctx.redis, str(event.id), x) for x in ctx.redis.smembers(keys.event_tasks(event.id))
        )
        if t is not None and not t.cancelled and t.status not in FINAL_STATUSES
    ]
    if live_tasks and current.source_language and current.source_language != plan.source:
        raise Refusal(
            f"this event's other live caption orders use source language {current.source_language!r}; "
            f"one event is captioned from one source language, and this order asks for {plan.source!r}"
        )


def _endpoints(
    ctx: Context, task_id: str, job: VendorTask, event: ScheduleEvent, plan: _Plan, rec: TaskRecord | None
) -> TaskRecord:
    """Registry first, then Kaltura: the endpoints of this task, reusing ours if they went out."""
    feature = event.feature(task_id)
    assert feature is not None
    ours = (
        rec is not None
        and feature.media_key
        and feature.caption_token
        and same_secret(feature.media_key, rec.media_key_hash)
        and same_secret(feature.caption_token, rec.caption_token_hash)
    )
    features = [f for f in event.features if f.system_name.startswith(FEATURE_PREFIX)]
    merge_event(
        ctx.redis,
        EventRecord(
            id=str(event.id),
            partner_id=str(event.partner_id or job.partner_id),
            start=float(event.start or job.start),
            end=float(event.end or job.end),
            pre_start=float(max([f.pre_start for f in features] + [0])),
            post_end=float(max([f.post_end for f in features] + [0])),
            source_language=plan.source,
            source_language_code=plan.source_code,
        ),
    )
    kept = {k: v for k, v in (rec.extra if rec else {}).items() if k != keys.TASK_ACCESS_KEY}
    record = TaskRecord(
        id=task_id,
        event=str(event.id),
        partner_id=str(job.partner_id),
        feature=plan.feature,
        kind=plan.kind,
        language=plan.language,
        language_code=plan.language_code,
        max_chars=plan.max_chars or 26,
        profanity=plan.profanity,
        status=PENDING,
        start=float(job.start or event.start),
        end=float(job.end or event.end),
        extra={
            **kept,
            keys.TASK_ACCESS_KEY_SEALED: ctx.sealer.seal(task_id, job.access_key),
            "external_task_id": ctx.external_task_id(event.id, task_id),
        },
    )
    if rec is not None and keys.TASK_ACCESS_KEY in rec.extra:  # a record of the previous version
        ctx.redis.hdel(keys.task(record.event, task_id), keys.TASK_ACCESS_KEY)
    if ours:
        # A run before us crashed after updateLiveFeature: Kaltura holds our endpoints already.
        assert rec is not None
        record.media_key_hash, record.caption_token_hash = rec.media_key_hash, rec.caption_token_hash
        registry.write_task(ctx.redis, record)
        log.info("endpoints already given to Kaltura by an earlier run: kept")
        return record
    if feature.media_key or feature.caption_token:
        # Not ours (e.g. the registry was lost): Kaltura's copies are unknown to us and cannot
        # work; replace them, loudly.
        log.warning("replacing endpoints on the live feature that the registry does not know")
        metrics.TASKS.labels("rekeyed").inc()
    if rec is not None:
        drop_indexes(ctx.redis, rec)  # a previous attempt's keys that never reached Kaltura
    media_key, caption_token = new_secret(), new_secret()
    registry.write_task(ctx.redis, record, media_key=media_key, caption_token=caption_token)
    ctx.kaltura.update_live_feature(
        event.id,
        task_id,
        job.access_key,
        media_url=ctx.media_url,
        media_key=media_key,
        caption_url=ctx.caption_url,
        caption_token=caption_token,
    )
    return record


def refuse(ctx: Context, task_id: str, reason: str, event_id: str = "") -> None:
    """ERROR with a readable errDescription; Kaltura removes the feature, we hold nothing.
    ``event_id``: the order's event, for its history when the registry does not have the task."""
    log.warning("refusing task: %s", reason)
    refused = ""
    try:
        ctx.kaltura.update_job(task_id, ERROR, err_description=reason)
    except KalturaPermanentError as exc:
        if exc.code not in CANCEL_CODES:
            raise
        refused = exc.code
    rec = find_task(ctx.redis, task_id)
    if rec is not None:
        usage.record_end(ctx.redis, rec, ERROR, ctx.retention_seconds)
        registry.revoke_task(ctx.redis, rec.event, rec.id)
        ctx.redis.hset(keys.task(rec.event, rec.id), mapping={"status": str(ERROR), "error": reason})
    event_id = rec.event if rec is not None else event_id
    if event_id:
        kind, fields = ("status_refused", {"code": refused}) if refused else ("status_sent", {})
        journal.record(ctx.redis, event_id, kind, task=task_id, status="ERROR", error=reason, **fields)


def cancel(ctx: Context, task_id: str, why: str) -> bool:
    """The order is gone: revoke its key and token at once (docs/design.md section 2, item 4)."""
    rec = find_task(ctx.redis, task_id)
    log.info("task cancelled: %s", why)
    if rec is None or rec.cancelled:
        return False
    journal.record(ctx.redis, rec.event, "cancelled", task=task_id, why=why)
    usage.record_end(ctx.redis, rec, rec.status if rec.status in FINAL_STATUSES else ABORTED, ctx.retention_seconds)
    registry.revoke_task(ctx.redis, rec.event, rec.id)
    return True


def handle_permanent(ctx: Context, task_id: str, job: VendorTask | None, exc: KalturaError) -> str:
    """A permanent Kaltura error while provisioning: cancel if the order is gone, else fail the
    task once with a reason a Kaltura admin can read (docs/design.md section 2, item 6)."""
    if exc.code in CANCEL_CODES:
        cancel(ctx, task_id, f"Kaltura answered {exc.code} to {exc.action}")
        return "cancelled"
    if exc.code == errors.ENTRY_VENDOR_TASK_ITEM_COULD_NOT_BE_UPDATED and job is not None:
        # The update was refused: look again before blaming the order (it may be final already).
        try:
            now = ctx.kaltura.get_task(task_id, job.access_key).task.status
        except KalturaError:
            now = 0
        if now in FINAL_STATUSES:
            cancel(ctx, task_id, f"task became final at Kaltura (status {now})")
            return "cancelled"
    reason = f"reachlive could not set up live captions: Kaltura {exc.service}.{exc.action} returned {exc.code}"
    log.error("provision failed: %s", exc)
    try:
        refuse(ctx, task_id, reason, str(job.scheduled_event_id or "") if job is not None else "")
    except KalturaError as again:
        log.error("could not mark the task ERROR: %s", again)
    return "failed"


def give_up(ctx: Context, task_id: str, job: VendorTask | None, holder: str, exc: KalturaError) -> str:
    """Retries are spent on a transient error. For CANNOT_UPDATE_SCHEDULE_EVENT_FEATURE (which the
    server also raises for a feature deleted under its lock; facts.md) take a fresh look at the
    task: gone or final → cancel. Otherwise leave it PENDING for the next poll."""
    lock = ctx.lock(task_id, holder)
    with log_context(task_id=task_id):
        try:
            outcome = "failed"
            try:
                job = job or ctx.kaltura.find_job(task_id)  # the message carries no job (issue 19)
                if job is None:
                    # Not listed PENDING/SCHEDULED any more, and never provisioned: final or gone.
                    cancel(ctx, task_id, f"after {exc.code}: no longer pending or scheduled at Kaltura")
                    outcome = "cancelled"
                else:
                    details = ctx.kaltura.get_task(task_id, job.access_key)
                    event = ctx.kaltura.get_schedule_event(job.scheduled_event_id, job.access_key, task_id)
                    if details.task.status in FINAL_STATUSES or event.feature(task_id) is None:
                        cancel(ctx, task_id, f"after {exc.code}: the task or its feature is gone")
                        outcome = "cancelled"
            except KalturaPermanentError as again:
                if again.code in CANCEL_CODES:
                    cancel(ctx, task_id, f"after {exc.code}: Kaltura answered {again.code}")
                    outcome = "cancelled"
            except KalturaError:
                pass
            if outcome == "failed":
                log.error("provision gave up after retries (%s); the next poll tries again", exc.code)
            metrics.TASKS.labels(outcome).inc()
            return outcome
        finally:
            lock.release()
