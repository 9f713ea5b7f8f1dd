"""Audio writes lost by a Redis failover (issue 18): the old master acknowledged a chunk that never
reached the replica promoted in its place. Simulated deterministically on one real Redis: the last
audio entry is removed and the timeline (``samples``, ``pts_end``, ``epoch_end``) set back as the
write before it left it, atomically, while the writer goes on. The writer, which keeps its last
seconds of audio, finds the timeline shorter than it left it and writes the lost audio again:
every sample once, the timeline continuous, one writer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import numpy as np
import pytest
import redis

from services.ingest import metrics
from services.ingest.coordinator import RATE, Coordinator
from services.ingest.outage import Link
from services.ingest.publisher import Publisher
from services.ingest.server import ingest_client
from shared import keys, redis_health, streams
from tests.ingest.conftest import end_window, ffmpeg_publish, make_event, wait_for
from tests.ingest.test_interop import CHUNK, REF, check_audio
from tests.support.outage import OutageRedis

# Atomically (against the writer's own script): the last audio entry gone, the timeline as the
# write before it left it (its end: the removed entry's start, pts and arrival epoch).
_LOSE_LAST_WRITE = """
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)[1]
if not last then return 0 end
local f = {}
for i = 1, #last[2], 2 do f[last[2][i]] = last[2][i + 1] end
if f['type'] ~= 'audio' then return 0 end
local samples = tonumber(redis.call('HGET', KEYS[1], 'samples'))
local start = math.floor(tonumber(f['t']) * 16000 + 0.5)
if start + string.len(f['pcm']) / 2 ~= samples then return 0 end
redis.call('XDEL', KEYS[2], last[1])
redis.call('HSET', KEYS[1], 'samples', tostring(start), 'pts_end', f['pts'], 'epoch_end', f['epoch'])
if ARGV[1] == '1' then redis.call('DEL', KEYS[3]) end
return string.len(f['pcm']) / 2
"""


def lose_last_write(client: redis.Redis, event_id: str, lease_too: bool = False) -> int:
    """Samples of the write removed (0: none, e.g. the end of stream was last)."""
    keys_ = [keys.ingest_state(event_id), keys.audio(event_id), keys.ingest_primary(event_id)]
    return int(client.eval(_LOSE_LAST_WRITE, 3, *keys_, "1" if lease_too else "0"))


def rewritten() -> float:
    return metrics.REWRITTEN._value.get()


@pytest.fixture
def own_redis(tmp_path) -> Iterator[OutageRedis]:
    server = OutageRedis(tmp_path / "redis").start()
    yield server
    server.stop()


SOURCE = (np.arange(12 * 8000) % 30000).astype("<i2").tobytes()  # 6 s, every sample distinct
PART = 8000 * 2  # bytes of a 500 ms chunk


async def _writer(url: str, event_id: str) -> tuple[Publisher, Link, object]:
    client = ingest_client(url)
    link = Link(redis_health.get("ingest"))
    coord = Coordinator(client, chunk_ms=500, retention_seconds=60)
    pub = Publisher(coord, event_id, "t", chunk_ms=500, standby_seconds=30, link=link)
    await pub.try_acquire()
    assert pub.role == "primary"
    return pub, link, client


def _append(pub: Publisher, i: int) -> None:
    pub.track.append(SOURCE[i * PART : (i + 1) * PART], i / 2, 1000.0 + i / 2)


async def _check_stream(client, event_id: str) -> None:
    entries = [streams.parse_audio(f) for _id, f in await client.xrange(keys.audio(event_id))]
    assert [e.media_time for e in entries] == [i / 2 for i in range(len(entries))]
    assert b"".join(e.pcm for e in entries) == SOURCE  # every sample once, in order


@pytest.mark.parametrize("lease_too", [False, True], ids=["lease-kept", "lease-lost"])
async def test_a_write_lost_by_a_failover_is_written_again(redis_url, redis_client, lease_too, caplog) -> None:
    """The writer's next write finds the timeline one chunk short (the lease its own, or gone
    with the lost writes): it writes the lost chunk again from its kept audio, stays the writer."""
    caplog.set_level(logging.INFO)
    event_id = f"lost-{lease_too}"
    pub, _link, client = await _writer(redis_url, event_id)
    before = rewritten()
    try:
        for i in range(4):
            _append(pub, i)
        await pub._write_ready(final=False)  # 0.0 … 1.5
        assert lose_last_write(redis_client, event_id, lease_too) == PART // 2
        for i in range(4, 12):
            _append(pub, i)
            await pub._write_ready(final=False)
            assert pub.role == "primary"
        await pub._write_ready(final=True)
        await _check_stream(client, event_id)
        assert rewritten() - before == pytest.approx(0.5)
        lines = [r.getMessage() for r in caplog.records if "writing it again" in r.getMessage()]
        assert len(lines) == 1 and "0.500 s" in lines[0] and "from 1.500 s" in lines[0], lines
        assert redis_client.get(keys.ingest_primary(event_id)).decode() == pub.id
    finally:
        await client.aclose()


async def test_writes_lost_across_the_failover_outage_are_written_again(own_redis, caplog) -> None:
    """The failover as the writer sees it: a write acknowledged, then Redis gone (the writer
    buffers), then back without that write (and without the lease, lapsed on the new master):
    the resume finds the timeline short and writes the lost chunk again before the backlog."""
    caplog.set_level(logging.INFO)
    pub, link, client = await _writer(own_redis.url, "failover")
    sync = redis.Redis.from_url(own_redis.url)
    before = rewritten()
    try:
        for i in range(4):
            _append(pub, i)
        await pub._write_ready(final=False)
        await asyncio.to_thread(own_redis.stop)
        for i in range(4, 7):
            _append(pub, i)
            await pub._write_ready(final=False)  # Redis gone: buffered
        assert pub.suspended
        await asyncio.to_thread(own_redis.start)
        await client.ping()
        # The new master: without the last acknowledged write, nor the writer's lease.
        assert lose_last_write(sync, "failover", lease_too=True) == PART // 2
        link.back()
        for i in range(7, 12):
            _append(pub, i)
            await pub._write_ready(final=False)
            assert pub.role == "primary" and not pub.suspended
        await pub._write_ready(final=True)
        await _check_stream(client, "failover")
        assert rewritten() - before == pytest.approx(0.5)
    finally:
        sync.close()
        await client.aclose()


async def test_another_writer_is_never_overwritten(redis_url, redis_client) -> None:
    """A shorter timeline under another publisher's lease, or a timeline further than ours, is
    not ours to write: the writer steps down as before (one writer)."""
    pub, _link, client = await _writer(redis_url, "other")
    try:
        for i in range(4):
            _append(pub, i)
        await pub._write_ready(final=False)
        lose_last_write(redis_client, "other", lease_too=True)
        redis_client.set(keys.ingest_primary("other"), "someone-else", px=5000)
        _append(pub, 4)
        await pub._write_ready(final=False)
        assert pub.role == "standby"
        entries = redis_client.xrange(keys.audio("other"))
        assert len(entries) == 3  # nothing written over the other writer's timeline
    finally:
        await client.aclose()


async def test_lost_write_mid_publish_with_ffmpeg(start_ingest, redis_client, caplog) -> None:
    """A real publish: the last chunk written is lost mid-publish (as a failover loses it); the
    writer writes it again and the stream holds the whole sample once, from one writer."""
    caplog.set_level(logging.INFO)
    make_event(redis_client)
    server = await start_ingest()
    before, takeovers = rewritten(), metrics.TAKEOVERS._value.get()
    publish = asyncio.create_task(ffmpeg_publish(f"rtmp://127.0.0.1:{server.port}/live/key-1", realtime=True))

    def written() -> float:
        raw = redis_client.hget(keys.ingest_state("ev1"), "samples")
        return int(raw) / RATE if raw else 0.0

    await wait_for(lambda: written() >= 4.0, 30)
    assert await asyncio.to_thread(lose_last_write, redis_client, "ev1") == CHUNK
    code, err = await publish
    assert code == 0, err[-2000:]
    await end_window(redis_client, server)
    chunks = check_audio(redis_client)
    # The sample's length within the decoder's own slack (a lost chunk would be CHUNK short).
    assert abs(sum(len(c.pcm) for c in chunks) // 2 - len(REF)) < CHUNK // 2
    assert rewritten() - before == pytest.approx(CHUNK / RATE)
    assert metrics.TAKEOVERS._value.get() == takeovers  # one writer throughout: no hand-over
