"""``reachlive admin``'s parts without the stack: the pure readers, every refusal (on the
embedded Redis, registry records written with the registry's own writers), what an accepted
action writes, and the relay side of restart-session: a relay replica whose session an operator
handed over takes it over again at once (the stack runs a single relay), not a failover timeout
later."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import redis
import redis.asyncio as aioredis

from emulators.registry import make_event
from services.console import admin as adm
from services.relay.claim import Claimed
from services.relay.service import Relay
from shared import journal, keys, operator, registry
from shared.kaltura import models
from shared.redis_health import RedisHealth
from shared.settings import RelaySettings
from shared.streams import SessionEntry
from tests.support.polling import eventually


def test_readers() -> None:
    entries = [(b"1-0", {b"v": b"1", b"event": b"E1"}), (b"2-0", {b"v": b"1", b"event": b"E2"})]
    pending = [{"message_id": b"2-0", "consumer": b"relay-0", "time_since_delivered": 5, "times_delivered": 1}]
    assert adm.find_session(entries, pending, "E2") == adm.Session("2-0", "relay-0")
    assert adm.find_session(entries, pending, "E1") == adm.Session("1-0", "")  # not claimed yet
    assert adm.find_session(entries, pending, "E3") is None
    now = 1000.0
    presence = {
        b"p1": json.dumps({"task": "T", "seen": now - 1}).encode(),
        b"p2": json.dumps({"task": "T", "seen": now - keys.INGEST_PRESENCE_TTL_SECONDS - 1}).encode(),  # crashed
        b"p3": b"not json",
    }
    assert set(adm.live_publishers(presence, now)) == {"p1"}
    assert "already ended" in adm.end_media_refusal(-3, "E")
    assert adm.status_name(models.READY) == "READY" and adm.status_name(42) == "42"


@pytest.fixture
def console(redis_client: redis.Redis, redis_url: str) -> tuple[adm.Admin, list[str]]:
    said: list[str] = []
    return adm.Admin(redis_client, redis_url, wait=0.0, out=said.append, user="tester"), said


def refused(call: object, *args: str) -> str:
    with pytest.raises(adm.Refused) as info:
        call(*args)  # type: ignore[operator]
    return str(info.value)


def test_what_does_not_apply_is_refused(console: tuple[adm.Admin, list[str]], redis_client: redis.Redis) -> None:
    a, _ = console
    for action in (a.restart_session, a.disconnect, a.end_media):
        assert refused(action, "404") == "unknown event 404"
    for action in (a.resend_status, a.revoke):
        assert refused(action, "404") == "unknown task 404"

    ev = make_event(redis_client, "E1", targets=("fr",))  # live, media session open, tasks PROCESSING
    assert "no speech session" in refused(a.restart_session, "E1")
    redis_client.xgroup_create(keys.SESSIONS_STREAM, keys.RELAY_GROUP, id="0", mkstream=True)
    redis_client.xadd(keys.SESSIONS_STREAM, SessionEntry("E1").fields())
    assert "no relay holds" in refused(a.restart_session, "E1")  # not claimed by any relay yet
    redis_client.hset(keys.relay_state("E1"), keys.RELAY_FINISHED, "1")
    assert "already finished" in refused(a.restart_session, "E1")

    assert refused(a.disconnect, "E1") == "event E1 has no publisher to disconnect"
    assert "has no publisher p9" in refused(a.disconnect, "E1", "p9")
    assert "not final yet" in refused(a.resend_status, ev.caption_task)
    redis_client.hset(keys.task("E1", ev.caption_task), "status", str(models.ABORTED))
    assert "set on Kaltura's side" in refused(a.resend_status, ev.caption_task)

    # No media yet, then ended, then ended twice; an event whose every task is cancelled.
    redis_client.hset(keys.event("E1"), "session", "0")
    assert "no media yet" in refused(a.end_media, "E1")
    redis_client.hset(keys.event("E1"), "session", "1")
    a.end_media("E1")
    assert registry.read_event_sync(redis_client, "E1").status == "ended"
    assert "already ended" in refused(a.end_media, "E1")
    assert "has ended" in refused(a.disconnect, "E1")
    make_event(redis_client, "E2", targets=())
    registry.revoke_task(redis_client, "E2", "E21")
    assert "already cancelled" in refused(a.revoke, "E21")
    assert "is cancelled" in refused(a.end_media, "E2")


def test_revoke_end_media_and_restart_write_what_the_services_read(
    console: tuple[adm.Admin, list[str]], redis_client: redis.Redis
) -> None:
    a, said = console
    ev = make_event(redis_client, "E1", targets=("fr",))
    translation = ev.translation_tasks["fr"]
    registry.write_task(
        redis_client, registry.read_task_sync(redis_client, "E1", translation), media_key="mk", caption_token="ct"
    )
    listener = redis_client.pubsub()
    listener.subscribe(keys.REVOKED_CHANNEL, keys.OPERATOR_CHANNEL)
    assert listener.get_message(timeout=1) and listener.get_message(timeout=1)  # the two subscriptions
    a.revoke(translation)
    got = [listener.get_message(timeout=1) for _ in range(2)]
    assert [m["channel"] for m in got] == [keys.OPERATOR_CHANNEL.encode(), keys.REVOKED_CHANNEL.encode()]
    assert operator.parse(got[0]["data"]) == operator.Request(operator.REVOKE, "E1", translation)
    assert asyncio.run(_lookups(redis_client, "mk", "ct")) == (None, None)
    assert registry.read_task_sync(redis_client, "E1", translation).cancelled
    assert "Kaltura is not told" in said[-1]

    a.end_media("E1")
    redis_client.xgroup_create(keys.SESSIONS_STREAM, keys.RELAY_GROUP, id="0", mkstream=True)
    entry = redis_client.xadd(keys.SESSIONS_STREAM, SessionEntry("E1").fields()).decode()
    redis_client.xreadgroup(keys.RELAY_GROUP, "relay-0", {keys.SESSIONS_STREAM: ">"})
    a.restart_session("E1")
    [p] = redis_client.xpending_range(keys.SESSIONS_STREAM, keys.RELAY_GROUP, "-", "+", 10)
    assert (p["message_id"].decode(), p["consumer"].decode()) == (entry, keys.RELAY_OPERATOR_CONSUMER)
    assert p["time_since_delivered"] >= adm.HAND_OVER_IDLE_MS  # past any failover timeout
    assert redis_client.hexists(keys.relay_state("E1"), keys.RELAY_RESTART)
    assert "already under way" in refused(a.restart_session, "E1")

    actions = [e.fields for e in journal.read(redis_client, "E1") if e.kind == "operator_action"]
    assert [f["action"] for f in actions] == ["revoke", "end-media", "restart-session"]
    assert actions[0] == {"action": "revoke", "user": "tester", "task": translation, "status": "PROCESSING"}
    assert actions[2]["relay"] == "relay-0"


async def _lookups(client: redis.Redis, media_key: str, token: str) -> tuple[object, object]:
    url = client.connection_pool.connection_kwargs
    aclient = aioredis.Redis(host=url["host"], port=url["port"])
    try:
        return await registry.lookup_media_key(aclient, media_key), await registry.lookup_caption_token(aclient, token)
    finally:
        await aclient.aclose()


@pytest.mark.parametrize(("heartbeat", "failover"), [(0.1, 30.0), (30.0, 120.0)])
async def test_a_relay_takes_over_at_once_the_session_an_operator_handed_over(
    aredis: aioredis.Redis, redis_client: redis.Redis, redis_url: str, heartbeat: float, failover: float
) -> None:
    """One relay replica (as in the stack): its session handed over by restart-session is found
    lost at its next heartbeat and claimed again by the same replica in that round, with a new
    session run; not left until the failover timeout passes. With heartbeats rarer than rounds
    (30 s against 1 s: issue 22 made them every ``heartbeat_seconds``), the next round's
    XAUTOCLAIM gives the handed-over entry back before any heartbeat says it was lost: the session
    must be restarted then too (it ran on, never restarted, before the fix)."""
    make_event(redis_client, "E1", targets=())
    runs: list[Claimed] = []
    stopped: list[Claimed] = []

    async def runner(claimed: Claimed) -> None:
        runs.append(claimed)
        # The real session clears the restart mark at its claim (EventSession._restarted).
        await aredis.hdel(keys.relay_state("E1"), keys.RELAY_RESTART)
        try:
            await asyncio.sleep(3600)
        finally:
            stopped.append(claimed)
            await asyncio.sleep(0.5)  # as a real session, closing its KWIKmotion connection takes a while

    relay = Relay(
        aredis,
        RelaySettings(heartbeat_seconds=heartbeat, failover_seconds=failover),
        runner,
        "relay-0",
        RedisHealth("t"),
    )
    stop = asyncio.Event()
    loop = asyncio.create_task(relay.run(stop))
    try:
        await eventually(lambda: relay.claimer and _group_exists(redis_client), what="the consumer group")
        redis_client.xadd(keys.SESSIONS_STREAM, SessionEntry("E1").fields())
        await eventually(lambda: len(runs) == 1, what="the session claimed")
        said: list[str] = []
        console = adm.Admin(redis_client, redis_url, wait=10.0, out=said.append, user="t")
        started = time.monotonic()
        await asyncio.to_thread(console.restart_session, "E1")
        assert [c.failover for c in runs] == [False, True], runs
        assert stopped == runs[:1]  # the first run was stopped
        assert "relay relay-0 took the session over" in said[-1], said
        assert time.monotonic() - started < 30  # not the failover timeout: the next rounds
    finally:
        stop.set()
        await asyncio.wait_for(loop, 15)


def _group_exists(client: redis.Redis) -> bool:
    try:
        return bool(client.xinfo_groups(keys.SESSIONS_STREAM))
    except redis.ResponseError:
        return False
