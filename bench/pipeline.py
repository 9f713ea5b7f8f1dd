"""Pipeline benchmark: N concurrent live events on this machine, each a real-time RTMP publisher
(ffmpeg `-re -c copy` of the speech sample, AAC-encoded once) and a Kaltura caption client, through every
reachlive service (separate processes) with the KWIKmotion emulator answering at once.

Prints, per N: the pipeline overhead p50/p99 (audio arrival at ingest of the end of a
KWIKmotion chunk → the transcript frame at the caption client, minus the emulator's own reply
time), CPU per event per service, and whether the run kept up with real time (every client got
every word and the end of stream, overhead p99 under 2 s).

    .venv/bin/python bench/pipeline.py            # N = 10 50 100 200
    .venv/bin/python bench/pipeline.py 10 50      # chosen N
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import imageio_ffmpeg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emulators.caption_client import CaptionClient
from emulators.media import JFK_FLAC, JFK_TEXT
from emulators.restreamer import encode_flv, publish_url
from services.demo import scenario
from services.demo.stack import Stack

LOOPS = 3  # 33 s of speech per event
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def received_words(client: CaptionClient) -> list[str]:
    """Every word the client received, in order (every word of the sample once per loop)."""
    return [w for r in client.responses() for i in r["alternatives"][0]["items"] if i["kind"] == "text"
            for w in words(i["value"])]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_n(n: int, flv: Path, workdir: Path) -> dict[str, object]:
    env = {"REACHLIVE_RELAY_MAX_SESSIONS": str(max(50, n)), "REACHLIVE_LOG_LEVEL": "WARNING"}
    # The emulator's session limit (1008 at capacity, as the seed says) above N: this bench
    # measures reachlive, not a KWIKmotion subscription's limit.
    kwik = {"max_sessions": n + 50}
    with Stack(data_dir=workdir / f"data-{n}", log_dir=workdir / f"logs-{n}", env=env, kwik_options=kwik) as stack:
        admin = stack.kaltura
        runs = [await asyncio.to_thread(scenario.order, admin, translations=()) for _ in range(n)]
        for run in runs:
            await asyncio.to_thread(scenario.wait_scheduled, admin, run, 120)
        pids = {name: [c.proc.pid for c in cs] for name, cs in stack.children.items()}
        cpu0 = {name: sum(cpu_seconds(p) for p in ps) for name, ps in pids.items()}
        clients: list[CaptionClient] = []
        tasks = []
        for run in runs:
            feature = run.features[run.task_ids[0]]
            client = CaptionClient(url=feature["captionUrl"], token=feature["captionToken"], types="transcript")
            clients.append(client)
            tasks.append(asyncio.create_task(client.run()))
        await asyncio.sleep(1)
        t0 = time.monotonic()
        # Publishers are ffmpeg processes (`-re -c copy`): PyAV's RTMP client holds the GIL
        # while it waits on its socket, which would stall the caption clients in this process.
        publishers = []
        for run in runs:
            feature = run.features[run.task_ids[0]]
            url = publish_url(feature["mediaUrl"], feature["mediaKey"])
            publishers.append(subprocess.Popen(  # noqa: ASYNC220 - a few ms each, before measuring
                [FFMPEG, "-hide_banner", "-loglevel", "error", "-re", "-i", str(flv), "-c", "copy", "-f", "flv", url],
                stdin=subprocess.DEVNULL,
            ))
        await asyncio.wait([asyncio.create_task(c.done.wait()) for c in clients], timeout=LOOPS * 11 + 90)
        wall = time.monotonic() - t0
        for p in publishers:
            p.kill()
            p.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        cpu1 = {name: sum(cpu_seconds(p) for p in ps) for name, ps in pids.items()}
        delay = stack.kwik_emulator.faults.delay_seconds if stack.kwik_emulator else 0.0
        overheads, edges = [], []
        for client in clients:
            items = [i for i in client.received if not i.response["response"]["is_end_of_stream"]]
            for pos, item in enumerate(items):
                r = item.response["response"]
                chunk_end_arrival = r["start_epoch"] + (r["end"] - r["start"])
                value = item.at - chunk_end_arrival - delay
                # The first chunk also waits for the session to be claimed and KWIKmotion to start,
                # the last for end-of-media detection (the grace period): reported apart.
                (edges if pos in (0, len(items) - 1) else overheads).append(value)
        expected = words(JFK_TEXT) * LOOPS
        complete = sum(1 for c in clients if c.done.is_set() and received_words(c) == expected)
        p99 = percentile(overheads, 0.99)
        return {
            "n": n,
            "p50_ms": percentile(overheads, 0.5) * 1000,
            "p99_ms": p99 * 1000,
            "mean_ms": statistics.fmean(overheads) * 1000 if overheads else float("nan"),
            "first_last_p50_ms": percentile(edges, 0.5) * 1000,
            "complete": complete,
            "wall_s": wall,
            "cpu_per_event_pct": {k: 100 * (cpu1[k] - cpu0[k]) / wall / n for k in cpu1},
            "realtime": complete == n and p99 < 2.0,
        }


def main(argv: list[str]) -> int:
    ns = [int(a) for a in argv] or [10, 50, 100, 200]
    workdir = Path(tempfile.mkdtemp(prefix="reachlive-bench-"))
    flv = encode_flv(JFK_FLAC, workdir / "jfk.flv", loops=LOOPS)
    print(f"pipeline bench: {os.cpu_count()} cores, {LOOPS * 11} s of speech per event, workdir {workdir}")
    print("overhead = transcript frame at the client - arrival at ingest of its chunk's end (steady state;")
    print("          the first and last chunk of each event, which include session start / end-of-media")
    print("          detection, are shown apart as 'edge p50')")
    print(f"{'N':>5} {'p50 ms':>8} {'p99 ms':>8} {'edge p50':>9} {'complete':>9} {'real time':>9}  "
          "CPU % of a core per event")
    best = 0
    for n in ns:
        result = asyncio.run(run_n(n, flv, workdir))
        cpu = " ".join(f"{k}={v:.2f}" for k, v in result["cpu_per_event_pct"].items())
        print(f"{n:>5} {result['p50_ms']:>8.1f} {result['p99_ms']:>8.1f} {result['first_last_p50_ms']:>9.1f} "
              f"{result['complete']:>5}/{n:<3} "
              f"{'yes' if result['realtime'] else 'no':>9}  {cpu}", flush=True)
        if result["realtime"]:
            best = max(best, n)
    print(f"largest N sustained in real time: {best}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
