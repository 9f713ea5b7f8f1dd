"""The relay's shared audio reader (services/relay/reader.py, issue 22) against the real Redis:
one XREAD for many sessions, a session added during a blocked read, a slow session, replays and
trimmed streams."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import redis
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from emulators.registry import make_event
from services.relay.reader import QUEUE_ENTRIES, AudioReader, Subscription
from shared import keys
from shared.streams import EndOfStream
from tests.relay.conftest import RelayRunner
from tests.relay.helpers import (
    CHUNK_BYTES,
    audio_entries,
    check_audio,
    check_captions,
    config,
    event_pcm,
    finalize_commands,
    open_session,
    responses,
)
from tests.support.polling import eventually


def _xreads(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_xread", {}).get("calls", 0))


def _metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def test_many_sessions_share_one_reader(redis_client, emu, relays: RelayRunner, redis_url) -> None:
    """Eight live events, their audio arriving in rounds of one 500 ms entry each: the relay reads
    each round in a read or two for all of them, where one XREAD per session made it at least
    one per session and round (this test fails on that: ≥ 96 reads for the 12 rounds)."""
    n, rounds = 8, 12
    events = [make_event(redis_client, str(700 + i)) for i in range(n)]
    pcms = [event_pcm(i) for i in range(n)]
    entries = [audio_entries(pcm) for pcm in pcms]
    relays.start(config(redis_url, emu.url))
    for ev in events:
        open_session(redis_client, ev.id)

    def add(i: int) -> None:
        pipe = redis_client.pipeline(transaction=False)
        for ev, es in zip(events, entries, strict=True):
            pipe.xadd(keys.audio(ev.id), es[i])
        pipe.execute()

    # Warm up: every session connected and reading (a first chunk received by KWIKmotion).
    for i in range(4):
        add(i)
    await eventually(lambda: sum(1 for s in emu.started_sessions() if s.chunks) == n, what="every session reading")
    before = _xreads(redis_client)
    for i in range(4, 4 + rounds):
        add(i)
        await asyncio.sleep(0.25)  # a round: every session takes its entry (not timed: counted)
    reads = _xreads(redis_client) - before
    assert reads < n * rounds / 2, f"{reads} XREADs for {n} sessions × {rounds} rounds: not one shared reader"
    for i in range(4 + rounds, len(entries[0])):
        add(i)
    for ev, pcm in zip(events, pcms, strict=True):
        redis_client.xadd(keys.audio(ev.id), EndOfStream(len(pcm) / 32000, "ended").fields())
    tasks = sum(len(ev.task_ids) for ev in events)
    await eventually(lambda: len(finalize_commands(redis_client)) == tasks, timeout=60, what="every event finished")
    # Nothing lost, nothing mixed: each event's KWIKmotion session got its own audio, whole.
    for ev, pcm in zip(events, pcms, strict=True):
        mine = [s for s in emu.started_sessions() if s.audio and s.audio[:CHUNK_BYTES] == pcm[:CHUNK_BYTES]]
        check_audio(mine, pcm)
        check_captions(responses(redis_client, ev.id, ev.caption_task), round(len(pcm) / 32000, 3))


async def _blocked(client: redis.Redis) -> None:
    """Until a client of this Redis is blocked (CLIENT LIST flag ``b``): the reader's XREAD."""
    await eventually(
        lambda: any("b" in c["flags"] and c["cmd"] == "xread" for c in client.client_list()),
        what="the reader blocked in its XREAD",
    )


@contextlib.asynccontextmanager
async def _reader(redis_url: str, **options: object) -> AsyncIterator[AudioReader]:
    conn = aioredis.Redis.from_url(redis_url)
    client = aioredis.Redis.from_url(redis_url)
    reader = AudioReader(conn, client, "test-reader", **options)  # type: ignore[arg-type]
    task = asyncio.create_task(reader.run())
    try:
        yield reader
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await conn.aclose()
        await client.aclose()


async def _take(sub: Subscription, count: int, timeout: float = 10.0) -> list[str]:
    """Entry ids from ``sub`` until ``count`` came (a generous ceiling, not a speed check)."""
    got: list[str] = []
    async with asyncio.timeout(timeout):
        while len(got) < count:
            got += [entry_id for entry_id, _fields in await sub.get(1.0)]
    return got


async def test_a_session_added_during_a_blocked_read_is_served_at_once(redis_client, redis_url) -> None:
    """The reader blocks a minute on one stream; a session added meanwhile (its stream with
    audio already, as a reconnect's replay) and a new entry on it come long before that."""
    pcm = event_pcm(1)
    es = audio_entries(pcm)
    wakes = _metric("reachlive_relay_audio_reader_wakes_total")
    async with _reader(redis_url, block_ms=60_000) as reader:
        first = reader.subscribe("a1", "0-0")
        await _blocked(redis_client)
        ids = [redis_client.xadd(keys.audio("b1"), fields).decode() for fields in es[:3]]
        second = reader.subscribe("b1", "0-0")
        assert await _take(second, 3) == ids
        ids.append(redis_client.xadd(keys.audio("b1"), es[3]).decode())
        assert await _take(second, 1) == ids[3:]
        # The first session is still read as well.
        a_id = redis_client.xadd(keys.audio("a1"), es[0]).decode()
        assert await _take(first, 1) == [a_id]
    assert _metric("reachlive_relay_audio_reader_wakes_total") > wakes


async def test_a_slow_session_holds_a_bounded_queue_and_loses_nothing(redis_client, redis_url) -> None:
    """A session that takes nothing while its stream grows: the reader queues at most
    QUEUE_ENTRIES of it and leaves it out of the reads meanwhile, other sessions are served, and
    when it takes its entries it gets every one, in order."""
    es = audio_entries(event_pcm(2))
    many = 3 * QUEUE_ENTRIES
    held = _metric("reachlive_relay_audio_reads_held_total")
    async with _reader(redis_url) as reader:
        slow = reader.subscribe("slow", "0-0")
        fast = reader.subscribe("fast", "0-0")
        slow_ids = [redis_client.xadd(keys.audio("slow"), es[i % len(es)]).decode() for i in range(many)]
        for i in range(10):
            fast_id = redis_client.xadd(keys.audio("fast"), es[i]).decode()
            assert await _take(fast, 1) == [fast_id]
            assert len(slow.queue) <= QUEUE_ENTRIES
        assert len(slow.queue) <= QUEUE_ENTRIES
        assert _metric("reachlive_relay_audio_reads_held_total") > held
        assert await _take(slow, many) == slow_ids


async def test_replays_and_trimmed_streams(redis_client, redis_url) -> None:
    """A subscription from before the stream's first entry (trimmed behind the cursor) gets what
    is left; two of one stream at different positions (a session taken over in this process
    while the old one stops) each get the entries after their own."""
    es = audio_entries(event_pcm(3))
    key = keys.audio("t1")
    ids = [redis_client.xadd(key, fields).decode() for fields in es[:10]]
    redis_client.xtrim(key, minid=ids[4])
    async with _reader(redis_url) as reader:
        from_start = reader.subscribe("t1", "0-0")
        from_cursor = reader.subscribe("t1", ids[7])
        assert await _take(from_start, 6) == ids[4:]
        assert await _take(from_cursor, 2) == ids[8:]
        ids.append(redis_client.xadd(key, es[10]).decode())
        assert await _take(from_start, 1) == ids[10:]
        assert await _take(from_cursor, 1) == ids[10:]
        from_cursor.close()
        ids.append(redis_client.xadd(key, es[11]).decode())
        assert await _take(from_start, 1) == ids[11:]
        assert not from_cursor.queue  # closed: nothing more for it
