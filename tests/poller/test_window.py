"""The task lifecycle follows the event's window (issue 16, decision 7): no-shows end ERROR once,
a task whose window has passed is never provisioned again whatever the registry's TTLs, late
orders join a live event, and moved or shortened windows are followed. A real worker against
the Kaltura emulator, on the embedded Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import redis
from prometheus_client import REGISTRY

from services.poller import window
from services.poller.provision import provision
from shared import commands, keys, registry
from shared.kaltura.models import ERROR, PROCESSING, SCHEDULED
from tests.kaltura.support import CAPTION, Admin, event_spec, translation, wait_for
from tests.poller.conftest import MEDIA_URL
from tests.poller.test_provision import _lookups, wait_status
from tests.poller.test_reconcile import _scheduled

UPDATE_JOB = ("reach_entryvendortask", "updateJob")
LIVE_FEATURE = ("schedule_scheduleevent", "updateLiveFeature")


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _errors_sent(admin: Admin) -> list[dict[str, Any]]:
    return [
        c
        for c in admin.calls_of(*UPDATE_JOB)
        if str(c["params"].get("entryVendorTask", {}).get("status")) == str(ERROR)
    ]


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def _quiet_poll(admin: Admin, send: Any, redis_client: redis.Redis, event_id: str | None = None) -> None:
    """One more poll, run to the end (its getJobs, provisions and the event's check)."""
    polls = len(admin.calls_of("reach_entryvendortask", "getJobs"))
    send(commands.POLL)
    wait_for(lambda: len(admin.calls_of("reach_entryvendortask", "getJobs")) > polls)
    wait_for(lambda: not redis_client.keys(keys.provision_lock("*")))
    if event_id is not None:
        wait_for(lambda: not redis_client.exists(keys.check_lock(event_id)))
    time.sleep(0.5)


def _go_live(redis_client: redis.Redis, event_id: str) -> None:
    """What the ingest's first accepted publish writes (services/ingest/coordinator.py)."""
    redis_client.hset(keys.event(event_id), mapping={"session": "1", "status": "live"})


def _expire_registry(redis_client: redis.Redis, event_id: str) -> None:
    """What the registry's TTLs do once the retention period after the window is over."""
    names = [keys.event(event_id), keys.event_tasks(event_id)]
    for raw in redis_client.smembers(keys.event_tasks(event_id)):
        rec = registry.read_task_sync(redis_client, event_id, raw)
        names += [keys.task(event_id, rec.id), keys.task_event(rec.id)]
        names += [keys.media_key(rec.media_key_hash), keys.caption_token(rec.caption_token_hash)]
    redis_client.delete(*names)


def _late_order(emulator: Any, event_id: str, order: dict[str, Any]) -> str:
    """A task ordered for an existing event. The emulator's admin add_task (being added in
    parallel) when present; else the same through its state, as that add_task does."""
    if hasattr(emulator, "add_task"):
        return str(emulator.add_task(event_id, order)["task_id"])
    state = emulator.state
    with state.lock:
        event = state.event_or_404(event_id)
        first = next(t for t in state.tasks.values() if t.event_id == event.id)
        spec = {"pre_start": event.pre_start, "post_end": event.post_end}
        return str(state._add_task(event, state.profiles[first.reach_profile_id], dict(order), spec, state.now()).id)


# --- no-shows -------------------------------------------------------------------------------
def test_no_show_goes_error_once_with_a_readable_reason(
    worker: Any, admin: Admin, send: Any, redis_client: redis.Redis, redis_url: str
) -> None:
    event_id, ids = _scheduled(admin, send, redis_client, CAPTION, translation("French"))
    features = admin.features(event_id)
    no_shows = _value("reachlive_poller_no_shows_total")
    # The window ended (more than the ingest's margin ago) and nothing was ever published.
    start = int(time.time()) - 7200
    admin.move_window(event_id, start, start + 3600)
    send(commands.POLL)
    wait_status(admin, ids, ERROR)
    wait_for(lambda: all(registry.read_task_sync(redis_client, event_id, t).status == ERROR for t in ids))
    expected = f"no media was received between {_utc(start)} and {_utc(start + 3600)} (UTC)"
    for task_id in ids:
        reason = admin.task(task_id)["errDescription"]
        assert reason.startswith(expected + ": ")
        assert f"RTMP publish to the mediaUrl {MEDIA_URL}" in reason
        assert features[task_id]["mediaKey"] not in reason and features[task_id]["captionToken"] not in reason
        rec = registry.read_task_sync(redis_client, event_id, task_id)
        assert rec.status == ERROR and rec.error == reason and rec.cancelled
        assert asyncio.run(_lookups(redis_url, features[task_id])) == (None, None)
    wait_for(lambda: _value("reachlive_poller_no_shows_total") == no_shows + 2)
    # Once: the next polls find nothing to do (the tasks are final here and unlisted at Kaltura).
    assert len(_errors_sent(admin)) == 2
    calls = len(admin.calls_of(*UPDATE_JOB))
    _quiet_poll(admin, send, redis_client, event_id)
    _quiet_poll(admin, send, redis_client, event_id)
    assert len(admin.calls_of(*UPDATE_JOB)) == calls
    assert _value("reachlive_poller_no_shows_total") == no_shows + 2


def test_a_window_still_within_the_ingest_margin_is_no_no_show_yet(
    worker: Any, admin: Admin, send: Any, redis_client: redis.Redis
) -> None:
    event_id, (task_id,) = _scheduled(admin, send, redis_client)
    end = int(time.time()) - 60  # ended a minute ago: the ingest still accepts a publish for 5 minutes
    admin.move_window(event_id, end - 3600, end)
    send(commands.POLL)
    wait_for(lambda: registry.read_event_sync(redis_client, event_id).end == end)
    _quiet_poll(admin, send, redis_client, event_id)
    assert int(admin.task(task_id)["status"]) == SCHEDULED
    assert registry.read_task_sync(redis_client, event_id, task_id).status == SCHEDULED


def test_an_event_that_had_media_is_no_no_show_and_its_window_follows_kaltura(
    worker: Any, admin: Admin, send: Any, redis_client: redis.Redis
) -> None:
    """A live event whose window is extended, then shortened to the past: the registry's window
    follows at the next check each time (the ingest then ends the media), its record stays the
    ingest's (live, session 1), and its tasks are not no-shows: the relay finalises them."""
    event_id, ids = _scheduled(admin, send, redis_client, CAPTION, translation("French"))
    _go_live(redis_client, event_id)
    now = int(time.time())
    admin.move_window(event_id, now - 600, now + 7200)  # extended while live
    send(commands.POLL)
    wait_for(lambda: registry.read_event_sync(redis_client, event_id).end == now + 7200)
    start = now - 7200
    admin.move_window(event_id, start, start + 3600)  # shortened to the past
    send(commands.POLL)
    wait_for(lambda: registry.read_event_sync(redis_client, event_id).end == start + 3600)
    # The check writes the event's window, then each task's: wait for the tasks' too.
    wait_for(
        lambda: all(
            (
                registry.read_task_sync(redis_client, event_id, t).start,
                registry.read_task_sync(redis_client, event_id, t).end,
            )
            == (start, start + 3600)
            for t in ids
        )
    )
    event = registry.read_event_sync(redis_client, event_id)
    assert (event.start, event.status, event.session) == (start, "live", "1")
    assert event.window() == (start, start + 3600)
    for task_id in ids:
        rec = registry.read_task_sync(redis_client, event_id, task_id)
        assert (rec.start, rec.end) == (start, start + 3600)
    _quiet_poll(admin, send, redis_client, event_id)
    assert {int(admin.task(t)["status"]) for t in ids} == {SCHEDULED}
    assert not admin.calls_of(*UPDATE_JOB)[2:]  # only the two SCHEDULED of the provision


def test_a_check_with_a_listing_older_than_the_event_fetch_still_moves_the_tasks(
    worker: Any, poller_app: Any, admin: Admin, send: Any, redis_client: redis.Redis
) -> None:
    """A check runs with its poll's getJobs listing but fetches the event itself later: queued
    behind another check while the customer moved the window (a CI run saw it). The tasks'
    windows come from that same fresh event (start − preStartTime, end + postEndTime), never
    from the older listing, which left them on the old window for good."""
    event_id, ids = _scheduled(admin, send, redis_client, CAPTION, translation("French"))
    _go_live(redis_client, event_id)
    stale = {t: {"id": t, "status": SCHEDULED, "start": 1, "end": 2} for t in ids}
    now = int(time.time())
    admin.move_window(event_id, now - 600, now + 7200)
    checks = _value("reachlive_poller_event_checks_total", result="done")
    poller_app.send_task(commands.CHECK_EVENT, args=[event_id, ids], kwargs={"jobs": stale}, queue=commands.QUEUE)
    wait_for(lambda: _value("reachlive_poller_event_checks_total", result="done") > checks)
    assert registry.read_event_sync(redis_client, event_id).window() == (now - 600, now + 7200)
    for task_id in ids:
        rec = registry.read_task_sync(redis_client, event_id, task_id)
        assert (rec.start, rec.end) == (now - 600, now + 7200)


# --- never provisioned after the window -------------------------------------------------------
def test_a_scheduled_task_is_not_provisioned_again_after_the_registry_expired(
    worker: Any, admin: Admin, send: Any, redis_client: redis.Redis
) -> None:
    event_id, (task_id,) = _scheduled(admin, send, redis_client)
    start = int(time.time()) - 2 * 86400
    admin.move_window(event_id, start, start + 3600)
    _expire_registry(redis_client, event_id)  # as a day after the window; Kaltura still lists it SCHEDULED
    no_shows = _value("reachlive_poller_no_shows_total")
    send(commands.POLL)
    wait_status(admin, [task_id], ERROR)
    reason = admin.task(task_id)["errDescription"]
    assert reason.startswith(f"no media was received between {_utc(start)} and {_utc(start + 3600)} (UTC): ")
    assert len(admin.calls_of(*LIVE_FEATURE)) == 1  # the first provision's only
    assert not redis_client.exists(keys.task_event(task_id)) and not redis_client.exists(keys.event(event_id))
    wait_for(lambda: _value("reachlive_poller_no_shows_total") == no_shows + 1)
    calls = len(admin.calls_of(*UPDATE_JOB))
    _quiet_poll(admin, send, redis_client)
    _quiet_poll(admin, send, redis_client)
    assert len(admin.calls_of(*UPDATE_JOB)) == calls and len(admin.calls_of(*LIVE_FEATURE)) == 1


def test_a_pending_order_whose_window_passed_is_never_provisioned(
    worker: Any, admin: Admin, send: Any, redis_client: redis.Redis
) -> None:
    start = int(time.time()) - 86400 - 7200  # e.g. listed again after the registry forgot it
    made = admin.create_event(**event_spec(CAPTION, start=start))
    task_id = made["task_ids"][0]
    expired = _value("reachlive_poller_tasks_total", outcome="expired")
    send(commands.POLL)
    wait_status(admin, [task_id], ERROR)
    assert admin.task(task_id)["errDescription"].startswith(
        f"the event's window ({_utc(start)} to {_utc(start + 3600)} UTC) ended before the order could be served"
    )
    assert not admin.calls_of(*LIVE_FEATURE) and not admin.calls_of("reach_entryvendortask", "get")
    assert not redis_client.exists(keys.task_event(task_id)) and not redis_client.exists(keys.event(made["event_id"]))
    wait_for(lambda: _value("reachlive_poller_tasks_total", outcome="expired") == expired + 1)
    _quiet_poll(admin, send, redis_client)
    assert len(admin.calls_of(*UPDATE_JOB)) == 1


def test_a_provision_run_after_the_window_passed_refuses(
    poller_app: Any, admin: Admin, redis_client: redis.Redis
) -> None:
    """A provision queued before the window ended but run after it (a backlog, a retry)."""
    made = admin.create_event(**event_spec(CAPTION, start=time.time() + 60, minutes=1))
    task_id = made["task_ids"][0]
    ctx = poller_app.reachlive
    job = ctx.kaltura.find_job(task_id)
    late = dataclasses.replace(ctx, clock=lambda: job.end + ctx.window_margin_seconds + window.SLACK_SECONDS + 1)
    assert provision(late, task_id, job, "holder") == "expired"
    assert int(admin.task(task_id)["status"]) == ERROR
    assert "ended before the order could be served" in admin.task(task_id)["errDescription"]
    assert not admin.calls_of(*LIVE_FEATURE) and not redis_client.keys("rl:media-key:*")
    # The same provision in time serves it: the margin is the ingest's.
    other = admin.create_event(**event_spec(CAPTION, start=time.time() + 60, minutes=1))["task_ids"][0]
    job = ctx.kaltura.find_job(other)
    in_time = dataclasses.replace(ctx, clock=lambda: job.end + ctx.window_margin_seconds)
    assert provision(in_time, other, job, "holder") == "scheduled"


# --- late orders -----------------------------------------------------------------------------
def _live_event(admin: Admin, send: Any, redis_client: redis.Redis) -> tuple[str, str]:
    now = int(time.time())
    made = admin.create_event(**event_spec(CAPTION, start=now - 600))
    event_id, first = str(made["event_id"]), made["task_ids"][0]
    send(commands.POLL)
    wait_for(lambda: (r := registry.read_task_sync(redis_client, event_id, first)) and r.status == SCHEDULED)
    _go_live(redis_client, event_id)
    send(commands.PROCESSING, event_id)
    wait_for(lambda: registry.read_task_sync(redis_client, event_id, first).status == PROCESSING)
    return event_id, first


def test_a_late_order_joins_the_live_event(
    worker: Any, admin: Admin, send: Any, redis_client: redis.Redis, redis_url: str, emulator: Any
) -> None:
    event_id, first = _live_event(admin, send, redis_client)
    before = registry.read_event_sync(redis_client, event_id)
    late = _late_order(emulator, event_id, translation("German"))
    send(commands.POLL)
    wait_status(admin, [late], SCHEDULED)
    wait_for(lambda: registry.read_task_sync(redis_client, event_id, late).status == SCHEDULED)
    event = registry.read_event_sync(redis_client, event_id)
    assert (event.status, event.session, event.source_language) == ("live", "1", "en")
    assert (event.start, event.end) == (before.start, before.end)
    rec = registry.read_task_sync(redis_client, event_id, late)
    assert (rec.kind, rec.language, rec.cancelled) == ("translation", "de", False)
    features = admin.features(event_id)
    assert features[late]["mediaUrl"] == MEDIA_URL
    assert features[late]["mediaKey"] != features[first]["mediaKey"]
    assert features[late]["captionToken"] != features[first]["captionToken"]
    assert asyncio.run(_lookups(redis_url, features[late])) == ((event_id, late),) * 2
    assert asyncio.run(_lookups(redis_url, features[first])) == ((event_id, first),) * 2
    assert registry.read_task_sync(redis_client, event_id, first).status == PROCESSING
    assert int(admin.task(first)["status"]) == PROCESSING


def test_a_late_order_in_another_source_language_is_refused(
    worker: Any, admin: Admin, send: Any, redis_client: redis.Redis, redis_url: str, emulator: Any
) -> None:
    event_id, first = _live_event(admin, send, redis_client)
    late = _late_order(emulator, event_id, {"feature": 8, "source_language": "Spanish"})
    send(commands.POLL)
    wait_status(admin, [late], ERROR)
    reason = admin.task(late)["errDescription"]
    assert "source language 'en'" in reason and "'es'" in reason
    event = registry.read_event_sync(redis_client, event_id)
    assert (event.status, event.session, event.source_language) == ("live", "1", "en")
    assert not registry.read_task_sync(redis_client, event_id, first).cancelled
    assert asyncio.run(_lookups(redis_url, admin.features(event_id)[first])) == ((event_id, first),) * 2
