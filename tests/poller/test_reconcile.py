"""Reconcile, PROCESSING/READY/ERROR, and crash safety, with a real worker against the emulator."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis

from services.poller import lifecycle
from services.poller.store import access_key
from shared import commands, keys, registry
from shared.hashing import same_secret
from shared.kaltura import errors
from shared.kaltura.models import ERROR, PENDING, PROCESSING, READY, SCHEDULED
from shared.settings import CommonSettings
from tests.kaltura.support import CAPTION, Admin, event_spec, translation, wait_for
from tests.poller.test_provision import _lookups, wait_status


def _scheduled(admin: Admin, send: Any, redis_client: redis.Redis, *tasks: dict[str, Any]) -> tuple[str, list[str]]:
    made = admin.create_event(**event_spec(*(tasks or (CAPTION,))))
    event_id, ids = str(made["event_id"]), made["task_ids"]
    send(commands.POLL)
    wait_status(admin, ids, SCHEDULED)
    wait_for(lambda: all(registry.read_task_sync(redis_client, event_id, t).status == SCHEDULED for t in ids))
    return event_id, ids


def _works(redis_url: str, admin: Admin, event_id: str, task_id: str) -> tuple[Any, Any]:
    return asyncio.run(_lookups(redis_url, admin.features(event_id)[task_id]))


def test_aborted_task_key_and_token_stop_working_at_once(
    worker: Any, admin: Admin, send: Any, redis_client: redis.Redis, redis_url: str
) -> None:
    event_id, ids = _scheduled(admin, send, redis_client, CAPTION, translation("French"))
    aborted, kept = ids
    feature = admin.features(event_id)[aborted]  # Kaltura drops it at ABORTED: keep our copy
    assert _works(redis_url, admin, event_id, aborted) == ((event_id, aborted),) * 2
    listener = redis_client.pubsub()
    listener.subscribe(keys.REVOKED_CHANNEL)
    admin.abort(aborted)
    send(commands.POLL)
    wait_for(lambda: registry.read_task_sync(redis_client, event_id, aborted).cancelled)
    assert asyncio.run(_lookups(redis_url, feature)) == (None, None)
    assert _works(redis_url, admin, event_id, kept) == ((event_id, kept),) * 2
    messages = [m for m in iter(lambda: listener.get_message(timeout=1.0), None) if m["type"] == "message"]
    assert [m["data"] for m in messages] == [f"{event_id}:{aborted}".encode()]
    assert registry.read_event_sync(redis_client, event_id).status == "scheduled"  # one task still live
    assert aborted.encode() not in redis_client.smembers(keys.TASKS)


def test_deleted_task_is_revoked(
    worker: Any, admin: Admin, send: Any, redis_client: redis.Redis, redis_url: str
) -> None:
    event_id, (task_id,) = _scheduled(admin, send, redis_client)
    feature = admin.features(event_id)[task_id]
    admin.delete(task_id)  # ENTRY_VENDOR_TASK_NOT_FOUND from now on
    send(commands.POLL)
    wait_for(lambda: registry.read_task_sync(redis_client, event_id, task_id).cancelled)
    assert asyncio.run(_lookups(redis_url, feature)) == (None, None)
    assert registry.read_event_sync(redis_client, event_id).status == "cancelled"


def test_vanished_feature_is_revoked(
    worker: Any, admin: Admin, send: Any, redis_client: redis.Redis, redis_url: str, emulator: Any
) -> None:
    event_id, ids = _scheduled(admin, send, redis_client, CAPTION, translation("German"))
    feature = admin.features(event_id)[ids[1]]
    emulator.remove_feature(ids[1])  # FEATURE_NAME_NOT_FOUND for it from now on
    send(commands.POLL)
    wait_for(lambda: registry.read_task_sync(redis_client, event_id, ids[1]).cancelled)
    assert asyncio.run(_lookups(redis_url, feature)) == (None, None)
    assert not registry.read_task_sync(redis_client, event_id, ids[0]).cancelled


def test_moved_window_moves_the_event_record(worker: Any, admin: Admin, send: Any, redis_client: redis.Redis) -> None:
    event_id, _ = _scheduled(admin, send, redis_client)
    start = int(time.time()) + 7200
    admin.move_window(event_id, start, start + 5400)
    send(commands.POLL)
    wait_for(lambda: registry.read_event_sync(redis_client, event_id).start == start)
    event = registry.read_event_sync(redis_client, event_id)
    assert event.end == start + 5400 and event.status == "scheduled"
    # The records are kept the retention period after the window (REACHLIVE_RETENTION_DAYS, for
    # the console's captions export and usage), the media key / caption token lookups a day.
    retention = CommonSettings().retention_seconds
    event_ttl = redis_client.ttl(keys.event(event_id))
    assert retention - 5 < event_ttl - (start + 5400 - time.time())
    task_id = next(iter(redis_client.smembers(keys.event_tasks(event_id)))).decode()
    task = registry.read_task_sync(redis_client, event_id, task_id)
    assert abs(redis_client.ttl(keys.task_event(task_id)) - event_ttl) <= 2
    index_ttl = redis_client.ttl(keys.caption_token(task.caption_token_hash))
    assert abs(event_ttl - index_ttl - (retention - keys.KEY_INDEX_TTL_AFTER_END_SECONDS)) <= 2


def test_processing_then_ready_and_error(
    worker: Any, admin: Admin, send: Any, redis_client: redis.Redis, redis_url: str
) -> None:
    event_id, ids = _scheduled(admin, send, redis_client, CAPTION, translation("French"), translation("Italian"))
    ready, failed, aborted = ids
    admin.abort(aborted)  # between SCHEDULED and the media start
    send(commands.PROCESSING, event_id)
    wait_for(lambda: all(int(admin.task(t)["status"]) == PROCESSING for t in (ready, failed)))
    wait_for(lambda: registry.read_task_sync(redis_client, event_id, aborted).cancelled)
    features = admin.features(event_id)
    send(commands.FINALIZE, ready, "ready", "")
    send(commands.FINALIZE, failed, "error", "speech engine refused the language (4004 invalid_model)")
    wait_for(lambda: int(admin.task(ready)["status"]) == READY)
    wait_for(lambda: int(admin.task(failed)["status"]) == ERROR)
    assert admin.task(failed)["errDescription"] == "speech engine refused the language (4004 invalid_model)"
    wait_for(lambda: not redis_client.smembers(keys.TASKS))
    # ERROR: key and token revoked; READY: no more media, captions stay readable to the end.
    assert asyncio.run(_lookups(redis_url, features[failed])) == (None, None)
    assert asyncio.run(_lookups(redis_url, features[ready])) == (None, (event_id, ready))
    assert registry.read_task_sync(redis_client, event_id, ready).status == READY
    # Final states never change again: a repeated finalize is a no-op.
    calls = len(admin.calls_of("reach_entryvendortask", "updateJob"))
    send(commands.FINALIZE, ready, "error", "late")
    send(commands.FINALIZE, aborted, "ready", "")
    send(commands.POLL)
    wait_for(lambda: len(admin.calls_of("reach_entryvendortask", "getJobs")) >= 2)
    time.sleep(0.5)
    assert len(admin.calls_of("reach_entryvendortask", "updateJob")) == calls
    assert int(admin.task(ready)["status"]) == READY


def test_finalize_of_an_aborted_task_meets_final_state(
    poller_app: Any, admin: Admin, redis_client: redis.Redis, worker: Any, send: Any
) -> None:
    event_id, (task_id,) = _scheduled(admin, send, redis_client)
    admin.abort(task_id)
    ctx = poller_app.reachlive
    assert lifecycle.finalize(ctx, task_id, "ready") == "cancelled"
    codes = {c["code"] for c in admin.calls_of("reach_entryvendortask", "updateJob")}
    assert errors.CANNOT_UPDATE_STATUS_OF_TASK_WHICH_IS_IN_FINAL_STATE in codes
    assert registry.read_task_sync(redis_client, event_id, task_id).cancelled


def test_expired_access_key_is_extended_in_processing(
    worker: Any, poller_app: Any, admin: Admin, send: Any, redis_client: redis.Redis, emulator: Any
) -> None:
    event_id, (task_id,) = _scheduled(admin, send, redis_client)
    send(commands.PROCESSING, event_id)
    wait_for(lambda: registry.read_task_sync(redis_client, event_id, task_id).status == PROCESSING)

    def stored() -> str:
        return access_key(poller_app.reachlive.sealer, registry.read_task_sync(redis_client, event_id, task_id))

    old = stored()
    assert old
    emulator.expire_sessions(kind="access_key", task_id=task_id)
    send(commands.POLL)
    wait_for(lambda: admin.calls_of("reach_entryvendortask", "extendAccessKey"))
    wait_for(lambda: stored() not in ("", old))
    assert not registry.read_task_sync(redis_client, event_id, task_id).cancelled


def test_cannot_extend_access_key_of_a_task_gone_final_cancels(
    worker: Any, admin: Admin, send: Any, redis_client: redis.Redis, emulator: Any
) -> None:
    event_id, (task_id,) = _scheduled(admin, send, redis_client)
    send(commands.PROCESSING, event_id)
    wait_for(lambda: registry.read_task_sync(redis_client, event_id, task_id).status == PROCESSING)
    emulator.expire_sessions(kind="access_key", task_id=task_id)
    emulator.set_status(task_id, ERROR)  # set by someone else; Kaltura drops the feature
    send(commands.POLL)
    wait_for(lambda: registry.read_task_sync(redis_client, event_id, task_id).cancelled)
    codes = {c["code"] for c in admin.calls_of("reach_entryvendortask", "extendAccessKey")}
    assert codes == {errors.CANNOT_EXTEND_ACCESS_KEY}


def test_reprovision_after_a_crash_keeps_the_endpoints_kaltura_has(
    admin: Admin, send: Any, redis_client: redis.Redis, redis_url: str, emulator: Any
) -> None:
    """A run dies after updateLiveFeature (here: its updateJob keeps failing until retries are
    spent); the next run must not hand out a second set of keys."""
    from celery.contrib.testing.worker import start_worker

    from tests.poller.conftest import build_app

    app = build_app(redis_url, emulator.url, max_retries=1)
    made = admin.create_event(**event_spec(CAPTION))
    event_id, task_id = str(made["event_id"]), made["task_ids"][0]
    admin.fault("reach_entryvendortask", "updateJob", "error", code=errors.INTERNAL_SERVERL_ERROR, count=2)
    with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False, loglevel="WARNING"):
        send(commands.POLL)
        wait_for(lambda: len(admin.calls_of("reach_entryvendortask", "updateJob")) == 2)
        wait_for(lambda: not redis_client.exists(keys.provision_lock(task_id)))
        assert int(admin.task(task_id)["status"]) == PENDING
        first = admin.features(event_id)[task_id]
        assert first["mediaKey"]
        send(commands.POLL)
        wait_status(admin, [task_id], SCHEDULED)
        wait_for(lambda: registry.read_task_sync(redis_client, event_id, task_id).status == SCHEDULED)
    assert len(admin.calls_of("schedule_scheduleevent", "updateLiveFeature")) == 1
    assert admin.features(event_id)[task_id]["mediaKey"] == first["mediaKey"]
    rec = registry.read_task_sync(redis_client, event_id, task_id)
    assert same_secret(first["mediaKey"], rec.media_key_hash)
    assert len(redis_client.keys("rl:media-key:*")) == 1


def test_lost_registry_rekeys_loudly(
    worker: Any, admin: Admin, send: Any, redis_client: redis.Redis, redis_url: str, caplog: Any
) -> None:
    event_id, (task_id,) = _scheduled(admin, send, redis_client)
    before = admin.features(event_id)[task_id]
    redis_client.flushall()  # Redis lost everything
    with caplog.at_level("WARNING"):
        send(commands.POLL)
        wait_for(lambda: (r := registry.read_task_sync(redis_client, event_id, task_id)) and r.status == SCHEDULED)
    after = admin.features(event_id)[task_id]
    assert after["mediaKey"] != before["mediaKey"] and after["captionToken"] != before["captionToken"]
    assert asyncio.run(_lookups(redis_url, before)) == (None, None)
    assert asyncio.run(_lookups(redis_url, after)) == ((event_id, task_id),) * 2
    assert any("replacing endpoints" in r.getMessage() for r in caplog.records)


def test_a_check_that_fails_because_the_task_went_final_meanwhile_is_not_a_warning(
    redis_client: redis.Redis, caplog: Any
) -> None:
    """READY invalidates the task's accessKey (facts.md): a reconcile that read the task just
    before a finalize gets INVALID_KS for it. That is the normal end of an event, not a fault."""
    from types import SimpleNamespace

    from shared.kaltura.errors import KalturaError
    from shared.registry import TaskRecord

    stale = TaskRecord(id="t1", event="e1", status=PROCESSING)
    registry.write_task(redis_client, TaskRecord(id="t1", event="e1", status=READY))
    ctx = SimpleNamespace(redis=redis_client)
    with caplog.at_level("DEBUG", logger="services.poller.lifecycle"):
        lifecycle._check_failed(ctx, [stale], "event", KalturaError("INVALID_KS"))  # type: ignore[arg-type]
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    registry.write_task(redis_client, TaskRecord(id="t1", event="e1", status=PROCESSING))
    with caplog.at_level("DEBUG", logger="services.poller.lifecycle"):
        lifecycle._check_failed(ctx, [stale], "event", KalturaError("INVALID_KS"))  # type: ignore[arg-type]
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        "reconcile: could not check the event: INVALID_KS"
    ]


def test_reconcile_checks_each_event_in_a_task_of_its_own(
    worker: Any, admin: Admin, send: Any, redis_client: redis.Redis
) -> None:
    """The reconcile's Kaltura calls run in one ``reach.check_event`` per event, over the worker
    pool (one task making them all fell behind the 30 s poll at about 100 live events); an
    event whose check is still queued or running gets no second one from the next poll."""
    from services.poller import metrics

    def checks(result: str) -> float:
        return metrics.EVENT_CHECKS.labels(result)._value.get()

    first, (t1,) = _scheduled(admin, send, redis_client)
    second, (t2,) = _scheduled(admin, send, redis_client)
    wait_for(lambda: not redis_client.keys(keys.check_lock("*")))  # the polls' own checks are done
    redis_client.set(keys.check_lock(second), "a check still queued", ex=60)
    busy, sent = checks("busy"), checks("sent")
    admin.abort(t1)
    admin.abort(t2)
    send(commands.POLL)
    wait_for(lambda: registry.read_task_sync(redis_client, first, t1).cancelled)
    wait_for(lambda: not redis_client.exists(keys.check_lock(first)))  # released by its check
    wait_for(lambda: checks("busy") == busy + 1)  # the poll's loop may still be running
    assert checks("sent") >= sent + 1
    assert not registry.read_task_sync(redis_client, second, t2).cancelled  # its check was not sent
    redis_client.delete(keys.check_lock(second))
    send(commands.POLL)
    wait_for(lambda: registry.read_task_sync(redis_client, second, t2).cancelled)


def test_checks_are_spread_at_the_rate_within_half_the_poll_period() -> None:
    assert lifecycle.check_gap(1, 10.0, 30.0) == 0.0
    assert lifecycle.check_gap(100, 10.0, 30.0) == 0.1  # 100 checks over 9.9 s
    assert lifecycle.check_gap(1000, 10.0, 30.0) * 999 == pytest.approx(15.0)  # half the period, at most
