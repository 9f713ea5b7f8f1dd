"""What the relay costs Redis per live event (issue 22), counted by a real Redis (``INFO
commandstats``: the calls a script makes count as commands too): a caption commit, the captions
streams' expiry set once per writer and value, the claim heartbeat every ``heartbeat_seconds``
rather than every tick."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import redis.asyncio as aioredis

from emulators.registry import make_event
from services.relay.claim import Claimed, Claimer
from services.relay.service import Relay
from services.relay.writer import CaptionWriter, Pending, claim_epoch
from shared import keys
from shared.redis_health import RedisHealth
from shared.settings import RelaySettings
from shared.streams import SessionEntry


async def _calls(client: aioredis.Redis) -> Counter[str]:
    stats = await client.info("commandstats")
    return Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()})


async def _counted(client: aioredis.Redis, before: Counter[str]) -> Counter[str]:
    """Commands run since ``before``, by name, the INFO calls of this test left out."""
    after = await _calls(client)
    after.subtract(before)
    after.pop("info", None)
    return +after


def _fields(kind: str, n: int) -> dict[str, str]:
    return {"v": "1", "json": f'{{"n": {n}}}', "kind": kind, "eos": "0", "created": "1.0"}


async def test_caption_commit_costs_six_commands(aredis, redis_client) -> None:
    """A commit of a KWIKmotion response (a transcript and a captions entry of one task, with the
    relay state): EVALSHA, one HMGET of epoch and commit number, one HSET of the state, one HGET
    of the task's ``cancelled``, the two XADDs; EXPIREAT only at the writer's first commit of a
    stream, no XTRIM without a trim asked. The script before issue 22 ran 11 commands for it (two
    HGETs of the state, two HSETs, an HGET of ``cancelled`` and an EXPIREAT per entry)."""
    ev = make_event(redis_client, "cost1", targets=())
    epoch = await claim_epoch(aredis, ev.id)
    writer = CaptionWriter(aredis, ev.id, [ev.caption_task], epoch, 1000, int(time.time()) + 3600)
    # The first commit loads the script and sets the stream's expiry.
    await writer.commit([Pending(0, _fields("transcript", 0))], {keys.RELAY_CURSOR: "1-0"})
    before = await _calls(aredis)
    entries = [Pending(0, _fields("transcript", 1)), Pending(0, _fields("captions", 1))]
    state = {keys.RELAY_CURSOR: "2-0", keys.relay_task_field(ev.caption_task): "{}"}
    await writer.commit(entries, state)
    calls = await _counted(aredis, before)
    assert calls == Counter(evalsha=1, hmget=1, hset=1, hget=1, xadd=2), calls
    assert sum(calls.values()) == 6
    assert await aredis.xlen(keys.captions(ev.id, ev.caption_task)) == 3
    assert await aredis.hget(keys.relay_state(ev.id), keys.RELAY_CURSOR) == b"2-0"
    # A trim asked costs its XTRIM, once per commit.
    before = await _calls(aredis)
    await writer.commit(entries, state, trim_minid="2-0")
    assert (await _counted(aredis, before))["xtrim"] == 1


async def test_expiry_set_again_when_it_changes_and_by_a_new_writer(aredis, redis_client) -> None:
    """EXPIREAT is sent when the expiry differs from what this writer last set on the stream:
    at its first caption, after the expiry changed (the window moved), by a new writer (a
    reconnect, a takeover); not for a cancelled task's stream (no caption, no expiry), which gets
    it with its next caption."""
    ev = make_event(redis_client, "cost2", targets=("fr",))
    fr = ev.translation_tasks["fr"]
    captions, fr_captions = keys.captions(ev.id, ev.caption_task), keys.captions(ev.id, fr)
    epoch = await claim_epoch(aredis, ev.id)
    hour = int(time.time()) + 3600
    writer = CaptionWriter(aredis, ev.id, [ev.caption_task, fr], epoch, 1000, hour)

    async def expires_in(key: str) -> int:
        return int(await aredis.ttl(key))

    await aredis.hset(keys.task(ev.id, fr), "cancelled", "1")
    await writer.commit([Pending(0, _fields("transcript", 1)), Pending(1, _fields("transcript", 1))], {})
    assert 3500 < await expires_in(captions) <= 3600
    assert not await aredis.exists(fr_captions)  # cancelled: nothing written
    # Set once: the same writer leaves it alone (PERSIST stands for "unchanged since").
    await aredis.persist(captions)
    await writer.commit([Pending(0, _fields("transcript", 2))], {})
    assert await expires_in(captions) == -1
    # The expiry changes: set again.
    writer.expire_at = hour + 3600
    await writer.commit([Pending(0, _fields("transcript", 3))], {})
    assert 7100 < await expires_in(captions) <= 7200
    # A new writer of the same claim (a reconnect) sets it once again, whatever is stored.
    await aredis.persist(captions)
    again = CaptionWriter(aredis, ev.id, [ev.caption_task, fr], epoch, 1000, hour, writer.numbers)
    await again.commit([Pending(0, _fields("transcript", 4))], {})
    assert 3500 < await expires_in(captions) <= 3600
    # The cancelled task's stream never got one; written again, it does.
    await aredis.hset(keys.task(ev.id, fr), "cancelled", "0")
    await writer.commit([Pending(1, _fields("transcript", 5))], {})
    assert await aredis.xlen(fr_captions) == 1
    assert 7100 < await expires_in(fr_captions) <= 7200
    # ARGV expiry 0: none set.
    none = CaptionWriter(aredis, ev.id, [ev.caption_task, fr], epoch, 1000, 0, writer.numbers)
    await aredis.persist(captions)
    await none.commit([Pending(0, _fields("transcript", 6))], {})
    assert await expires_in(captions) == -1


async def test_claim_heartbeat_every_heartbeat_seconds_and_at_once_after_an_outage(aredis) -> None:
    """Rounds run every tick (1 s here), the heartbeat (XPENDING + XCLAIM per owned entry) every
    ``heartbeat_seconds`` (2 s): not in a round right after one that heartbeated; but in the
    first round after an outage at once (Redis counted the outage as the entries' idle time)."""

    async def runner(claimed: Claimed) -> None:
        await asyncio.sleep(3600)

    relay = Relay(aredis, RelaySettings(heartbeat_seconds=2, failover_seconds=10), runner, "a", RedisHealth("t"))
    assert (relay.tick, relay.beat) == (1.0, 2.0)
    await relay.claimer.ensure_group()
    await aredis.xadd(keys.SESSIONS_STREAM, SessionEntry("E1").fields())
    [claimed] = await Claimer(aredis, "a", 10).read_new(1, block_ms=10)
    relay._start(claimed)
    stop = asyncio.Event()
    stop.set()  # rounds that only heartbeat (no new sessions read)
    try:
        before = await _calls(aredis)
        await relay._round(stop)
        assert (await _counted(aredis, before))["xclaim"] == 1
        before = await _calls(aredis)
        await relay._round(stop)  # a tick later, say: not due yet
        assert (await _counted(aredis, before))["xclaim"] == 0
        relay.down = True  # the last round failed for want of Redis
        before = await _calls(aredis)
        await relay._round(stop)
        assert (await _counted(aredis, before))["xclaim"] == 1
        relay.last_beat -= relay.beat  # a beat later
        relay.down = False
        before = await _calls(aredis)
        await relay._round(stop)
        assert (await _counted(aredis, before))["xclaim"] == 1
    finally:
        await relay.shutdown()
