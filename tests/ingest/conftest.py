"""Fixtures of the ingest tests: an in-process ingest server on a free port with the embedded
Redis, events set up with the poller's own registry writers, real publishers (the ffmpeg
binary of imageio-ffmpeg, PyAV's libavformat RTMP client) and the speech sample."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import av
import imageio_ffmpeg
import numpy as np
import pytest
import redis

from services.ingest.server import IngestServer
from shared import keys, registry, streams
from shared.registry import EventRecord, TaskRecord
from shared.settings import IngestSettings
from tests.support.polling import eventually as wait_for

SAMPLE = Path(__file__).resolve().parents[2] / "emulators" / "media" / "jfk.flac"
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def source_pcm() -> np.ndarray:
    """The sample decoded with PyAV to 16 kHz mono s16 (the reference for correlation)."""
    out = []
    resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
    with av.open(str(SAMPLE)) as inp:
        for frame in inp.decode(audio=0):
            frame.pts = None
            out += [f.to_ndarray().ravel() for f in resampler.resample(frame)]
    out += [f.to_ndarray().ravel() for f in resampler.resample(None)]
    return np.concatenate(out).astype(np.int16)


def make_event(
    client: redis.Redis,
    event_id: str = "ev1",
    task_id: str = "t1",
    key: str = "key-1",
    *,
    start: float | None = None,
    end: float | None = None,
    cancelled: bool = False,
    status: str = "scheduled",
) -> None:
    now = time.time()
    registry.write_event(
        client,
        EventRecord(
            id=event_id,
            start=now - 60 if start is None else start,
            end=now + 3600 if end is None else end,
            status=status,
        ),
    )
    registry.write_task(client, TaskRecord(id=task_id, event=event_id, cancelled=cancelled, status=9), media_key=key)


def audio_entries(client: redis.Redis, event_id: str = "ev1") -> list[streams.AudioChunk | streams.EndOfStream]:
    return [streams.parse_audio(f) for _id, f in client.xrange(keys.audio(event_id))]


def pcm_of(entries: list) -> np.ndarray:
    return np.frombuffer(b"".join(e.pcm for e in entries if isinstance(e, streams.AudioChunk)), dtype=np.int16)


def best_correlation(got: np.ndarray, ref: np.ndarray, max_lag: int = 8000) -> tuple[float, int]:
    """Peak normalized cross-correlation of ``got`` with ``ref`` over lags up to ``max_lag``
    samples either way (codec priming and resampler delay shift the signal), and its lag."""
    a = ref.astype(np.float64)
    b = got.astype(np.float64)
    n = 1 << int(np.ceil(np.log2(len(a) + len(b))))
    xc = np.fft.irfft(np.fft.rfft(b, n) * np.conj(np.fft.rfft(a, n)), n)
    lags = np.r_[np.arange(0, max_lag), np.arange(-max_lag, 0)]
    vals = xc[lags]
    i = int(np.argmax(vals))
    lag = int(lags[i])
    # normalize by the energies of the overlapping parts
    if lag >= 0:
        ov_a, ov_b = a[: len(b) - lag], b[lag : lag + len(a)]
    else:
        ov_a, ov_b = a[-lag : -lag + len(b)], b[: len(a) + lag]
    m = min(len(ov_a), len(ov_b))
    c = float(np.dot(ov_a[:m], ov_b[:m]) / (np.linalg.norm(ov_a[:m]) * np.linalg.norm(ov_b[:m]) + 1e-9))
    return c, lag


async def ffmpeg_publish(
    url: str,
    *args: str,
    realtime: bool = False,
    video: bool = False,
    input_args: tuple[str, ...] = (),
    timeout: float = 60,
    procs: list | None = None,
) -> tuple[int, str]:
    """Publish the sample with the ffmpeg binary; returns (exit code, stderr)."""
    cmd = [FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "info"]
    if realtime:
        cmd.append("-re")
    cmd += [*input_args, "-i", str(SAMPLE)]
    if video:
        cmd += [
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=25",
            "-shortest",
            "-map",
            "0:a",
            "-map",
            "1:v",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "50",
        ]
    cmd += ["-c:a", "aac", "-b:a", "128k", *args, "-f", "flv", url]
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    if procs is not None:
        procs.append(proc)
    try:
        _out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, err.decode(errors="replace")


Start = Callable[..., Awaitable[IngestServer]]


@pytest.fixture
async def start_ingest(redis_url: str) -> AsyncIterator[Start]:
    servers: list[IngestServer] = []

    async def start(**overrides: object) -> IngestServer:
        settings = IngestSettings(**{"listen": "127.0.0.1:0", "grace_seconds": 1.0, **overrides})
        server = IngestServer(settings, redis_url)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


def has_eos(client: redis.Redis, event_id: str = "ev1") -> bool:
    return any(isinstance(e, streams.EndOfStream) for e in audio_entries(client, event_id))


async def end_window(
    client: redis.Redis, server: IngestServer | float, event_id: str = "ev1", timeout: float = 20.0
) -> None:
    """The event is over: once its publishers have let go of the audio (their tails flushed),
    move its window's end into the past, as the poller does when Kaltura's event ends, and wait
    for the end of stream. A publisher going away alone never ends the media (it pauses).
    ``server``: the ingest (for its window margin), or the margin of one run as a process."""
    await wait_for(lambda: client.get(keys.ingest_primary(event_id)) is None, timeout)
    now = time.time()
    margin = server if isinstance(server, float | int) else server.settings.window_margin_seconds
    ends = now - margin - 1
    registry.move_event_window(client, event_id, ends - 3600, ends)
    await wait_for(lambda: has_eos(client, event_id), timeout)


async def raw_session(
    port: int, data: bytes, *, wait: float = 5.0, then: bytes = b"", keep_sending: float = 0.0
) -> tuple[bytes, bool, float]:
    """Send ``data`` to the server, read until it closes or ``wait`` s pass.

    Returns (bytes received, closed by the server, seconds until closed). ``keep_sending``
    sends ``then`` every that many seconds meanwhile (a live publisher's traffic)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    received = bytearray()
    closed = False
    writer.write(data)
    next_send = started + keep_sending if keep_sending else float("inf")
    try:
        while time.monotonic() - started < wait:
            timeout = max(0.01, min(started + wait, next_send) - time.monotonic())
            try:
                chunk = await asyncio.wait_for(reader.read(65536), timeout)
            except TimeoutError:
                chunk = None
            if chunk == b"":
                closed = True
                break
            if chunk:
                received += chunk
            if time.monotonic() >= next_send:
                next_send += keep_sending
                writer.write(then)
                await writer.drain()
    except ConnectionError:
        closed = True
    finally:
        writer.close()
    return bytes(received), closed, time.monotonic() - started
