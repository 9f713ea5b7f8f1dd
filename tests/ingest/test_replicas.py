"""Two ingest replicas (two servers on one Redis), one event published to both: one writer at a
time, one media session, one PROCESSING command, one end of stream, one continuous timeline."""

from __future__ import annotations

import asyncio

from shared import keys, streams
from shared.registry import TaskRecord, write_task
from tests.ingest.conftest import audio_entries, end_window, ffmpeg_publish, make_event
from tests.ingest.test_interop import celery_commands


async def test_two_replicas_two_publishers_one_timeline(start_ingest, redis_client):
    make_event(redis_client)
    write_task(redis_client, TaskRecord(id="t2", event="ev1", status=9, kind="translation"), media_key="key-2")
    a = await start_ingest(grace_seconds=1.5)
    b = await start_ingest(grace_seconds=1.5)
    results = await asyncio.gather(
        ffmpeg_publish(f"rtmp://127.0.0.1:{a.port}/live/key-1"),
        ffmpeg_publish(f"rtmp://127.0.0.1:{b.port}/live/key-2"),
    )
    assert [code for code, _err in results] == [0, 0], [err[-1500:] for _c, err in results]
    await end_window(redis_client, a)
    await asyncio.sleep(2 * a.sweep_seconds)  # both replicas sweep again: still one EOS
    entries = audio_entries(redis_client)
    chunks = [e for e in entries if isinstance(e, streams.AudioChunk)]
    assert sum(isinstance(e, streams.EndOfStream) for e in entries) == 1
    t = 0.0
    for c in chunks:
        assert abs(c.media_time - t) < 1e-9
        t += c.duration
    # the standby continued where the primary stopped (same source pts): ~11 s, not 22
    assert 10.5 < t < 12.0, t
    assert len(redis_client.xrange(keys.SESSIONS_STREAM)) == 1
    assert celery_commands(redis_client) == [("reach.processing", ["ev1"])]


async def test_replicas_on_one_host_share_the_port(start_ingest, redis_client):
    """SO_REUSEPORT: replicas on one machine (``reachlive all``, the pipeline bench) listen on the
    same address and the kernel spreads publishers among them; each serves whom it accepted."""
    from shared.child import free_port

    port = free_port()
    a = await start_ingest(listen=f"127.0.0.1:{port}")
    b = await start_ingest(listen=f"127.0.0.1:{port}")
    assert a.port == b.port == port
    for i in range(4):
        make_event(redis_client, f"ev{i}", f"t{i}", f"k{i}")
    results = await asyncio.gather(*(ffmpeg_publish(f"rtmp://127.0.0.1:{port}/live/k{i}") for i in range(4)))
    assert [code for code, _err in results] == [0] * 4, [err[-1500:] for _c, err in results]
    for i in range(4):
        await end_window(redis_client, a, f"ev{i}")
        # Most of the 11 s sample (the entries' length is a setting: counted in seconds).
        assert sum(e.duration for e in audio_entries(redis_client, f"ev{i}") if isinstance(e, streams.AudioChunk)) > 7.5
