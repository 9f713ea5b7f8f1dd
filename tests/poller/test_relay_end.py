"""Lost FINALIZE commands (issue 18): the relay wrote a session's end in its state hash
(``finished``/``outcome``/``reason``, or ``ended:<task>`` for a task ended alone), but its
``reach.finalize`` command never reached a worker (a Redis failover, a restart without
persistence). Reconcile finalizes such a task itself once a grace period (two poll periods) has
passed since it first saw the end, once, with the relay's outcome and reason; never a task whose
relay state is not ended. Real worker, real Redis, the Kaltura emulator; time is moved by the
poller context's clock."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
import redis

from services.poller import lifecycle, metrics
from shared import commands, keys, registry
from shared.kaltura.models import ERROR, PROCESSING, READY
from tests.kaltura.support import CAPTION, Admin, translation, wait_for
from tests.poller.test_provision import _lookups
from tests.poller.test_reconcile import _scheduled

GRACE = lifecycle.RELAY_END_GRACE_POLLS * 30.0  # settings_for: the default 30 s poll period


class Clock:
    """The poller's clock (ctx.clock), moved forward by the test."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def clock(poller_app: Any, monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(poller_app.reachlive, "clock", c)
    return c


def _live(admin: Admin, send: Any, redis_client: redis.Redis, *tasks: dict[str, Any]) -> tuple[str, list[str]]:
    """An event whose media session opened (as the ingest marks it) and whose tasks are PROCESSING."""
    event_id, ids = _scheduled(admin, send, redis_client, *tasks)
    redis_client.hset(keys.event(event_id), mapping={"status": "live", "session": "1"})
    send(commands.PROCESSING, event_id)
    wait_for(lambda: all(int(admin.task(t)["status"]) == PROCESSING for t in ids))
    wait_for(lambda: all(registry.read_task_sync(redis_client, event_id, t).status == PROCESSING for t in ids))
    return event_id, ids


def _relay_state(redis_client: redis.Redis, event_id: str, **fields: str) -> None:
    """What the relay commits (a cursor, per-task positions, the end marks); no FINALIZE is sent."""
    redis_client.hset(keys.relay_state(event_id), mapping={keys.RELAY_CURSOR: "1700000000000-3", **fields})


def _reconcile(send: Any, redis_client: redis.Redis, events: int) -> None:
    """One poll: its reconcile and its per-event checks have run."""
    idle = lambda: not redis_client.keys(keys.check_lock("*"))  # noqa: E731 (no check queued or running)
    wait_for(idle)
    done = metrics.EVENT_CHECKS.labels("done")._value.get()
    send(commands.POLL)
    wait_for(lambda: metrics.EVENT_CHECKS.labels("done")._value.get() >= done + events)
    wait_for(idle)


def _updates(admin: Admin, task_id: str) -> list[dict[str, Any]]:
    return [c for c in admin.calls_of("reach_entryvendortask", "updateJob") if str(c["params"].get("id")) == task_id]


def _recovered(outcome: str) -> float:
    return metrics.FINALIZE_RECOVERED.labels(outcome)._value.get()


def _seen(redis_client: redis.Redis, event_id: str, task_id: str) -> bytes | None:
    return redis_client.hget(keys.task(event_id, task_id), keys.TASK_RELAY_END_SEEN)


def test_a_lost_ready_is_finalized_after_the_grace_once(
    worker: Any, admin: Admin, send: Any, redis_client: redis.Redis, redis_url: str, clock: Clock, caplog: Any
) -> None:
    event_id, (task_id,) = _live(admin, send, redis_client)
    feature = admin.features(event_id)[task_id]
    _relay_state(
        redis_client, event_id, **{keys.RELAY_FINISHED: "1", keys.RELAY_OUTCOME: "ready", keys.RELAY_REASON: ""}
    )
    before, updates = _recovered("ready"), len(_updates(admin, task_id))
    with caplog.at_level("WARNING", logger="services.poller.lifecycle"):
        _reconcile(send, redis_client, 1)
        wait_for(lambda: _seen(redis_client, event_id, task_id))  # noticed, not acted on yet
        clock.offset = GRACE - 5
        _reconcile(send, redis_client, 1)  # within the grace: the relay's own command may still come
        assert int(admin.task(task_id)["status"]) == PROCESSING
        assert len(_updates(admin, task_id)) == updates
        clock.offset = GRACE + 1
        _reconcile(send, redis_client, 1)
        wait_for(lambda: int(admin.task(task_id)["status"]) == READY)
        assert registry.read_task_sync(redis_client, event_id, task_id).status == READY
        assert _recovered("ready") == before + 1
        # The READY path: no more media, captions stay readable.
        assert asyncio.run(_lookups(redis_url, feature)) == (None, (event_id, task_id))
        count = len(_updates(admin, task_id))
        clock.offset = 10 * GRACE
        polls = len(admin.calls_of("reach_entryvendortask", "getJobs"))
        send(commands.POLL)  # the task is final: no check, nothing sent
        send(commands.FINALIZE, task_id, "ready", "")  # the relay's command, arriving late after all
        wait_for(lambda: len(admin.calls_of("reach_entryvendortask", "getJobs")) > polls)
        time.sleep(1.0)
    assert len(_updates(admin, task_id)) == count
    assert _recovered("ready") == before + 1
    lines = [r for r in caplog.records if r.getMessage().startswith("finalize recovered")]
    assert len(lines) == 1


def test_a_lost_error_is_finalized_with_the_relays_reason(
    worker: Any, admin: Admin, send: Any, redis_client: redis.Redis, redis_url: str, clock: Clock
) -> None:
    event_id, (task_id,) = _live(admin, send, redis_client)
    feature = admin.features(event_id)[task_id]
    reason = "the speech service (KWIKmotion) refused the session: 4001 invalid_message"
    _relay_state(
        redis_client, event_id, **{keys.RELAY_FINISHED: "1", keys.RELAY_OUTCOME: "error", keys.RELAY_REASON: reason}
    )
    before = _recovered("error")
    _reconcile(send, redis_client, 1)
    wait_for(lambda: _seen(redis_client, event_id, task_id))
    clock.offset = GRACE + 1
    _reconcile(send, redis_client, 1)
    wait_for(lambda: int(admin.task(task_id)["status"]) == ERROR)
    assert admin.task(task_id)["errDescription"] == reason
    rec = registry.read_task_sync(redis_client, event_id, task_id)
    assert (rec.status, rec.error) == (ERROR, reason)
    assert asyncio.run(_lookups(redis_url, feature)) == (None, None)  # ERROR revokes key and token
    assert _recovered("error") == before + 1


def test_an_event_the_relay_has_not_ended_is_never_finalized(
    worker: Any, admin: Admin, send: Any, redis_client: redis.Redis, clock: Clock
) -> None:
    """A live event, one paused on a refusal, one with no relay state yet: untouched however
    long; an ended event beside them is finalized (the reconcile did look)."""
    live, (t_live,) = _live(admin, send, redis_client)
    paused, (t_paused,) = _live(admin, send, redis_client)
    quiet, (t_quiet,) = _live(admin, send, redis_client)
    ended, (t_ended,) = _live(admin, send, redis_client)
    _relay_state(redis_client, live, **{keys.relay_task_field(t_live): '{"done": "1700000000000-3"}'})
    _relay_state(redis_client, paused, **{keys.RELAY_REFUSED_SINCE: str(time.time())})
    _relay_state(redis_client, ended, **{keys.RELAY_FINISHED: "1", keys.RELAY_OUTCOME: "ready"})
    untouched = ((live, t_live), (paused, t_paused), (quiet, t_quiet))
    updates = {t: len(_updates(admin, t)) for _, t in untouched}
    _reconcile(send, redis_client, 4)
    wait_for(lambda: _seen(redis_client, ended, t_ended))
    clock.offset = 10 * GRACE
    _reconcile(send, redis_client, 4)
    wait_for(lambda: int(admin.task(t_ended)["status"]) == READY)
    _reconcile(send, redis_client, 3)
    for event_id, task_id in untouched:
        assert int(admin.task(task_id)["status"]) == PROCESSING
        assert registry.read_task_sync(redis_client, event_id, task_id).status == PROCESSING
        assert _seen(redis_client, event_id, task_id) is None
        assert len(_updates(admin, task_id)) == updates[task_id]


def test_a_task_the_relay_ended_alone_goes_error_with_its_reason(
    worker: Any, admin: Admin, send: Any, redis_client: redis.Redis, clock: Clock
) -> None:
    """4004 for a translation target: the relay ended that task alone (``ended:<task>``) while
    the event goes on; its lost FINALIZE is recovered, the event's other task stays live."""
    event_id, (caption, french) = _live(admin, send, redis_client, CAPTION, translation("French"))
    reason = "the speech service (KWIKmotion) cannot translate into fr: 4004 invalid_model"
    _relay_state(redis_client, event_id, **{keys.relay_ended_field(french): reason})
    before = _recovered("error")
    _reconcile(send, redis_client, 1)
    wait_for(lambda: _seen(redis_client, event_id, french))
    clock.offset = GRACE + 1
    _reconcile(send, redis_client, 1)
    wait_for(lambda: int(admin.task(french)["status"]) == ERROR)
    assert admin.task(french)["errDescription"] == reason
    assert _recovered("error") == before + 1
    _reconcile(send, redis_client, 1)
    assert int(admin.task(caption)["status"]) == PROCESSING
    assert registry.read_task_sync(redis_client, event_id, caption).status == PROCESSING
    assert _seen(redis_client, event_id, caption) is None


def test_two_finalizes_racing_leave_the_winner_standing(
    worker: Any, poller_app: Any, admin: Admin, send: Any, redis_client: redis.Redis, redis_url: str
) -> None:
    """Reconcile's recovery and a late relay command at once, for a task the registry still has
    SCHEDULED (ordered mid-event; its PROCESSING command lost too): each run moves it to
    PROCESSING, then READY. The run that comes second meets Kaltura's final state; it must not
    take that for an outside change (cancelling would revoke the READY task's caption token and
    rewrite its registry status)."""
    event_id, (task_id,) = _scheduled(admin, send, redis_client)
    redis_client.hset(keys.event(event_id), mapping={"status": "live", "session": "1"})
    feature = admin.features(event_id)[task_id]
    ctx = poller_app.reachlive
    admin.fault("reach_entryvendortask", "updateJob", "delay", delay=2.0)  # the first call to arrive waits
    results: list[str] = []
    racer = threading.Thread(target=lambda: results.append(lifecycle.finalize(ctx, task_id, "ready")))
    racer.start()
    time.sleep(0.5)
    results.append(lifecycle.finalize(ctx, task_id, "ready"))
    racer.join(timeout=30)
    assert sorted(results) == ["duplicate", "ready"]
    rec = registry.read_task_sync(redis_client, event_id, task_id)
    assert (rec.status, rec.cancelled) == (READY, False)
    assert asyncio.run(_lookups(redis_url, feature)) == (None, (event_id, task_id))
    assert int(admin.task(task_id)["status"]) == READY
