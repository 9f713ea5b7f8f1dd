"""Interop with publishers we did not write (ffmpeg's binary, PyAV's libavformat client): the
PCM on the event's audio stream matches the source (docs/design.md sections 3 and 9)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys

import numpy as np
import pytest

from services.ingest import metrics
from services.ingest.server import PAUSED_AFTER_SECONDS
from shared import keys, streams
from shared.child import ROOT
from shared.registry import TaskRecord, write_task
from shared.settings import IngestSettings
from tests.ingest.conftest import (
    audio_entries,
    best_correlation,
    end_window,
    ffmpeg_publish,
    has_eos,
    make_event,
    pcm_of,
    source_pcm,
    wait_for,
)

REF = source_pcm()
CHUNK = IngestSettings().chunk_ms * 16  # samples of an audio entry at 16 kHz (the default)


def check_audio(
    client, event_id: str = "ev1", ref: np.ndarray = REF, publishes: int = 1, correlate: bool = True
) -> list:
    entries = audio_entries(client, event_id)
    chunks = [e for e in entries if isinstance(e, streams.AudioChunk)]
    eos = [e for e in entries if isinstance(e, streams.EndOfStream)]
    assert len(eos) == 1 and eos[0] is entries[-1]
    # the timeline is continuous: each chunk starts where the previous ended
    t = 0.0
    for c in chunks:
        assert c.media_time == pytest.approx(t, abs=1e-9)
        t += c.duration
    assert eos[0].media_time == pytest.approx(t, abs=1e-9)
    # full chunks, except the tail each publish flushes when it ends
    assert all(0 < len(c.pcm) <= 2 * CHUNK for c in chunks)
    assert sum(len(c.pcm) < 2 * CHUNK for c in chunks) <= publishes
    pcm = pcm_of(entries)
    assert abs(len(pcm) - len(ref)) <= CHUNK, (len(pcm), len(ref))  # same duration within one chunk
    if correlate:
        corr, _lag = best_correlation(pcm, ref)
        assert corr > 0.9, corr
    return chunks


def celery_commands(client) -> list[tuple[str, list]]:
    out = []
    for raw in client.lrange(keys.BROKER_PREFIX + "reach", 0, -1):
        msg = json.loads(raw)
        body = json.loads(__import__("base64").b64decode(msg["body"]))
        out.append((msg["headers"]["task"], body[0]))
    return out


async def test_ffmpeg_audio_only_session_and_end_of_stream(start_ingest, redis_client):
    make_event(redis_client)
    server = await start_ingest(rtmp_chunk_size=4096)
    code, err = await ffmpeg_publish(f"rtmp://127.0.0.1:{server.port}/live/key-1")
    assert code == 0, err[-2000:]
    await asyncio.sleep(3 * server.sweep_seconds)  # the publisher went away: a pause, no end
    assert not has_eos(redis_client) and redis_client.sismember(keys.INGEST_ACTIVE, "ev1")
    await end_window(redis_client, server)
    chunks = check_audio(redis_client)
    assert chunks[0].pts == pytest.approx(0.0, abs=0.05)
    assert all(0 < c.epoch <= chunks[-1].epoch + 1 for c in chunks)
    eos = audio_entries(redis_client)[-1]
    assert eos.reason == "window_ended"
    # the media session was opened once, the event is live, the poller was asked for PROCESSING
    sessions = redis_client.xrange(keys.SESSIONS_STREAM)
    assert [streams.SessionEntry.parse(f).event_id for _i, f in sessions] == ["ev1"]
    event = redis_client.hgetall(keys.event("ev1"))
    assert event[b"session"] == b"1" and event[b"status"] == b"live"
    assert celery_commands(redis_client) == [("reach.processing", ["ev1"])]
    assert not redis_client.sismember(keys.INGEST_ACTIVE, "ev1")


async def test_ffmpeg_with_video_chunk_size_128(start_ingest, redis_client):
    make_event(redis_client)
    server = await start_ingest(rtmp_chunk_size=128)  # ffmpeg's publisher adopts our chunk size
    code, err = await ffmpeg_publish(f"rtmp://127.0.0.1:{server.port}/live/key-1", video=True)
    assert code == 0, err[-2000:]
    await end_window(redis_client, server)
    check_audio(redis_client)


async def test_ffmpeg_timestamps_past_24_bits(start_ingest, redis_client):
    # 16780 s ≈ 0x1000_5E0 ms: every message needs an extended timestamp (RTMP 1.0 5.3.1.3).
    make_event(redis_client)
    server = await start_ingest()
    code, err = await ffmpeg_publish(
        f"rtmp://127.0.0.1:{server.port}/live/key-1", "-output_ts_offset", "16780", video=True
    )
    assert code == 0, err[-2000:]
    await end_window(redis_client, server)
    chunks = check_audio(redis_client)
    assert chunks[0].pts == pytest.approx(16780.0, abs=0.1)
    assert chunks[-1].pts == pytest.approx(16780.0 + chunks[-1].media_time, abs=0.1)
    assert chunks[0].media_time == 0.0


async def test_ffmpeg_mp3(start_ingest, redis_client):
    make_event(redis_client)
    server = await start_ingest()
    code, err = await ffmpeg_publish(f"rtmp://127.0.0.1:{server.port}/live/key-1", "-c:a", "libmp3lame", "-ar", "44100")
    assert code == 0, err[-2000:]
    await end_window(redis_client, server)
    check_audio(redis_client)


async def pyav_publish(url: str) -> int:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "tests.ingest.pyav_publisher", url, cwd=ROOT)
    return await asyncio.wait_for(proc.wait(), 60)


async def test_pyav_publisher(start_ingest, redis_client):
    make_event(redis_client)
    server = await start_ingest()
    assert await pyav_publish(f"rtmp://127.0.0.1:{server.port}/live/key-1") == 0
    await end_window(redis_client, server)
    check_audio(redis_client)


async def test_a_publisher_gap_pauses_the_event_and_the_timeline_continues(start_ingest, redis_client):
    """The encoder stops mid-event (its RTMP connection closes) and comes back seconds later, as
    Kaltura's restream reconnects: the event is paused, not ended; the new publish is accepted
    and its audio continues the media timeline where the first stopped (the gap is skipped)."""
    make_event(redis_client)
    server = await start_ingest(grace_seconds=1.0)
    url = f"rtmp://127.0.0.1:{server.port}/live/key-1"
    code, err = await ffmpeg_publish(url, input_args=("-t", "5.2"))
    assert code == 0, err[-2000:]
    # the publisher's end is handled once its lease is released (tail flushed)
    await wait_for(
        lambda: redis_client.get(keys.ingest_primary("ev1")) is None and redis_client.exists(keys.audio("ev1"))
    )
    first = [e for e in audio_entries(redis_client) if isinstance(e, streams.AudioChunk)]
    end_first = first[-1].media_time + first[-1].duration
    # Longer than any grace period and the pause threshold: still no end of stream, counted paused.
    await asyncio.sleep(PAUSED_AFTER_SECONDS + 1.5)
    assert not has_eos(redis_client)
    assert metrics.EVENTS_PAUSED._value.get() == 1
    code, err = await ffmpeg_publish(url, input_args=("-ss", "5.2"))
    assert code == 0, err[-2000:]
    await wait_for(lambda: metrics.EVENTS_PAUSED._value.get() == 0, timeout=5)
    await end_window(redis_client, server)
    chunks = check_audio(redis_client, publishes=2, correlate=False)  # continuous, full duration
    resumed = next(c for c in chunks if c.media_time >= end_first - 1e-9)
    assert resumed.media_time == pytest.approx(end_first, abs=1e-9)
    assert resumed.pts == pytest.approx(0.0, abs=0.05)  # the second publish's own clock restarted
    assert resumed.epoch - first[-1].epoch > PAUSED_AFTER_SECONDS  # start_epoch keeps the wall clock
    # each publish is its own encoding (own codec delay): each part matches its half of the source
    pcm = pcm_of(chunks)
    cut, split_at = round(end_first * 16000), round(5.2 * 16000)
    assert best_correlation(pcm[:cut], REF[:split_at])[0] > 0.9
    assert best_correlation(pcm[cut:], REF[split_at:])[0] > 0.9


async def test_rtmps(start_ingest, redis_client, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    await asyncio.to_thread(
        subprocess.run,
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    make_event(redis_client)
    server = await start_ingest(tls_cert=str(cert), tls_key=str(key))
    # ffmpeg verifies the server's certificate: trust our self-signed one
    code, err = await ffmpeg_publish(f"rtmps://127.0.0.1:{server.port}/live/key-1", "-ca_file", str(cert))
    assert code == 0, err[-2000:]
    await end_window(redis_client, server)
    check_audio(redis_client)


@pytest.mark.slow
async def test_hot_standby_takes_over_a_stalled_primary_without_gap(start_ingest, redis_client):
    """Two real-time publishers of one event (two features' keys). The primary stalls (SIGSTOP:
    its TCP connection stays open, as with a half-open link); its lease lapses and the standby
    continues from the primary's last source pts: the stream holds the sample once, in order."""
    make_event(redis_client)
    write_task(redis_client, TaskRecord(id="t2", event="ev1", status=9, kind="translation"), media_key="key-2")
    server = await start_ingest(grace_seconds=3.0)
    takeovers_before = metrics.TAKEOVERS._value.get()
    base = f"rtmp://127.0.0.1:{server.port}/live/"
    procs: list = []
    primary = asyncio.create_task(ffmpeg_publish(base + "key-1", realtime=True, procs=procs))
    await wait_for(lambda: redis_client.get(keys.ingest_primary("ev1")) is not None)
    standby = asyncio.create_task(ffmpeg_publish(base + "key-2", realtime=True))
    await asyncio.sleep(2.5)
    procs[0].send_signal(signal.SIGSTOP)
    try:
        code, err = await asyncio.wait_for(standby, 30)
        assert code == 0, err[-2000:]
    finally:
        procs[0].send_signal(signal.SIGKILL)
        procs[0].send_signal(signal.SIGCONT)
        await primary
    await end_window(redis_client, server, timeout=30)
    # Two short entries at most: what the primary sent of its last entry before it went quiet
    # (written at its first quiet beat), and the standby's tail at its end.
    check_audio(redis_client, publishes=2)
    assert metrics.TAKEOVERS._value.get() > takeovers_before


async def test_a_slow_processing_command_does_not_end_the_media(start_ingest, redis_client, monkeypatch):
    """The first publish of an event asks the poller for PROCESSING through Celery; a broker
    that answers slowly (the first send also sets the sender up) must neither hold the
    publisher's audio back nor let the sweeper end the media for want of a writer."""
    from services.ingest import server as ingest_server

    real_send = ingest_server.send_async
    sent = asyncio.Event()

    async def slow_send(*args: object) -> None:
        await asyncio.sleep(3.0)  # longer than the drain and several sweeps
        await real_send(*args)
        sent.set()

    monkeypatch.setattr(ingest_server, "send_async", slow_send)
    make_event(redis_client)
    server = await start_ingest(grace_seconds=1.0)
    publish = asyncio.create_task(ffmpeg_publish(f"rtmp://127.0.0.1:{server.port}/live/key-1", realtime=True))
    # Audio flows during the send: 2 s of it before the 3 s send ends.
    await wait_for(lambda: sum(e.duration for e in audio_entries(redis_client) if hasattr(e, "pcm")) >= 2.0, timeout=5)
    assert not sent.is_set()
    code, err = await publish
    assert code == 0, err[-2000:]
    await end_window(redis_client, server)
    check_audio(redis_client)  # all of it, then one end of stream
    assert sent.is_set() and celery_commands(redis_client) == [("reach.processing", ["ev1"])]


async def test_a_stalled_sole_writer_pauses_the_event_without_ending_it(start_ingest, redis_client):
    """A writer that stalls with its connection open (SIGSTOP: a half-open link) and then dies
    pauses the event: no end of stream however long it stays away within the window; the end
    comes with the window's."""
    make_event(redis_client)
    server = await start_ingest(grace_seconds=1.0, idle_timeout_seconds=60.0)
    procs: list = []
    publish = asyncio.create_task(
        ffmpeg_publish(f"rtmp://127.0.0.1:{server.port}/live/key-1", realtime=True, procs=procs)
    )
    try:
        await wait_for(lambda: len(audio_entries(redis_client)) >= 3, timeout=10)
        procs[0].send_signal(signal.SIGSTOP)
        await asyncio.sleep(4.0)  # several sweeps, four drain periods, past the writer lease
        assert not has_eos(redis_client)
    finally:
        procs[0].send_signal(signal.SIGKILL)
        procs[0].send_signal(signal.SIGCONT)
        await publish
    await asyncio.sleep(1.0)
    assert not has_eos(redis_client)
    await end_window(redis_client, server)
    (eos,) = [e for e in audio_entries(redis_client) if isinstance(e, streams.EndOfStream)]
    assert eos.reason == "window_ended"
