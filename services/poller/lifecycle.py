"""``reach.poll``, ``reach.reconcile`` with its ``reach.check_event``, ``reach.processing``,
``reach.finalize`` (docs/design.md section 2, items 1, 3 and 4). ``reach.provision`` is in ``provision.py``.

Lost FINALIZE commands (issue 18): the relay writes a session's end (``finished``, ``outcome``,
``reason``; ``ended:<task>`` for a task ended alone) in its state hash, then sends FINALIZE per
task. A Celery message lost with a Redis failover (asynchronous replication), a restart without
persistence or a broker hiccup is never re-sent, so reconcile is the safety net: it reads each
live task's relay end in the same pipelined round trips as its record, notes when it first saw
it, and after ``RELAY_END_GRACE_POLLS`` poll periods (the command path goes first) the event's
check finalizes the task with the stored outcome and reason (``_recover``).

AccessKeys (issue 19): messages carry ids and listed statuses only. Reconcile, which has getJobs'
listing in hand, stores each listed task's accessKey sealed in its record when it changed (and
seals a plain one of the previous version, re-seals one of an older key); a check opens the
stored one, and extends it with the vendor KS when it has expired or cannot be opened.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict

from services.poller import metrics, usage, window
from services.poller.context import Context
from services.poller.provision import cancel
from services.poller.store import (
    READ_BATCH,
    RelayEnd,
    access_key,
    find_task,
    finish_task,
    keep_access_keys,
    live_task_ids,
    note_relay_ends,
    read_live,
    save_access_key,
    set_task_fields,
    sizes,
)
from shared import journal, keys, registry
from shared.kaltura import errors
from shared.kaltura.errors import KalturaError, KalturaPermanentError
from shared.kaltura.models import (
    ABORTED,
    ERROR,
    FINAL_STATUSES,
    PENDING,
    PROCESSING,
    READY,
    SCHEDULED,
    ScheduleEvent,
    VendorTask,
)
from shared.logs import log_context
from shared.registry import TaskRecord

log = logging.getLogger(__name__)

# A task still SCHEDULED this long after its start (startDate − preStartTime) has no media: the
# ingest would have moved it to PROCESSING (metric reachlive_poller_tasks_overdue).
OVERDUE_MARGIN_SECONDS = 300
# Poll periods a task stays live after reconcile first saw the relay's end of it before reconcile
# finalizes it itself: the relay's FINALIZE normally lands within seconds; two periods leave it
# room behind a worker backlog, and a lost one costs the task a minute or two, not forever.
RELAY_END_GRACE_POLLS = 2


# --- poll ----------------------------------------------------------------------------------
def poll(ctx: Context) -> dict[str, int]:
    """getJobs (PENDING and SCHEDULED, every page); each task not yet provisioned → one
    ``reach.provision`` (the provision lock, taken here for the Celery id sent, makes duplicate
    polls send nothing while a provision is queued or retrying); then reconcile with the listing."""
    try:
        jobs = ctx.kaltura.get_jobs((PENDING, SCHEDULED))
    except KalturaError:
        metrics.POLLS.labels("error").inc()
        raise
    metrics.POLLS.labels("ok").inc()
    metrics.JOBS_LISTED.labels("pending").set(sum(j.status == PENDING for j in jobs))
    metrics.JOBS_LISTED.labels("scheduled").set(sum(j.status == SCHEDULED for j in jobs))
    sent = 0
    for job in jobs:
        if _needs_provision(ctx, job):
            holder = str(uuid.uuid4())
            lock = ctx.lock(job.id, holder)
            if lock.take():
                try:
                    ctx.send_provision(job.id, holder)
                except Exception:
                    lock.release()  # not sent: let the next poll try at once
                    raise
                sent += 1
    stats = reconcile(ctx, {j.id: j for j in jobs})
    return {"listed": len(jobs), "sent": sent, **stats}


def _needs_provision(ctx: Context, job: VendorTask) -> bool:
    rec = find_task(ctx.redis, job.id)
    if rec is not None and (rec.cancelled or rec.status in FINAL_STATUSES or rec.status == PROCESSING):
        return False
    if job.status == PENDING:
        return True
    # SCHEDULED at Kaltura but not in our registry as such: the registry lost it, or a run
    # crashed between updateJob and its registry write. provision sorts out which.
    return job.status == SCHEDULED and (rec is None or rec.status != SCHEDULED)


# --- reconcile -----------------------------------------------------------------------------
def reconcile(ctx: Context, listing: dict[str, VendorTask] | None = None) -> dict[str, int]:
    """Keep the registry in step with Kaltura: cancel ABORTED / vanished / feature-less tasks
    (revoking their key and token at once), follow moved event windows, note final states, and
    end no-shows: SCHEDULED tasks whose window passed with no media session go ERROR (``_no_shows``).

    The Kaltura calls (a get per task not listed, i.e. every PROCESSING one, and a
    scheduleEvent.get per event) run per event in ``reach.check_event`` tasks, so they spread
    over the worker pool: done here one after another they took 11 s per poll for 100 live
    events against the emulator (bench/pipeline.py), and with Kaltura's own latency one worker
    would fall behind the 30 s poll at about that many events, however many replicas ran."""
    if listing is None:
        listing = {j.id: j for j in ctx.kaltura.get_jobs((PENDING, SCHEDULED))}
    by_event: dict[str, list[str]] = defaultdict(list)
    overdue = 0
    now = ctx.clock()
    late = now - OVERDUE_MARGIN_SECONDS
    seen: list[TaskRecord] = []
    unseen: list[TaskRecord] = []
    live: list[tuple[TaskRecord, str]] = []
    for task_id, found, end in read_live(ctx.redis, live_task_ids(ctx.redis)):
        rec = _live_record(ctx, task_id, found)
        if rec is None:
            continue
        live.append((rec, listing[task_id].access_key if task_id in listing else ""))
        by_event[rec.event].append(task_id)
        overdue += rec.status == SCHEDULED and 0 < rec.start < late
        marked = keys.TASK_RELAY_END_SEEN in rec.extra
        if end is not None and not marked:
            seen.append(rec)
        elif end is None and marked:
            unseen.append(rec)  # not ended after all (never seen in practice): the grace restarts
    if seen or unseen:
        note_relay_ends(ctx.redis, seen, unseen, now)
    # Before the checks are sent: they read the keys stored here.
    written, unreadable = keep_access_keys(ctx.redis, ctx.sealer, live)
    if unreadable:
        log.warning(
            "reconcile: %d stored accessKeys open with no key of REACHLIVE_POLLER_ENCRYPTION_KEYS "
            "(a key removed too soon?): their checks extend them",
            unreadable,
        )
    elif written:
        log.debug("reconcile: %d accessKeys stored", written)
    sent = 0
    gap = check_gap(len(by_event), ctx.poller.check_rate_per_second, ctx.kaltura_settings.poll_seconds)
    for i, (event_id, task_ids) in enumerate(by_event.items()):
        listed = {t: listing[t].status for t in task_ids if t in listing}
        holder = str(uuid.uuid4())
        lock = ctx.check_lock(event_id, holder)
        if not lock.take():
            metrics.EVENT_CHECKS.labels("busy").inc()
            continue
        try:
            ctx.send_check(event_id, task_ids, listed, holder, i * gap)
        except Exception:
            lock.release()
            raise
        metrics.EVENT_CHECKS.labels("sent").inc()
        sent += 1
    _drop_expired_events(ctx)
    events, tasks_n = sizes(ctx.redis)
    metrics.REGISTRY_EVENTS.set(events)
    metrics.REGISTRY_TASKS.set(tasks_n)
    metrics.TASKS_OVERDUE.set(overdue)
    return {"events": len(by_event), "checks_sent": sent}


def _drop_expired_events(ctx: Context) -> None:
    """Take events whose records expired (the retention period after their end) out of
    ``keys.EVENTS``. Pipelined: the set holds every event of the retention period (30 days of
    them by default), checked at each poll."""
    members = list(ctx.redis.smembers(keys.EVENTS))
    gone = []
    for i in range(0, len(members), READ_BATCH):
        batch = members[i : i + READ_BATCH]
        pipe = ctx.redis.pipeline(transaction=False)
        for raw in batch:
            pipe.exists(keys.event(raw.decode()))
        gone += [raw for raw, found in zip(batch, pipe.execute(), strict=True) if not found]
    if gone:
        ctx.redis.srem(keys.EVENTS, *gone)
        ctx.redis.zrem(keys.EVENTS_BY_CLOSE, *gone)


def check_gap(events: int, rate: float, poll_seconds: float) -> float:
    """Seconds between two checks' countdowns: ``1 / rate``, unless that spreads them over more
    than half the poll period (then they share it, and the workers' threads run them in
    parallel). Spread, the checks' CPU and Kaltura calls stay smooth; sent at once, 100 of
    them took a core of a 2-core host for 2 s and delayed live captions by seconds."""
    if events <= 1:
        return 0.0
    return min(1.0 / rate, poll_seconds / 2 / (events - 1))


def _live_record(ctx: Context, task_id: str, rec: TaskRecord | None) -> TaskRecord | None:
    """The task's record if reconcile has to check it; drops finished ones from the live set."""
    if rec is None or rec.cancelled or rec.status in FINAL_STATUSES:
        ctx.redis.srem(keys.TASKS, task_id)
        return None
    if rec.status == PENDING and ctx.redis.exists(keys.provision_lock(task_id)):
        return None  # a provision is at work on it
    return rec


def check_event(ctx: Context, event_id: str, task_ids: list[str], listed: dict[str, int]) -> dict[str, int]:
    """``reach.check_event``: reconcile's Kaltura checks of one event's live tasks (records
    re-read now: one may have finished since the poll), ``listed`` the status getJobs listed for
    those it listed. Not retried: the next poll is the retry."""
    tasks: list[TaskRecord] = []
    cancelled = moved = no_shows = recovered = 0
    now = ctx.clock()
    with log_context(event_id=event_id):
        for task_id, found, end in read_live(ctx.redis, task_ids):
            rec = _live_record(ctx, task_id, found)
            if rec is None:
                continue
            with log_context(task_id=task_id):
                if _recover(ctx, rec, end, now):
                    recovered += 1
                    continue
                try:
                    alive = _check_task(ctx, rec, listed.get(task_id))
                except KalturaError as exc:
                    metrics.EVENT_CHECKS.labels("failed").inc()
                    _check_failed(ctx, [rec], "task", exc)
                    continue
            if alive:
                tasks.append(rec)
            else:
                cancelled += 1
        if tasks:
            try:
                c, moved = _check_event(ctx, event_id, tasks)
                cancelled += c
            except KalturaError as exc:
                metrics.EVENT_CHECKS.labels("failed").inc()
                _check_failed(ctx, tasks, "event", exc)
            else:
                # Only with the event's window fresh from Kaltura (a moved window applied first).
                no_shows = _no_shows(ctx, event_id, tasks)
    metrics.EVENT_CHECKS.labels("done").inc()
    return {"cancelled": cancelled, "moved": moved, "no_shows": no_shows, "recovered": recovered}


def _recover(ctx: Context, rec: TaskRecord, end: RelayEnd | None, now: float) -> bool:
    """A live task the relay ended (its relay state, read just now, says so) more than the grace
    period ago by reconcile's mark: its FINALIZE was lost; finalize it here with the relay's
    outcome and reason. True if it was tried (the task is then not checked this time)."""
    seen = rec.extra.get(keys.TASK_RELAY_END_SEEN)
    if end is None or seen is None:
        return False
    try:
        ago = now - float(seen)
    except ValueError:
        return False
    if ago < RELAY_END_GRACE_POLLS * ctx.kaltura_settings.poll_seconds:
        return False
    try:
        outcome = finalize(ctx, rec.id, end.outcome, end.reason)
    except KalturaError as exc:
        log.warning("reconcile: could not finalize a task the relay ended: %s", exc.code)  # the next poll retries
        return True
    if outcome in ("ready", "error"):
        metrics.FINALIZE_RECOVERED.labels(outcome).inc()
        log.warning(
            "finalize recovered: the relay ended the task %.0f s ago and its FINALIZE never arrived",
            ago,
            extra={"outcome": outcome},
        )
    return True


def _no_shows(ctx: Context, event_id: str, tasks: list[TaskRecord]) -> int:
    """SCHEDULED tasks whose window has passed while their event never opened a media session
    (issue 16, decision 7) → ERROR through ``finalize`` (Kaltura, revocation, the registry's
    final status: a second check finds nothing to do). An event that had media is ended by the
    ingest and its tasks finalised by the relay, never here."""
    event = registry.read_event_sync(ctx.redis, event_id)
    if event is None or event.session == "1":
        return 0
    done = 0
    now = ctx.clock()
    for task in tasks:
        rec = registry.read_task_sync(ctx.redis, event_id, task.id)  # re-read: moved, cancelled, final
        if rec is None or rec.cancelled or rec.status != SCHEDULED:
            continue
        start, end = window.bounds(rec.start, rec.end, event)
        if not window.passed(now, end, ctx.window_margin_seconds):
            continue
        with log_context(task_id=rec.id):
            try:
                outcome = finalize(ctx, rec.id, "error", window.no_media_reason(start, end, ctx.media_url))
            except KalturaError as exc:
                log.warning("reconcile: could not end a no-show task: %s", exc.code)  # the next poll retries
                continue
        if outcome == "error":
            metrics.NO_SHOWS.inc()
            log.warning("no-show: no media during the task's window", extra={"start": start, "end": end})
            journal.record(ctx.redis, event_id, "no_show", task=rec.id)
            done += 1
    return done


def _check_failed(ctx: Context, tasks: list[TaskRecord], what: str, exc: KalturaError) -> None:
    """A check failed. A finalize that ran meanwhile (READY invalidates the accessKey, facts.md)
    explains an INVALID_KS: nothing is wrong then, and the next reconcile skips the task."""
    if all(
        (now := registry.read_task_sync(ctx.redis, t.event, t.id)) is None or now.status in FINAL_STATUSES
        for t in tasks
    ):
        log.debug("reconcile: %s final meanwhile (%s)", what, exc.code)
        return
    log.warning("reconcile: could not check the %s: %s", what, exc.code)


def _check_task(ctx: Context, rec: TaskRecord, listed: int | None) -> bool:
    """False if the task was cancelled (or became final) here. ``listed``: its getJobs status."""
    if listed in (PENDING, SCHEDULED):
        return True  # reconcile stored the accessKey getJobs listed with it
    # Not listed (PROCESSING, or final, or gone): ask for the task itself.
    try:
        status = _task_status(ctx, rec)
    except KalturaPermanentError as exc:
        if exc.code == errors.ENTRY_VENDOR_TASK_NOT_FOUND:
            _cancel(ctx, rec, "ENTRY_VENDOR_TASK_NOT_FOUND")
            return False
        if exc.code == errors.CANNOT_EXTEND_ACCESS_KEY:
            # Its access key is dead and cannot be renewed: the task left SCHEDULED/PROCESSING.
            _cancel(ctx, rec, "the task left SCHEDULED/PROCESSING (CANNOT_EXTEND_ACCESS_KEY)")
            return False
        raise
    if status == ABORTED:
        _cancel(ctx, rec, "ABORTED")
        return False
    if status in FINAL_STATUSES:
        # READY/ERROR/REJECTED set by someone else: the feature is removed at ERROR (facts.md).
        if status != READY:
            _cancel(ctx, rec, f"final status {status}")
        _finish(ctx, rec, status, rec.error)
        return False
    return True


def _task_status(ctx: Context, rec: TaskRecord) -> int:
    key = access_key(ctx.sealer, rec)
    if key:
        try:
            return ctx.kaltura.get_task(rec.id, key).task.status
        except KalturaPermanentError as exc:
            if exc.code != errors.INVALID_KS:
                raise
    else:
        log.warning("no readable accessKey stored for the task: extending it")
    fresh = _extend(ctx, rec)
    return fresh.status or ctx.kaltura.get_task(rec.id, fresh.access_key).task.status


def _extend(ctx: Context, rec: TaskRecord) -> VendorTask:
    """The access key expired (or cannot be opened): extendAccessKey with the vendor KS, which
    works in SCHEDULED/PROCESSING only; the fresh key is stored sealed."""
    fresh = ctx.kaltura.extend_access_key(rec.id)
    if fresh.access_key:
        save_access_key(ctx.redis, ctx.sealer, rec, fresh.access_key)
    return fresh


def _event_key(ctx: Context, tasks: list[TaskRecord]) -> str:
    """An accessKey for the event's scheduleEvent.get: any of its tasks' (each is scoped to its
    event); if none opens, one extended."""
    for rec in tasks:
        key = access_key(ctx.sealer, rec)
        if key:
            return key
    for rec in tasks:
        if rec.status in (SCHEDULED, PROCESSING):
            log.warning("no readable accessKey stored for the event's tasks: extending one")
            return _extend(ctx, rec).access_key
    return ""


def _cancel(ctx: Context, rec: TaskRecord, why: str) -> None:
    if cancel(ctx, rec.id, why):
        metrics.TASKS.labels("cancelled").inc()


def _check_event(ctx: Context, event_id: str, tasks: list[TaskRecord]) -> tuple[int, int]:
    """One scheduleEvent.get per event: features that vanished → cancel; a moved window → move."""
    try:
        event = ctx.kaltura.get_schedule_event(int(event_id), _event_key(ctx, tasks), tasks[0].id)
    except KalturaPermanentError as exc:
        if exc.code != errors.SCHEDULE_EVENT_ID_NOT_FOUND:
            raise
        for rec in tasks:
            _cancel(ctx, rec, "SCHEDULE_EVENT_ID_NOT_FOUND")
        return len(tasks), 0
    cancelled = 0
    for rec in tasks:
        if event.feature(rec.id) is None:
            _cancel(ctx, rec, "its live feature is gone (FEATURE_NAME_NOT_FOUND)")
            cancelled += 1
    current = registry.read_event_sync(ctx.redis, event_id)
    moved = 0
    if current is not None and event.start and (current.start, current.end) != (float(event.start), float(event.end)):
        pre = max([f.pre_start for f in event.features] + [0])
        post = max([f.post_end for f in event.features] + [0])
        registry.move_event_window(ctx.redis, event_id, event.start, event.end, pre, post)
        registry.expire_event_at(ctx.redis, event_id, *ctx.expire_event_after(event.end + post))
        log.info("event window moved", extra={"start": event.start, "end": event.end})
        journal.record(ctx.redis, event_id, "window_moved", start=journal.utc(event.start), end=journal.utc(event.end))
        moved = 1
    if event.start:
        _follow_task_windows(ctx, event, tasks)
    return cancelled, moved


def _follow_task_windows(ctx: Context, event: ScheduleEvent, tasks: list[TaskRecord]) -> None:
    """Each task's window from the same scheduleEvent.get as the event's (facts.md: task start =
    event start − preStartTime, end = event end + postEndTime), compared every check. Taken from
    the poll's getJobs listing instead, a listing older than the event fetch (a check queued
    behind another while the customer moved the window twice) left the tasks on the old window
    for good, since the event no longer differed at the next check."""
    for rec in tasks:
        feature = event.feature(rec.id)
        if feature is None:
            continue
        window = (float(event.start - feature.pre_start), float(event.end + feature.post_end))
        if (rec.start, rec.end) != window:
            set_task_fields(ctx.redis, rec, start=str(window[0]), end=str(window[1]))


# --- processing / finalize ------------------------------------------------------------------
def processing(ctx: Context, event_id: str) -> int:
    """The event's media started (sent by ingest): its SCHEDULED tasks → PROCESSING."""
    done = 0
    with log_context(event_id=event_id):
        for raw in sorted(ctx.redis.smembers(keys.event_tasks(event_id))):
            rec = registry.read_task_sync(ctx.redis, event_id, raw)
            if rec is None or rec.cancelled or rec.status != SCHEDULED:
                continue
            with log_context(task_id=rec.id):
                try:
                    ctx.kaltura.update_job(rec.id, PROCESSING)
                except KalturaPermanentError as exc:
                    journal.record(
                        ctx.redis, event_id, "status_refused", task=rec.id, status="PROCESSING", code=exc.code
                    )
                    if exc.code in (
                        errors.CANNOT_UPDATE_STATUS_OF_TASK_WHICH_IS_IN_FINAL_STATE,
                        errors.ENTRY_VENDOR_TASK_NOT_FOUND,
                        errors.ENTRY_VENDOR_TASK_ITEM_COULD_NOT_BE_UPDATED,
                    ):
                        log.info("task could not go to PROCESSING (%s): checking it", exc.code)
                        _check_task(ctx, rec, None)
                        continue
                    raise
                except KalturaError as exc:  # retried by the command
                    journal.record(
                        ctx.redis, event_id, "status_failed", task=rec.id, status="PROCESSING", code=exc.code
                    )
                    raise
                set_task_fields(ctx.redis, rec, status=str(PROCESSING))
                metrics.TASKS.labels("processing").inc()
                journal.record(ctx.redis, event_id, "status_sent", task=rec.id, status="PROCESSING")
                done += 1
    return done


def finalize(ctx: Context, task_id: str, outcome: str, reason: str = "") -> str:
    """The end (sent by the relay): READY, or ERROR with ``reason`` as errDescription. Final
    states never change again (a second finalize is a no-op)."""
    task_id = str(task_id)
    with log_context(task_id=task_id):
        rec = find_task(ctx.redis, task_id)
        if rec is None:
            log.warning("finalize of a task the registry does not know")
            return "unknown"
        if rec.status in FINAL_STATUSES or rec.cancelled:
            return "duplicate"
        status = READY if outcome == "ready" else ERROR
        description = (reason or "live captioning failed")[:1000] if status == ERROR else None
        try:
            if status == READY and rec.status == SCHEDULED:
                # READY comes from PROCESSING: a task whose media never reported start passes it.
                ctx.kaltura.update_job(task_id, PROCESSING)
            ctx.kaltura.update_job(task_id, status, err_description=description)
        except KalturaPermanentError as exc:
            name = "READY" if status == READY else "ERROR"
            journal.record(ctx.redis, rec.event, "status_refused", task=task_id, status=name, code=exc.code)
            if exc.code not in (
                errors.CANNOT_UPDATE_STATUS_OF_TASK_WHICH_IS_IN_FINAL_STATE,
                errors.ENTRY_VENDOR_TASK_NOT_FOUND,
            ):
                raise
            current = find_task(ctx.redis, task_id)
            if current is not None and (current.status in FINAL_STATUSES or current.cancelled):
                # Another finalize of the task (a repeated command, reconcile's recovery) won the
                # race: its outcome stands; cancelling here would revoke a READY task's token.
                log.info("task finalized meanwhile (%s)", exc.code)
                return "duplicate"
            log.info("task already final at Kaltura (%s)", exc.code)
            _cancel(ctx, rec, exc.code)
            _finish(ctx, rec, rec.status)
            return "cancelled"
        except KalturaError as exc:  # retried by the command
            name = "READY" if status == READY else "ERROR"
            journal.record(ctx.redis, rec.event, "status_failed", task=task_id, status=name, code=exc.code)
            raise
        if status == ERROR:
            registry.revoke_task(ctx.redis, rec.event, rec.id)  # Kaltura removes the feature at ERROR
        elif rec.media_key_hash:
            ctx.redis.delete(keys.media_key(rec.media_key_hash))  # no more media; captions stay readable
        _finish(ctx, rec, status, description or "")
        metrics.TASKS.labels("ready" if status == READY else "error").inc()
        log.info("task finalized", extra={"status": status})
        name = "READY" if status == READY else "ERROR"
        journal.record(ctx.redis, rec.event, "status_sent", task=task_id, status=name, error=description or "")
        return "ready" if status == READY else "error"


def _finish(ctx: Context, rec: TaskRecord, status: int, error: str = "") -> None:
    """The task's final status in the registry, its usage record first: a Redis error before
    the registry write leaves the task live, and the retry (the command's, or reconcile's) that
    settles it again finds the record written, once."""
    usage.record_end(ctx.redis, rec, status, ctx.retention_seconds)
    finish_task(ctx.redis, rec, status, error)
