"""What a real-time 3 Mbps A/V publisher costs the machine (issue 22): the load generator
(bench/loadgen.py, one asyncio process for every stream) against ffmpeg ``-re -c copy`` (a
process per stream), each publishing N streams of the same FLV to a real ingest.

    .venv/bin/python bench/publishers.py [--streams 20] [--seconds 30]

The ingest runs as ``python -m services.ingest`` on an embedded Redis with N events ordered; the
publishers start 0.1 s apart. CPU per stream is the publishers' CPU over the stream-seconds of
media they sent: for the load generator its own figure while publishing and its process's total
(Python start-up, reading and chunking the file included), for ffmpeg its processes' total (from
``getrusage`` of the reaped children). The ingest's CPU and the audio it wrote per event are
printed with each, to show both loads were the same to it. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import imageio_ffmpeg
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._ingest import start_ingest  # noqa: E402
from bench._measure import cpu_seconds  # noqa: E402
from bench.loadgen import Publishers  # noqa: E402
from emulators.media.flv import SAMPLE_SECONDS, av_flv  # noqa: E402
from shared import keys, registry  # noqa: E402
from shared.embedded_redis import EmbeddedRedis  # noqa: E402
from shared.registry import EventRecord, TaskRecord  # noqa: E402

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
STAGGER = 0.1


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def add_events(client: redis.Redis, n: int, prefix: str) -> list[str]:
    now = time.time()
    for i in range(n):
        registry.write_event(client, EventRecord(id=f"{prefix}{i}", start=now - 60, end=now + 7200))
        task = TaskRecord(id=f"{prefix}{i}-t", event=f"{prefix}{i}", status=9)
        registry.write_task(client, task, media_key=f"key-{prefix}{i}")
    return [f"key-{prefix}{i}" for i in range(n)]


def written(client: redis.Redis, prefix: str, n: int) -> list[float]:
    out = []
    for i in range(n):
        raw = client.hget(keys.ingest_state(f"{prefix}{i}"), "samples")
        out.append(int(raw) / 16000 if raw else 0.0)
    return sorted(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0, help="media per stream")
    parser.add_argument("--skip-ffmpeg", action="store_true")
    args = parser.parse_args()
    n, seconds = args.streams, args.seconds
    flv = av_flv(loops=math.ceil(seconds / SAMPLE_SECONDS))
    print(
        f"{n} streams of {seconds:.0f} s of {flv.name} ({flv.stat().st_size * 8 / 1e6 / flv_seconds(flv):.2f} Mbit/s)"
    )
    work = Path(tempfile.mkdtemp(prefix="reachlive-bench-publishers-"))
    with EmbeddedRedis(work / "redis") as server:
        client = redis.Redis.from_url(server.url)
        ingest, port = start_ingest(server.url)
        try:
            base = f"rtmp://127.0.0.1:{port}/live/"

            # The load generator, in a process of its own as bench/pipeline.py runs it.
            urls = [base + key for key in add_events(client, n, "lg")]
            rusage0 = children_cpu()
            pubs = Publishers(flv, urls, [i * STAGGER for i in range(n)], seconds=seconds)
            ingest0, t0 = cpu_seconds(ingest.pid), time.monotonic()
            pubs.start()
            report = pubs.wait(seconds + n * STAGGER + 60)
            wall = time.monotonic() - t0
            ingest_cpu = cpu_seconds(ingest.pid) - ingest0
            total = children_cpu() - rusage0
            media = report.media_seconds
            print("\nload generator (bench/loadgen.py, one process):")
            for line in report.lines():
                print(f"  {line}")
            print(
                f"  with its process's start-up: {total:.2f} s CPU = {100 * total / media:.3f} % of a core per stream"
            )
            show_ingest(ingest_cpu, wall, n, written(client, "lg", n))

            if not args.skip_ffmpeg:
                keys_ = add_events(client, n, "ff")
                time.sleep(3)  # the previous publishes' tails
                rusage0, ingest0, t0 = children_cpu(), cpu_seconds(ingest.pid), time.monotonic()
                procs = []
                for i, key in enumerate(keys_):
                    time.sleep(max(0.0, t0 + i * STAGGER - time.monotonic()))
                    cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-i", str(flv)]
                    cmd += ["-t", str(seconds), "-c", "copy", "-f", "flv", base + key]
                    procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL))
                codes = [p.wait(seconds + 60) for p in procs]
                wall = time.monotonic() - t0
                ingest_cpu = cpu_seconds(ingest.pid) - ingest0
                total = children_cpu() - rusage0
                print(f"\nffmpeg -re -c copy (a process per stream): exit codes {sorted(set(codes))}")
                print(
                    f"  CPU {total:.2f} s over {n * seconds:.0f} stream-seconds = "
                    f"{100 * total / (n * seconds):.3f} % of a core per stream "
                    f"({0.6 * 100 * total / (n * seconds):.3f} s per stream-minute)"
                )
                show_ingest(ingest_cpu, wall, n, written(client, "ff", n))
        finally:
            ingest.terminate()
            ingest.wait(20)
    print(f"\n(machine: {os.cpu_count()} CPUs, shared with other work)")
    return 0


def show_ingest(cpu: float, wall: float, n: int, audio: list[float]) -> None:
    print(
        f"  ingest: {100 * cpu / wall:.1f} % of a core over {wall:.0f} s ({100 * cpu / wall / n:.3f} % per stream); "
        f"audio written per event min {audio[0]:.1f} / max {audio[-1]:.1f} s"
    )


def flv_seconds(path: Path) -> float:
    from bench.loadgen import Media

    return Media.from_flv(path).duration


if __name__ == "__main__":
    raise SystemExit(main())
