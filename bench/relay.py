"""Relay CPU per session and added latency (issue 6: p99 < 5 ms, < 0.5% of a core per session) at
100 concurrent sessions.

Setup: the embedded Redis (or ``REACHLIVE_REDIS_URL``), the KWIKmotion EMULATOR as its own child
process (``reachlive emulate kwikmotion``), a feeder process that XADDs every event's audio in
real time (500 ms entries, as ingest does, the JFK sample looped), and ONE relay replica run in
this process (``services.relay.main.serve``, the body of ``reachlive relay``) so that its CPU
time is exactly this process's. Each event has a caption task and a translation task (one
KWIKmotion target), so each 2 s chunk gives one AddTranscript and one AddTranslation.

- CPU per session: this process's CPU time (user+sys) over the measurement window, divided by
  the window and the number of sessions (a fraction of one core).
- Added latency: from the KWIKmotion result read off the WebSocket to its captions committed to
  Redis (parse, caption builder, the fenced Lua XADD), the values the relay observes into
  ``reachlive_relay_added_latency_seconds``, collected raw here for exact percentiles.
- Redis commands per session per second: Redis's ``total_commands_processed`` over the window (a
  script's own calls count too, as in ``bench/pipeline.py``) less the feeder's XADDs (it counts
  them) and the bench's own INFO calls; and of them the XREAD calls (only the relay reads audio),
  from ``INFO commandstats``.
- Audio read delay: from the feeder's XADD of an audio entry (its ``epoch``) to the session
  parsing it (``connection.parse_audio``, wrapped here): the wait for the relay's read.

Run: ``.venv/bin/python bench/relay.py [sessions=100] [seconds=40]``. The machine is shared, so
the figures are an upper bound.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emulators.media import jfk_pcm  # noqa: E402
from emulators.registry import make_event  # noqa: E402
from services.relay import connection, metrics  # noqa: E402
from services.relay.main import serve  # noqa: E402
from services.relay.session import Config  # noqa: E402
from shared import keys  # noqa: E402
from shared.embedded_redis import EmbeddedRedis  # noqa: E402
from shared.settings import KwikmotionSettings, RelaySettings  # noqa: E402
from shared.streams import AudioChunk, EndOfStream, SessionEntry  # noqa: E402

TOKEN = "bench-relay-kwikmotion-token"  # the emulator is started with it


def feeder(redis_url: str, events: list[str], seconds: float, start: mp.Event, sent: Any) -> None:
    """Real-time audio for every event: one 500 ms entry per event every 500 ms (``sent`` counts
    the XADDs, so that the relay's own commands can be told from them)."""
    client = redis.Redis.from_url(redis_url)
    pcm = jfk_pcm()
    step = 16000  # 500 ms of s16le at 16 kHz
    start.wait()
    t0 = time.monotonic()
    n = int(seconds * 2)
    # Events are not in step (each started at its own time): event k's entries are due at
    # k/len(events) of each 500 ms period.
    due = [(i * 0.5 + k * 0.5 / len(events), i, e) for i in range(n) for k, e in enumerate(events)]
    due.sort()
    for when, i, e in due:
        delay = t0 + when - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        off = (i * step) % (len(pcm) - step)
        t = i * 0.5
        client.xadd(
            keys.audio(e), AudioChunk(media_time=t, pts=t, epoch=time.time(), pcm=pcm[off : off + step]).fields()
        )
        sent.value += 1
    pipe = client.pipeline(transaction=False)
    for e in events:
        pipe.xadd(keys.audio(e), EndOfStream(n * 0.5, "ended").fields())
    pipe.execute()


def start_emulator(sessions: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shared.cli",
            "emulate",
            "kwikmotion",
            "--listen",
            "127.0.0.1:0",
            "--token",
            TOKEN,
            "--max-sessions",
            str(sessions + 10),
            "--log-level",
            "WARNING",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        m = re.search(r"KWIKMOTION_EMULATOR_URL=(\S+)", line)
        if m:
            return proc, m.group(1)
    raise RuntimeError("the emulator did not start")


def redis_counts(client: redis.Redis) -> tuple[int, dict[str, int]]:
    """(commands processed, calls by command) so far; two INFO calls of the bench's own."""
    total = int(client.info("stats")["total_commands_processed"])
    calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in client.info("commandstats").items()}
    return total, calls


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


async def run(redis_url: str, kwik_url: str, sessions: int, seconds: float) -> None:
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    events = [str(9000 + i) for i in range(sessions)]
    for e in events:
        make_event(client, e, targets=("fr",))
    latencies: list[float] = []
    observe = metrics.ADDED_LATENCY.observe

    def record(value: float) -> None:
        latencies.append(value)
        observe(value)

    metrics.ADDED_LATENCY.observe = record  # type: ignore[method-assign]
    read_delays: list[float] = []
    parse = connection.parse_audio

    def parse_timed(fields: Any) -> Any:
        item = parse(fields)
        if isinstance(item, AudioChunk):
            read_delays.append(time.time() - item.epoch)
        return item

    connection.parse_audio = parse_timed  # type: ignore[assignment]
    config = Config(
        relay=RelaySettings(
            max_sessions=sessions + 10, heartbeat_seconds=2.0, failover_seconds=10.0, consumer_name="bench"
        ),
        kwik=KwikmotionSettings(url=kwik_url, token=TOKEN),
        caption_types="transcript,captions",
        redis_url=redis_url,
    )
    stop = asyncio.Event()
    relay = asyncio.create_task(serve(redis_url, stop, config))
    for e in events:
        client.xadd(keys.SESSIONS_STREAM, SessionEntry(e).fields())
    start = mp.Event()
    sent = mp.Value("q", 0, lock=False)  # written by the feeder only
    feed = mp.get_context("fork").Process(target=feeder, args=(redis_url, events, seconds, start, sent))
    feed.start()
    await asyncio.sleep(1.0)
    start.set()
    # Measure the steady state: skip the first 5 s (connections, first chunks) and the end.
    await asyncio.sleep(5.0)
    latencies.clear()
    read_delays.clear()
    (cmd0, calls0), fed0 = redis_counts(client), sent.value
    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.sleep(max(5.0, seconds - 10.0))
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    (cmd1, calls1), fed1 = redis_counts(client), sent.value
    relay_commands = cmd1 - cmd0 - (fed1 - fed0) - 2  # the second redis_counts' INFOs are before cmd1
    by_command = {k: n - calls0.get(k, 0) for k, n in calls1.items()}
    by_command["xadd"] = by_command.get("xadd", 0) - (fed1 - fed0)  # the relay's (in scripts)
    by_command["info"] = 0
    results = len(latencies)
    lat = list(latencies)
    reads = list(read_delays)
    await asyncio.to_thread(feed.join)
    for _ in range(120):  # the sessions end (EndOfStream → EndOfTranscript → ack), 60 s at most
        if not client.xlen(keys.SESSIONS_STREAM):
            break
        await asyncio.sleep(0.5)
    stop.set()
    await relay
    owned = sessions
    print(f"relay bench: {owned} concurrent sessions, {wall:.1f} s measured, {results} KWIKmotion results")
    print(
        f"  relay CPU: {100 * cpu / wall:.1f}% of a core in total, "
        f"{100 * cpu / wall / owned:.3f}% of a core per session (target < 0.5%)"
    )
    rate = {k: n / wall / owned for k, n in by_command.items()}
    top = ", ".join(f"{k} {v:.2f}" for k, v in sorted(rate.items(), key=lambda kv: -kv[1])[:8] if v >= 0.01)
    print(
        f"  Redis commands by the relay: {relay_commands / wall / owned:.2f}/s per session, XREAD "
        f"{rate.get('xread', 0.0):.2f}/s per session (the feeder's {(fed1 - fed0) / wall / owned:.2f} XADD/s "
        f"per session not counted); by command, per session per second: {top}"
    )
    if lat:
        print(
            f"  added latency (result received → captions XADDed): p50 {1000 * pct(lat, 0.5):.2f} ms, "
            f"p99 {1000 * pct(lat, 0.99):.2f} ms, max {1000 * max(lat):.2f} ms (target p99 < 5 ms)"
        )
    if reads:
        print(
            f"  audio read delay (XADD → parsed by the session): p50 {1000 * pct(reads, 0.5):.2f} ms, "
            f"p99 {1000 * pct(reads, 0.99):.2f} ms"
        )
    print(f"  sessions finished: {sessions - client.xlen(keys.SESSIONS_STREAM)} of {sessions}")


def main() -> None:
    sessions = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 40.0
    os.environ.setdefault("REACHLIVE_LOG_LEVEL", "WARNING")
    import logging

    logging.basicConfig(level=logging.WARNING)
    emu, url = start_emulator(sessions)
    try:
        if os.environ.get("REACHLIVE_REDIS_URL"):
            asyncio.run(run(os.environ["REACHLIVE_REDIS_URL"], url, sessions, seconds))
        else:
            with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(tmp) as server:
                asyncio.run(run(server.url, url, sessions, seconds))
    finally:
        emu.terminate()
        emu.wait(10)


if __name__ == "__main__":
    main()
