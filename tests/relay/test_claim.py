"""Claiming and fencing on a real Redis (6.2): the heartbeat never steals, a lost entry is
reported, release makes the hand-over immediate, a stale epoch cannot write captions."""

from __future__ import annotations

import asyncio

import pytest

from emulators.registry import make_event
from services.relay.audio import Chunker, id_le, parse_id
from services.relay.backoff import Backoff
from services.relay.claim import Claimer
from services.relay.writer import CaptionWriter, Fenced, Pending, claim_epoch
from shared import keys
from shared.streams import AudioChunk, SessionEntry


async def _session(aredis, event_id: str) -> str:
    eid = await aredis.xadd(keys.SESSIONS_STREAM, SessionEntry(event_id).fields())
    return eid.decode()


async def test_read_heartbeat_autoclaim_release(aredis) -> None:
    a = Claimer(aredis, "a", failover_seconds=0.2)
    b = Claimer(aredis, "b", failover_seconds=0.2)
    await a.ensure_group()
    await b.ensure_group()  # BUSYGROUP is fine
    e1 = await _session(aredis, "E1")
    [got] = await a.read_new(5, block_ms=10)
    assert (got.entry_id, got.event_id, got.failover) == (e1, "E1", False)
    assert await b.read_new(5, block_ms=10) == []  # new entries only, once
    # While a heartbeats, b cannot take the entry.
    for _ in range(3):
        await asyncio.sleep(0.1)
        assert await a.heartbeat([e1]) == set()
        assert await b.autoclaim(5) == []
    # a stops heartbeating: after the failover timeout b takes over ...
    await asyncio.sleep(0.25)
    [taken] = await b.autoclaim(5)
    assert (taken.entry_id, taken.event_id, taken.failover) == (e1, "E1", True)
    # ... and a's next heartbeat reports the loss without stealing it back.
    assert await a.heartbeat([e1]) == {e1}
    pending = await aredis.xpending_range(keys.SESSIONS_STREAM, keys.RELAY_GROUP, "-", "+", 10)
    assert [p["consumer"] for p in pending] == [b"b"]
    # Release on SIGTERM: the entry looks idle past the timeout at once.
    b_long = Claimer(aredis, "b", failover_seconds=60)
    c = Claimer(aredis, "c", failover_seconds=60)
    assert await b_long.release([e1]) == 1
    assert [x.entry_id for x in await c.autoclaim(5)] == [e1]
    assert await b_long.release([e1]) == 0  # not ours any more
    # Finished: acked and deleted; a heartbeat of it reports it lost.
    await c.ack(e1)
    assert await c.heartbeat([e1]) == {e1}
    assert await aredis.xlen(keys.SESSIONS_STREAM) == 0


async def test_prune_keeps_consumers_that_own_entries(aredis) -> None:
    a = Claimer(aredis, "a", failover_seconds=1)
    b = Claimer(aredis, "b", failover_seconds=1)
    await a.ensure_group()
    await _session(aredis, "E1")
    assert len(await a.read_new(1, block_ms=10)) == 1
    await _session(aredis, "E2")
    [done] = await b.read_new(1, block_ms=10)
    await b.ack(done.entry_id)  # b exists, owning nothing
    await asyncio.sleep(0.05)
    c = Claimer(aredis, "c", failover_seconds=1)
    assert await c.prune_consumers(idle_seconds=0.01) == 1
    names = {x["name"] for x in await aredis.xinfo_consumers(keys.SESSIONS_STREAM, keys.RELAY_GROUP)}
    assert names == {b"a"}


async def test_capacity_bounds_reads(aredis) -> None:
    a = Claimer(aredis, "a", failover_seconds=1)
    await a.ensure_group()
    for i in range(5):
        await _session(aredis, f"E{i}")
    assert len(await a.read_new(2, block_ms=10)) == 2
    assert await a.read_new(0, block_ms=10) == []
    assert len(await a.read_new(10, block_ms=10)) == 3


async def test_stale_epoch_cannot_write(aredis, redis_client) -> None:
    ev = make_event(redis_client, "42", targets=())
    old = await claim_epoch(aredis, ev.id)
    new = await claim_epoch(aredis, ev.id)
    assert new == old + 1
    fields = {"v": "1", "json": "{}", "kind": "transcript", "eos": "0", "created": "1.0"}
    stale = CaptionWriter(aredis, ev.id, [ev.caption_task], old, 1000, 0)
    with pytest.raises(Fenced):
        await stale.commit([Pending(0, fields)], {"cursor": "5-0"})
    assert await aredis.xlen(keys.captions(ev.id, ev.caption_task)) == 0
    assert await aredis.hget(keys.relay_state(ev.id), "cursor") is None
    owner = CaptionWriter(aredis, ev.id, [ev.caption_task], new, 1000, 2_000_000_000)
    await owner.commit([Pending(0, fields)], {"cursor": "5-0"})
    assert await aredis.xlen(keys.captions(ev.id, ev.caption_task)) == 1
    assert await aredis.hget(keys.relay_state(ev.id), "cursor") == b"5-0"
    assert await aredis.ttl(keys.captions(ev.id, ev.caption_task)) > 0
    # A cancelled task gets nothing more, while the state still advances.
    await aredis.hset(keys.task(ev.id, ev.caption_task), "cancelled", "1")
    await owner.commit([Pending(0, fields)], {"cursor": "6-0"})
    assert await aredis.xlen(keys.captions(ev.id, ev.caption_task)) == 1
    assert await aredis.hget(keys.relay_state(ev.id), "cursor") == b"6-0"


async def test_commit_trims_audio_behind_cursor(aredis, redis_client) -> None:
    ev = make_event(redis_client, "43", targets=())
    ids = [(await aredis.xadd(keys.audio(ev.id), {"x": str(i)}, id=f"{i + 1}-0")).decode() for i in range(300)]
    epoch = await claim_epoch(aredis, ev.id)
    writer = CaptionWriter(aredis, ev.id, [ev.caption_task], epoch, 1000, 0)
    await writer.commit([], {"cursor": ids[250]}, trim_minid=ids[250])
    first = (await aredis.xrange(keys.audio(ev.id), count=1))[0][0].decode()
    assert id_le(first, ids[250])  # MINID ~ trims whole nodes: never past the cursor
    assert await aredis.xlen(keys.audio(ev.id)) <= 100  # nodes of 100 entries wholly behind it went
    assert await aredis.xrange(keys.audio(ev.id), ids[250], ids[250])  # the cursor entry is kept


def test_chunker_groups_whole_entries() -> None:
    ch = Chunker(2.0)
    out = []
    for i in range(9):
        out += ch.add(f"{i}-0", AudioChunk(media_time=i * 0.5, pts=i * 0.5, epoch=100 + i * 0.5, pcm=b"\1\0" * 8000))
    out += ch.flush()
    assert [(c.first_id, c.last_id, c.media_t0, c.duration) for c in out] == [
        ("0-0", "3-0", 0.0, 2.0),
        ("4-0", "7-0", 2.0, 2.0),
        ("8-0", "8-0", 4.0, 0.5),
    ]
    assert ch.flush() == []
    assert parse_id("12-3") == (12, 3) and id_le("9-9", "10-0") and not id_le("10-1", "10-0")


def test_backoff_is_capped_and_jittered() -> None:
    b = Backoff(0.5, 4.0)
    delays = [b.next() for _ in range(8)]
    assert 0.25 <= delays[0] <= 0.5
    assert all(d <= 4.0 for d in delays) and delays[-1] >= 2.0
    b.reset()
    assert b.next() <= 0.5


async def test_sessions_kept_while_redis_is_unreachable() -> None:
    """Heartbeats failing (Redis down) stop nothing: a session outlives many failover timeouts
    (its commits are fenced by the epoch if another replica takes it over), and the replica
    says so once (RedisHealth), never exiting."""
    import redis.asyncio as aioredis

    from services.relay.claim import Claimed
    from services.relay.service import Relay
    from shared.child import free_port
    from shared.redis_health import RedisHealth
    from shared.settings import RelaySettings

    stopped = asyncio.Event()

    async def runner(claimed: Claimed) -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            stopped.set()

    dead = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}", socket_connect_timeout=0.1)
    health = RedisHealth("relay-test")
    relay = Relay(dead, RelaySettings(heartbeat_seconds=0.1, failover_seconds=0.2), runner, "a", health)
    relay._start(Claimed("1-0", "E", False))
    stop = asyncio.Event()
    loop = asyncio.create_task(relay.run(stop))
    await asyncio.sleep(1.5)  # 7 failover timeouts
    assert health.down and not loop.done() and not stopped.is_set()
    assert not relay.claiming()  # /readyz: no round succeeds
    stop.set()
    await asyncio.wait_for(loop, 10)
    assert stopped.is_set()  # SIGTERM still stops it
    await dead.aclose()


async def test_no_takeover_right_after_an_outage(aredis) -> None:
    """Redis counts idle time through an outage, so every entry looks abandoned when it returns:
    a replica back from an outage waits one failover timeout before XAUTOCLAIM, leaving live
    owners the time to heartbeat; a dead owner's entry is taken over after it."""
    from services.relay.claim import Claimed
    from services.relay.service import Relay
    from shared.redis_health import RedisHealth
    from shared.settings import RelaySettings

    started: list[Claimed] = []

    async def runner(claimed: Claimed) -> None:
        started.append(claimed)
        await asyncio.sleep(3600)

    owner = Claimer(aredis, "owner", failover_seconds=0.3)
    await owner.ensure_group()
    e1 = await _session(aredis, "E1")
    assert [c.entry_id for c in await owner.read_new(5, block_ms=10)] == [e1]
    await asyncio.sleep(0.5)  # idle past the failover timeout (as after an outage)
    other = Relay(aredis, RelaySettings(heartbeat_seconds=0.1, failover_seconds=0.6), runner, "b", RedisHealth("t"))
    other.down = True  # its last round failed for want of Redis
    other._up()
    stop = asyncio.Event()
    await other._round(stop)
    assert started == []  # not yet: the owner may be alive and about to heartbeat
    await asyncio.sleep(0.65)
    await other._round(stop)
    assert [c.entry_id for c in started] == [e1] and started[0].failover
    await other.shutdown()
