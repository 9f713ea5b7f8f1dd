"""Ingest benchmark (issue 4): CPU time of the ingest process per stream-minute, for audio-only
AAC and for a 3 Mbps audio+video stream, and how many concurrent real-time publishers one
process sustains. Prints figures; asserts nothing (docs/design.md section 9: timing claims live here).

    .venv/bin/python bench/ingest.py [--seconds 60] [--concurrency 10,20,40] [--window 20]
        [--audio-concurrency 25] [--profile DIR]

``--profile DIR`` samples the ingest with py-spy (``.venv/bin/pip install -e '.[bench]'``) during each real-time
window and prints the functions with the most samples (bench/_profile.py).

Media is pre-encoded once to FLV files (ffmpeg from imageio-ffmpeg), then published with
``ffmpeg -c copy`` so publishers cost little; the ingest runs as ``reachlive ingest`` in its own
process on an embedded Redis, and its CPU time is read from /proc.
"""

from __future__ import annotations

import argparse
import os
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
from bench._measure import TICKS, cpu_seconds  # noqa: E402
from bench._profile import record, summarise  # noqa: E402
from shared import keys, registry  # noqa: E402
from shared.embedded_redis import EmbeddedRedis  # noqa: E402
from shared.registry import EventRecord, TaskRecord  # noqa: E402

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
SAMPLE = ROOT / "emulators" / "media" / "jfk.flac"


def encode(out: Path, seconds: int, video: bool) -> None:
    if out.exists():
        return
    cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-stream_loop", "-1", "-i", str(SAMPLE)]
    if video:
        cmd += [
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1280x720:rate=30",
            "-map",
            "0:a",
            "-map",
            "1:v",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "60",
            "-b:v",
            "2850k",
            "-minrate",
            "2850k",
            "-maxrate",
            "2850k",
            "-bufsize",
            "2850k",
            "-x264-params",
            "nal-hrd=cbr:force-cfr=1",
        ]
    cmd += ["-c:a", "aac", "-b:a", "128k", "-ar", "44100", "-t", str(seconds), "-f", "flv", str(out)]
    subprocess.run(cmd, check=True)


def publish(path: Path, url: str, realtime: bool) -> subprocess.Popen:
    cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin"]
    if realtime:
        cmd.append("-re")
    cmd += ["-i", str(path), "-c", "copy", "-f", "flv", url]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def add_events(client: redis.Redis, n: int, prefix: str) -> list[str]:
    now = time.time()
    out = []
    for i in range(n):
        eid = f"{prefix}{i}"
        registry.write_event(client, EventRecord(id=eid, start=now - 60, end=now + 7200))
        registry.write_task(client, TaskRecord(id=f"{eid}-t", event=eid, status=9), media_key=f"bench-{eid}")
        out.append(eid)
    return out


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


def written_seconds(client: redis.Redis, eid: str) -> float:
    raw = client.hget(keys.ingest_state(eid), "samples")
    return int(raw) / 16000 if raw else 0.0


def codec_cost(path: Path, seconds: int) -> None:
    """CPU per stream-second of the codec and the decoder alone, in this process (no I/O): the
    chunk layer reading the stream as ffmpeg chunks it (4096-byte chunks, audio and video on
    chunk streams of their own) with video kept and with the ingest's skips, and the AAC decode
    and resample to 16 kHz."""
    from bench.loadgen import read_flv
    from services.ingest.decoder import AudioDecoder
    from services.ingest.server import LIMITS
    from shared.rtmp.chunks import AUDIO, ChunkReader, Limits
    from shared.rtmp.client import chunk_media
    from shared.rtmp.flv import parse_audio_tag

    messages = read_flv(path.read_bytes())
    data, _ends = chunk_media(messages, 4096, 1)
    read = len(data) // seconds // 4  # ~250 ms of the stream per read, as a coalesced read

    def parse(limits: Limits) -> int:
        reader = ChunkReader(limits)
        reader.set_chunk_size(4096)
        kept = 0
        for i in range(0, len(data), read):
            reader.feed(data[i : i + read])
            while reader.next_message() is not None:
                kept += 1
        return kept

    def decode() -> int:
        dec, n = AudioDecoder(), 0
        for type_id, ts, body in messages:
            if type_id == AUDIO and (tag := parse_audio_tag(body)) is not None:
                n += sum(len(pcm) for pcm, _pts, _epoch in dec.decode(tag, ts / 1000, 0.0))
        return n

    for label, run in (
        ("chunk layer, video kept", lambda: parse(Limits())),
        ("chunk layer, video skipped (the ingest)", lambda: parse(LIMITS)),
        ("AAC decode + resample (AudioDecoder)", decode),
    ):
        best = float("inf")
        for _ in range(3):
            t = time.process_time()
            run()
            best = min(best, time.process_time() - t)
        print(f"  {label:42s} {best / seconds * 1e3:6.3f} ms CPU per stream-second")


def realtime_step(
    client: redis.Redis, pid: int, base: str, path: Path, n: int, label: str, args: argparse.Namespace
) -> None:
    """``n`` publishers of ``path`` in real time: the ingest's CPU over a window, per stream."""
    tag = "av" if "A/V" in label else "audio"
    events = add_events(client, n, f"rt{tag}{n}-")
    procs = [publish(path, base + f"bench-{e}", realtime=True) for e in events]
    time.sleep(3)  # connect, first keyframes
    start_written = {e: written_seconds(client, e) for e in events}
    spy, raw = None, None
    if args.profile:
        raw = Path(args.profile) / f"ingest-{tag}-{n}.txt"
        raw.parent.mkdir(parents=True, exist_ok=True)  # py-spy fails silently without it
        spy = record(pid, args.window, raw)
    c0, t0, u0 = cpu_seconds(pid), time.monotonic(), cpu_split(pid)
    time.sleep(args.window)
    c1, t1, u1 = cpu_seconds(pid), time.monotonic(), cpu_split(pid)
    rates = sorted((written_seconds(client, e) - start_written[e]) / (t1 - t0) for e in events)
    util = (c1 - c0) / (t1 - t0)
    if spy is not None:
        spy.wait(30)
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()
    ok = rates[0] > 0.9
    print(
        f"  {n:4d} publishers: ingest CPU {util * 100:5.1f}% of one core "
        f"({util / n * 100:.3f}% per stream); audio written per wall second min "
        f"{rates[0]:.2f} / median {rates[len(rates) // 2]:.2f} -> "
        f"{'keeps up' if ok else 'FALLS BEHIND'}; "
        f"projected {n / util if util else float('inf'):.0f} streams per core"
    )
    wall = (t1 - t0) * n
    print(
        f"        user {(u1[0] - u0[0]) / wall * 1e3:.2f} + system {(u1[1] - u0[1]) / wall * 1e3:.2f} ms CPU "
        "per stream-second"
    )
    if raw is not None and raw.exists():
        print(f"  py-spy profile of the ingest over the window ({raw}):")
        print(summarise(raw, args.profile_top))
    time.sleep(3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=60, help="media length per stream (s)")
    parser.add_argument("--concurrency", default="10,25,50", help="real-time publisher counts to try")
    parser.add_argument("--window", type=float, default=20.0, help="seconds measured per concurrency step")
    parser.add_argument(
        "--audio-concurrency", default="25", help="real-time audio-only publisher counts to try ('' for none)"
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="record the ingest with py-spy over each real-time window (raw stacks in DIR) and print its top functions",
    )
    parser.add_argument("--profile-top", type=int, default=15, help="functions listed per profile")
    args = parser.parse_args()
    work = Path(tempfile.gettempdir()) / "reachlive-bench-ingest"
    work.mkdir(exist_ok=True)
    audio_flv, av_flv = work / f"audio-{args.seconds}.flv", work / f"av3m-{args.seconds}.flv"
    print(f"encoding {args.seconds} s test media (once, cached in {work}) ...", flush=True)
    encode(audio_flv, args.seconds, video=False)
    encode(av_flv, args.seconds, video=True)
    for f in (audio_flv, av_flv):
        print(f"  {f.name}: {f.stat().st_size * 8 / args.seconds / 1e6:.2f} Mbit/s")

    with EmbeddedRedis(work / "redis") as server:
        client = redis.Redis.from_url(server.url)
        client.flushall()
        ingest, port = start_ingest(server.url, REACHLIVE_INGEST_GRACE_SECONDS="2")
        try:
            base = f"rtmp://127.0.0.1:{port}/live/"
            print(f"\nIn process, one {av_flv.name} stream, no I/O:")
            codec_cost(av_flv, args.seconds)
            print("\nCPU time of the ingest process per stream-minute (media pushed as fast as possible):")
            for label, path in (("audio-only AAC 128k", audio_flv), ("3 Mbps A/V (x264 720p + AAC)", av_flv)):
                (eid,) = add_events(client, 1, f"cpu-{path.stem}-")
                before = cpu_seconds(ingest.pid)
                proc = publish(path, base + f"bench-{eid}", realtime=False)
                proc.wait(300)
                deadline = time.time() + 30
                while written_seconds(client, eid) < args.seconds - 1 and time.time() < deadline:
                    time.sleep(0.05)
                time.sleep(0.3)
                used = cpu_seconds(ingest.pid) - before
                per_min = used / (args.seconds / 60)
                print(
                    f"  {label:32s} {per_min * 1000:7.1f} ms CPU per stream-minute = "
                    f"{per_min / 60 * 100:.3f}% of one core in real time "
                    f"(≈ {60 / per_min if per_min else float('inf'):.0f} streams per core); "
                    f"audio written {written_seconds(client, eid):.1f} s"
                )

            steps = [("3 Mbps A/V", av_flv, args.concurrency), ("audio-only AAC", audio_flv, args.audio_concurrency)]
            for label, path, counts in steps:
                print(f"\nConcurrent real-time {label} publishers (each window {args.window:.0f} s):")
                for n in [int(x) for x in counts.split(",") if x]:
                    realtime_step(client, ingest.pid, base, path, n, label, args)
            print(
                f"\n(machine: {os.cpu_count()} CPUs, shared; publishers are ffmpeg -c copy processes on the "
                "same machine, so high counts also measure their contention)"
            )
        finally:
            ingest.terminate()
            ingest.wait(20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
