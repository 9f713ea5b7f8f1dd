"""Pipeline benchmark: N concurrent live events on this machine, each a real-time RTMP publisher
of what Kaltura restreams (the speech sample with a 3 Mbps 720p30 H.264 picture, AAC, muxed to
FLV once: ``emulators.media.flv.av_flv``; ``--audio-only``: the AAC audio alone, as before issue
22) on an RTMP connection and stream key of its own, and a Kaltura caption client, through every
reachlive service (separate processes) with the KWIKmotion emulator answering at once.

The publishers are the load generator (bench/loadgen.py: one asyncio process sends every
stream from the file held in memory, ~5x cheaper per stream than ffmpeg), or with ``--ffmpeg``
ffmpeg ``-re -c copy`` processes (two events per process, ``--per-process``). Their own CPU is
printed with the rest: at a few hundred events the load generator must not be what is measured.

Prints, per N: the pipeline overhead p50/p99 (audio arrival at ingest of the end of a
KWIKmotion chunk → the transcript frame at the caption client, minus the emulator's own reply
time), CPU per event per service, and whether the run kept up with real time (every client got
every word and the end of stream, overhead p99 under 2 s).

    .venv/bin/python bench/pipeline.py              # N = 10 50 100 200, A/V, the load generator
    .venv/bin/python bench/pipeline.py 100 --audio-only --ffmpeg   # the bench before issue 22
    .venv/bin/python bench/pipeline.py 10 50        # chosen N
    .venv/bin/python bench/pipeline.py 100 --stages # and where the time goes, stage by stage
    .venv/bin/python bench/pipeline.py 200 --by-service   # Redis commands by service (MONITOR)
    .venv/bin/python bench/pipeline.py 300 --replicas 1,2 # one and two ingest replicas

Redis: the commands per event per second over the whole run, and over a window while every event
is live, by command (``INFO commandstats``), or by service with ``--by-service`` (a ``MONITOR``
sample, bench/_redis_sample.py: it loads Redis, so that run's overhead is not comparable).

How "arrival" is measured: a publisher sends in real time, so the end of a chunk at media time
``end`` reaches the ingest at ``T0 + end``. Ingest stamps every sample with the time it *read*
it (``start_epoch``), which can only be late, never early; ``T0`` is therefore the smallest
``start_epoch - start`` over the event's responses. Measuring from there (and not from the
ingest's own stamps) counts every wait after the bytes reached the machine: socket buffers, read
coalescing, a busy event loop. It hides only a constant decoder delay (about one AAC frame, 23 ms).

The caption clients and the KWIKmotion emulator run in processes of their own, so neither
shares a GIL with the other or with the Kaltura emulator (in this process). Polling runs at the
production default period (30 s), not the demo's 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._measure import TICKS, cpu_seconds, percentile, words
from bench._redis_sample import Sample, counted
from bench._redis_sample import sample as redis_sample
from bench.loadgen import Publishers, Report
from emulators.caption_client import CaptionClient
from emulators.media import JFK_FLAC, JFK_TEXT
from emulators.media.flv import av_flv
from emulators.restreamer import encode_flv, publish_url
from services.demo import scenario
from services.demo.stack import Stack
from shared.child import free_port, wait_port
from shared.settings import IngestSettings, RelaySettings

LOOPS = 4  # 44 s of speech per event
STARTS_OVER_CHUNKS = 5  # publishers start over this many KWIKmotion chunk periods
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
CORES = os.cpu_count() or 1
CHUNK_SECONDS = RelaySettings().chunk_seconds  # the KWIKmotion chunk period
SERVICES = ("worker", "poller", "ingest", "relay", "gateway")
# Streams per load generator process. It runs in child processes, not in this one: this process
# hosts the Kaltura emulator (a thread: a GIL shared with the publishers would delay both and
# blur both CPU figures), and a process of its own is measured apart. More than one above this
# many streams: one event loop is one core at most, and the fuller it is, the later it sends
# (~0.1 % of a core per 3 Mbps stream: 200 streams keep a loop ~20 % busy).
STREAMS_PER_LOADGEN = 200
# The Redis sample (bench/_redis_sample.py): from this long after the last publisher started
# (its session open, its first chunks sent) for this long, inside the 44 s of media.
SAMPLE_AFTER_SECONDS = 6.0
SAMPLE_SECONDS = 15.0


def machine_jiffies() -> tuple[int, int, int]:
    """(busy, total, steal) jiffies of all cores, from /proc/stat (steal: time the hypervisor
    gave our vCPUs to other guests, counted in busy)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4], sum(fields), fields[7]


# --- the caption clients, in their own process ----------------------------------------------------
def run_clients(targets: list[tuple[str, str]], timeout: float, conn: Any) -> None:
    """Child process: one CaptionClient per (url, token); says "ready" once all are connected,
    then sends back what each received, with arrival times."""

    async def go() -> list[dict[str, Any]]:
        clients = [CaptionClient(url=url, token=token, types="transcript") for url, token in targets]
        tasks = [asyncio.create_task(c.run(), name=f"client-{i}") for i, c in enumerate(clients)]
        deadline = time.monotonic() + 30
        while any(c.connections == 0 for c in clients) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        conn.send("ready")
        waits = [asyncio.create_task(c.finished.wait()) for c in clients]
        await asyncio.wait(waits, timeout=timeout)
        for t in [*tasks, *waits]:
            t.cancel()
        await asyncio.gather(*tasks, *waits, return_exceptions=True)
        return [
            {
                "done": c.done.is_set(),
                "errors": c.errors[:5],
                "closes": c.closes[:5],
                "connections": c.connections,
                "received": [(r.response["response"], r.at) for r in c.received],
            }
            for c in clients
        ]

    conn.send(asyncio.run(go()))


# --- optional stage breakdown ---------------------------------------------------------------------
class AudioWatch:
    """Records when each audio entry was XADDed (its id's ms) while the run goes: the relay trims
    what it has transcribed, so this cannot be read afterwards. It adds a reader of every audio
    stream to the load, hence only with ``--stages``."""

    def __init__(self, redis_url: str, event_ids: list[str]) -> None:
        self.redis_url, self.event_ids = redis_url, event_ids
        # (media end, XADD epoch, epoch stamped on the chunk's first sample: when ingest read it)
        self.seen: dict[str, list[tuple[float, float, float]]] = {e: [] for e in event_ids}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="audio-watch", daemon=True)

    def _run(self) -> None:
        import redis

        from shared import keys
        from shared.streams import AudioChunk, parse_audio

        cursors: dict[str, str | bytes] = {keys.audio(e): "0" for e in self.event_ids}
        by_key = {keys.audio(e): e for e in self.event_ids}
        with redis.Redis.from_url(self.redis_url) as r:
            while not self.stop.is_set():
                for key, entries in r.xread(cursors, block=200) or []:
                    name = key.decode()
                    for entry_id, fields in entries:
                        cursors[name] = entry_id
                        chunk = parse_audio(fields)
                        if isinstance(chunk, AudioChunk):
                            at = int(entry_id.split(b"-")[0]) / 1000
                            self.seen[by_key[name]].append((chunk.media_time + chunk.duration, at, chunk.epoch))


class CpuWatch:
    """CPU of each process group per second while the run goes (``--stages``): which part of the
    machine was busy in the seconds when the overhead peaked."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        self.pids = pids
        # (epoch, cpu seconds per group, and "machine" / "steal": jiffies of all cores in /proc/stat)
        self.samples: list[tuple[float, dict[str, float]]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="cpu-watch", daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(1.0):
            cpu = {k: sum(cpu_seconds(p) for p in ps) for k, ps in self.pids.items()}
            busy, _total, steal = machine_jiffies()
            cpu["machine"], cpu["steal"] = busy / TICKS / CORES, steal / TICKS / CORES
            self.samples.append((time.time(), cpu))

    def around(self, epoch: float) -> str:
        """CPU % of a core per group in the second before ``epoch`` (machine and steal: % of all cores)."""
        for (t0, c0), (t1, c1) in zip(self.samples, self.samples[1:], strict=False):
            if t0 <= epoch <= t1:
                return " ".join(f"{k} {100 * (c1[k] - c0.get(k, c1[k])) / (t1 - t0):.0f}" for k in c1)
        return ""


def stages(
    redis_url: str,
    runs: list[scenario.EventRun],
    results: list[dict[str, Any]],
    offsets: list[float],
    watch: AudioWatch,
    window: tuple[float, float],
) -> dict[str, list[float]]:
    """Each steady-state frame's overhead split at the Redis entry ids (ms): ingest (arrival of
    the chunk's end → its audio XADD), relay + KWIKmotion (→ caption XADD), gateway (→ client).
    The ingest part is split again at the read of the next audio chunk's first sample (stamped
    on that chunk): "ingest read" is how late the bytes ending the chunk were read (publisher,
    kernel, read coalescing, a busy loop), "ingest decode+write" the rest, to the XADD."""
    import redis

    from shared import keys

    out: dict[str, list[float]] = {
        "ingest": [],
        "ingest read": [],
        "ingest decode+write": [],
        "relay+kwikmotion": [],
        "gateway": [],
    }
    with redis.Redis.from_url(redis_url) as r:
        for run, result, offset in zip(runs, results, offsets, strict=True):
            written = {}
            for entry_id, fields in r.xrange(keys.captions(run.event_id, run.task_ids[0])):
                written[json.loads(fields[b"json"])["response"]["id"]] = int(entry_id.split(b"-")[0]) / 1000
            for resp, at in steady(result, window):
                seen = watch.seen[run.event_id]
                i = next((k for k, (end, _t, _e) in enumerate(seen) if end >= resp["end"] - 1e-3), None)
                if i is None or resp["id"] not in written:
                    continue
                audio_at = seen[i][1]
                out["ingest"].append(audio_at - (offset + resp["end"]))
                if i + 1 < len(seen):
                    read_at = seen[i + 1][2]
                    out["ingest read"].append(read_at - (offset + resp["end"]))
                    out["ingest decode+write"].append(audio_at - read_at)
                out["relay+kwikmotion"].append(written[resp["id"]] - audio_at)
                out["gateway"].append(at - written[resp["id"]])
    return out


# --- one run --------------------------------------------------------------------------------------
def frames(result: dict[str, Any]) -> list[tuple[dict[str, Any], float]]:
    return [(resp, at) for resp, at in result["received"] if not resp["is_end_of_stream"]]


def steady(result: dict[str, Any], window: tuple[float, float]) -> list[tuple[dict[str, Any], float]]:
    """The frames that arrived while all N events were live (``window``), minus the event's first
    (session claim, KWIKmotion start) and last (end-of-media detection waits for the grace
    period): those two are the "edge", reported apart."""
    return [(resp, at) for resp, at in frames(result)[1:-1] if window[0] <= at <= window[1]]


def received_words(result: dict[str, Any]) -> list[str]:
    return [
        w
        for resp, _ in result["received"]
        for i in resp["alternatives"][0]["items"]
        if i["kind"] == "text"
        for w in words(i["value"])
    ]


@contextlib.contextmanager
def kwikmotion_emulator(n: int, workdir: Path) -> Iterator[tuple[str, int]]:
    """The KWIKmotion emulator in a process of its own (not a thread of this one, whose GIL the
    Kaltura emulator shares), with its session limit (1008 at capacity, as the seed says) above
    N: this bench measures reachlive, not a KWIKmotion subscription's limit. The services find it
    through the same settings as a real account."""
    port, token = free_port(), "bench-kwikmotion-token"
    log = open(workdir / f"kwikmotion-{n}.log", "wb")  # closed below
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shared.cli",
            "emulate",
            "kwikmotion",
            "--listen",
            f"127.0.0.1:{port}",
            "--token",
            token,
            "--max-sessions",
            str(n + 50),
            "--log-level",
            "WARNING",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    saved = {k: os.environ.get(k) for k in ("REACHLIVE_KWIKMOTION_URL", "REACHLIVE_KWIKMOTION_TOKEN")}
    url = f"ws://127.0.0.1:{port}/"
    os.environ.update(REACHLIVE_KWIKMOTION_URL=url, REACHLIVE_KWIKMOTION_TOKEN=token)
    try:
        wait_port(port, 30)
        yield url, proc.pid
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proc.terminate()
        proc.wait(10)
        log.close()


def emulator_sessions(kwik_url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(kwik_url.replace("ws://", "http://") + "admin/sessions", timeout=30) as r:
        return json.load(r)["sessions"]


def redis_commands(url: str) -> int:
    """Commands Redis has processed (a script's own calls count too; the bench's own few do)."""
    with redis.Redis.from_url(url) as client:
        return int(client.info("stats")["total_commands_processed"])


def event_memory(url: str, event_ids: list[str], sample: int = 20) -> dict[str, float]:
    """Redis memory of live events, from ``MEMORY USAGE … SAMPLES 0`` (exact) of every key with
    the event's hash tag, averaged over up to ``sample`` events: the audio stream (what the relay
    has not captioned yet: it trims the rest), and everything else (ingest and relay state,
    captions streams, registry, per-event log). Taken while the events are live, before their
    windows close."""
    from shared import keys

    client = redis.Redis.from_url(url)
    try:
        audio_bytes = other = 0.0
        picked = event_ids[:sample]
        for event_id in picked:
            for key in client.scan_iter(match=keys.event_keys_pattern(event_id), count=1000):
                used = client.memory_usage(key, samples=0) or 0
                if key.decode() == keys.audio(event_id):
                    audio_bytes += used
                else:
                    other += used
        return {
            "audio_bytes_per_event": audio_bytes / max(1, len(picked)),
            "other_bytes_per_event": other / max(1, len(picked)),
            "events_sampled": float(len(picked)),
        }
    finally:
        client.close()


def by_audio(sessions: list[dict[str, Any]]) -> list[str]:
    """What the emulator saw, grouped by the audio each session received (all events send the
    same sample, so a session whose audio differs from the rest stands out)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for info in sessions:
        groups.setdefault(f"{info['audio_sha256'][:12]} ({info['audio_bytes']} B)", []).append(info)
    return [
        f"{audio}: {len(infos)} sessions, e.g. "
        + str({k: infos[0][k] for k in ("index", "chunks", "align", "searches", "closed_code", "faults")})
        for audio, infos in groups.items()
    ]


def start_offsets(count: int) -> list[float]:
    """Start times (s) of ``count`` publisher processes over about STARTS_OVER_CHUNKS chunk
    periods, each at a phase of the period of its own: a step of ``j / count`` periods with ``j``
    coprime to ``count`` visits ``count`` distinct phases (5 periods over 100 starts, 0.1 s apart,
    gave only 20 phases of 2 s, 5 events on each)."""
    j = STARTS_OVER_CHUNKS
    while math.gcd(j, count) != 1:
        j += 1
    return [i * j * CHUNK_SECONDS / count for i in range(count)]


def run_n(
    n: int,
    flv: Path,
    workdir: Path,
    with_stages: bool,
    spread: float,
    ingests: int,
    nice: int = 0,
    per_process: int = 1,
    use_ffmpeg: bool = False,
    loadgen_processes: int = 0,
    monitor: bool = False,
) -> dict[str, Any]:
    env = {
        "REACHLIVE_RELAY_MAX_SESSIONS": str(max(50, n)),
        # Every publisher connects from 127.0.0.1: the per-address cap on connections that have
        # not published yet (issue 19) is for hostile clients, not for the bench's own.
        "REACHLIVE_INGEST_MAX_PENDING_PER_ADDRESS": str(max(64, 2 * n)),
        "REACHLIVE_INGEST_MAX_CONNECTIONS": str(max(1000, 2 * n)),
        "REACHLIVE_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        "REACHLIVE_KALTURA_POLL_SECONDS": "30",  # the production default
    }
    with (
        kwikmotion_emulator(n, workdir) as (kwik_url, kwik_pid),
        Stack(
            data_dir=workdir / f"data-{n}", log_dir=workdir / f"logs-{n}", env=env, replicas={"ingest": ingests}
        ) as stack,
    ):
        admin = stack.kaltura
        runs = [scenario.order(admin, translations=()) for _ in range(n)]
        for run in runs:
            scenario.wait_scheduled(admin, run, 120)
        targets = [
            (run.features[run.task_ids[0]]["captionUrl"], run.features[run.task_ids[0]]["captionToken"]) for run in runs
        ]
        ctx = multiprocessing.get_context("spawn")
        mine, theirs = ctx.Pipe()
        clients = ctx.Process(target=run_clients, args=(targets, LOOPS * 11 + spread + 90, theirs), daemon=True)
        clients.start()
        if not mine.poll(60) or mine.recv() != "ready":
            raise RuntimeError("the caption clients did not start")
        watch = AudioWatch(stack.redis_url, [r.event_id for r in runs]) if with_stages else None
        if watch:
            watch.thread.start()
        pids = {name: [c.proc.pid for c in stack.children[name]] for name in SERVICES}
        if stack.embedded_redis is not None and stack.embedded_redis.proc is not None:
            pids["redis"] = [stack.embedded_redis.proc.pid]
        pids["clients"] = [clients.pid]
        pids["kwikmotion"] = [kwik_pid]
        urls = [
            publish_url(run.features[run.task_ids[0]]["mediaUrl"], run.features[run.task_ids[0]]["mediaKey"])
            for run in runs
        ]
        loadgen = None
        if not use_ffmpeg:
            # Every event starts at a phase of the chunk period of its own (``start_offsets``);
            # the processes read and chunk the file before the clock starts.
            starts = start_offsets(n) if spread else [0.0] * n
            count = loadgen_processes or math.ceil(n / STREAMS_PER_LOADGEN)
            loadgen = Publishers(flv, urls, starts, processes=count)
            pids["loadgen"] = loadgen.pids
        cpu0 = {name: sum(cpu_seconds(p) for p in ps) for name, ps in pids.items()}
        cpu_watch = CpuWatch(pids) if with_stages else None
        if cpu_watch:
            cpu_watch.thread.start()
        redis_commands0 = redis_commands(stack.redis_url)
        busy0, own0, t0 = machine_jiffies(), time.process_time(), time.monotonic()
        if loadgen is not None:
            loadgen.start()
        # Publishers are ffmpeg processes: the real thing, and no GIL shared with anything. One
        # process publishes ``per_process`` events (an output, so an RTMP connection and publish,
        # each): a process per event spent ~40 % of the load's CPU on ffmpeg's own per-process
        # threads and wakeups (36 % of a core at 100 events, 22 % two per process), CPU the
        # system measured then lacked. Live events start when they start: the processes start
        # at distinct phases of the KWIKmotion chunk period (``start_offsets``), so chunks end at
        # every phase, as N independent events' do; over one period only, the ffmpeg start-ups
        # saturate the CPU and bunch the phases. ``--burst`` starts them all at once: every
        # chunk ends together, the synchronised worst case.
        publishers = []
        prefix = ["nice", "-n", str(nice)] if nice else []  # nice execs ffmpeg: same pid
        groups = [runs[i : i + per_process] for i in range(0, n, per_process)] if use_ffmpeg else []
        starts_at = start_offsets(len(groups)) if spread and groups else [0.0] * len(groups)
        for group, start in zip(groups, starts_at, strict=True):
            time.sleep(max(0.0, t0 + start - time.monotonic()))
            outputs = []
            for run in group:
                feature = run.features[run.task_ids[0]]
                url = publish_url(feature["mediaUrl"], feature["mediaKey"])
                outputs += ["-map", "0", "-c", "copy", "-f", "flv", url]
            publishers.append(
                subprocess.Popen(
                    [*prefix, FFMPEG, "-hide_banner", "-loglevel", "error", "-re", "-i", str(flv), *outputs],
                    stdin=subprocess.DEVNULL,
                )
            )
        if use_ffmpeg:
            pids["ffmpeg"] = [p.pid for p in publishers]
        loadgen_report: list[Report] = []
        memory: dict[str, float] = {}
        by_service: list[Sample] = []

        def sample_redis() -> None:
            # While every event is live: the commands per event then, by service, not the run's
            # average (which includes starts and the window-close tail).
            time.sleep(max(0.0, t0 + spread + SAMPLE_AFTER_SECONDS - time.monotonic()))
            take = redis_sample if monitor else counted
            by_service.append(take(stack.redis_url, SAMPLE_SECONDS))

        sampler = threading.Thread(target=sample_redis, name="redis-sample", daemon=True)
        sampler.start()
        ffmpeg_cpu_at_exit: dict[int, float] = {}

        def end_events() -> None:
            # The media is over: the events' windows close (Kaltura's admin), which is what ends
            # them; a publisher going away alone only pauses its event. The poller notices at its
            # next reconcile (up to the 30 s poll), so the run's tail includes that wait.
            for p in publishers:
                # Exited but not reaped yet (WNOWAIT): the zombie's /proc times are its final CPU,
                # which a reaped process no longer has (the figure read 0 before).
                os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)
                ffmpeg_cpu_at_exit[p.pid] = cpu_seconds(p.pid)
                p.wait()
            if loadgen is not None:
                loadgen_report.append(loadgen.wait(LOOPS * 11 + spread + 60))
            memory.update(event_memory(stack.redis_url, [run.event_id for run in runs]))
            for run in runs:
                admin.end_window(run.event_id)

        ender = threading.Thread(target=end_events, name="end-events", daemon=True)
        ender.start()
        results = mine.recv() if mine.poll(LOOPS * 11 + spread + 120) else [{"done": False, "received": []}] * n
        wall = time.monotonic() - t0
        busy1, own1 = machine_jiffies(), time.process_time()
        redis_rate = (redis_commands(stack.redis_url) - redis_commands0) / wall / n
        cpu1 = {name: sum(cpu_seconds(p) for p in ps) for name, ps in pids.items()}
        ffmpeg_cpu = 0.0
        for p in publishers:
            ffmpeg_cpu += ffmpeg_cpu_at_exit.get(p.pid) or cpu_seconds(p.pid)  # or still running: now
            p.kill()
            p.wait()
        ender.join(10)
        sampler.join(SAMPLE_SECONDS + 10)
        if loadgen is not None:
            loadgen.kill()
        if use_ffmpeg:
            publisher_cpu = ffmpeg_cpu
            media_seconds = n * LOOPS * 11
            publisher_lines = [
                f"ffmpeg CPU: {ffmpeg_cpu:.2f} s over {media_seconds} stream-seconds of media = "
                f"{100 * ffmpeg_cpu / media_seconds:.3f} % of a core per stream"
            ]
        elif loadgen_report:
            publisher_cpu = loadgen_report[0].cpu_seconds
            publisher_lines = loadgen_report[0].lines()
        else:
            publisher_cpu = cpu1["loadgen"] - cpu0["loadgen"]
            publisher_lines = ["the load generator did not report in time (its CPU from /proc)"]
        clients.join(10)
        if watch:
            watch.stop.set()
            watch.thread.join(5)
        if cpu_watch:
            cpu_watch.stop.set()
        sessions = emulator_sessions(kwik_url)
        replies = [x for sess in sessions for x in sess["reply_seconds"]]
        emulator_own = statistics.median(replies) if replies else 0.0
        offsets = [min((resp["start_epoch"] - resp["start"] for resp, _ in frames(r)), default=0.0) for r in results]
        # All N live: after the last event's first frame, before the first event's last.
        live = [frames(r) for r in results if frames(r)]
        window = (max(f[0][1] for f in live), min(f[-1][1] for f in live)) if live else (0.0, 0.0)
        overheads: list[float] = []
        edges: list[float] = []
        by_second: dict[int, list[float]] = {}  # steady frames by the second they arrived in
        for result, offset in zip(results, offsets, strict=True):
            all_frames = frames(result)
            for resp, at in all_frames[:1] + all_frames[1:][-1:]:
                edges.append(at - (offset + resp["end"]) - emulator_own)
            for resp, at in steady(result, window):
                value = at - (offset + resp["end"]) - emulator_own
                overheads.append(value)
                by_second.setdefault(int(at - window[0]), []).append(value)
        expected = words(JFK_TEXT) * LOOPS
        incomplete = []
        for run, result in zip(runs, results, strict=True):
            if not (result["done"] and received_words(result) == expected):
                empty = sum(1 for resp, _ in frames(result) if not resp["alternatives"][0]["items"])
                incomplete.append(
                    f"event {run.event_id}: done={result['done']} words "
                    f"{len(received_words(result))}/{len(expected)}, {len(frames(result))} frames "
                    f"({empty} without words), errors {result.get('errors')}, closes "
                    f"{result.get('closes')}"
                )
        p99 = percentile(overheads, 0.99)
        busy = (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])
        return {
            "n": n,
            "p50_ms": percentile(overheads, 0.5) * 1000,
            "p99_ms": p99 * 1000,
            "measured": len(overheads),
            "edge_p50_ms": percentile(edges, 0.5) * 1000,
            "complete": n - len(incomplete),
            "incomplete": incomplete,
            "realtime": not incomplete and p99 < 2.0,
            "cpu_per_event_pct": {k: 100 * (cpu1[k] - cpu0[k]) / wall / n for k in SERVICES},
            "load_pct": {
                "machine (of all cores)": 100 * busy,
                "of which steal": 100 * (busy1[2] - busy0[2]) / max(1, busy1[1] - busy0[1]),
                ("ffmpeg publishers" if use_ffmpeg else "load generator"): 100 * publisher_cpu / wall,
                "caption clients": 100 * (cpu1["clients"] - cpu0["clients"]) / wall,
                "kwikmotion emulator": 100 * (cpu1["kwikmotion"] - cpu0["kwikmotion"]) / wall,
                "kaltura emulator (bench process)": 100 * (own1 - own0) / wall,
                "redis": 100 * (cpu1.get("redis", 0) - cpu0.get("redis", 0)) / wall,
            },
            "redis_commands_per_event_s": redis_rate,
            "redis_sample": by_service[0].lines(n) if by_service else ["no Redis sample"],
            "memory": memory,
            "publishers": publisher_lines,
            "emulator_ms": (percentile(replies, 0.5) * 1000, percentile(replies, 0.99) * 1000),
            "emulator_sessions": by_audio(sessions) if incomplete else [],
            "stages": stages(stack.redis_url, runs, results, offsets, watch, window) if watch else {},
            "worst_seconds": [
                (v, t, cpu_watch.around(window[0] + t + 1) if cpu_watch else "")
                for v, t in sorted(((max(v), t) for t, v in by_second.items()), reverse=True)[:5]
            ],
            "seconds": [
                (t, percentile(v, 0.5), max(v), len(v), cpu_watch.around(window[0] + t + 1) if cpu_watch else "")
                for t, v in sorted(by_second.items())
            ],
        }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", type=int, nargs="*", default=[10, 50, 100, 200])
    parser.add_argument("--burst", action="store_true", help="start every publisher at once (phase-aligned events)")
    parser.add_argument(
        "--replicas",
        "--ingest-replicas",
        dest="replicas",
        default="1",
        help="ingest processes sharing the RTMP port (SO_REUSEPORT), as replicas on one host; a list "
        "(1,2) runs every N with each, the rows side by side",
    )
    parser.add_argument(
        "--by-service",
        action="store_true",
        help="split the Redis commands by service with a MONITOR sample (it loads Redis: this run's "
        "overhead figures are not comparable)",
    )
    parser.add_argument("--stages", action="store_true", help="also split the overhead by stage (adds a reader)")
    parser.add_argument("--timeline", action="store_true", help="with --stages: every steady second's overhead and CPU")
    media = parser.add_mutually_exclusive_group()
    media.add_argument(
        "--video",
        dest="video",
        action="store_true",
        default=True,
        help="publish 3 Mbps 720p30 H.264 + AAC, as Kaltura restreams (the default)",
    )
    media.add_argument("--audio-only", dest="video", action="store_false", help="publish the AAC audio alone")
    parser.add_argument(
        "--ffmpeg", action="store_true", help="publish with ffmpeg -re -c copy processes instead of the load generator"
    )
    parser.add_argument(
        "--loadgen-processes",
        type=int,
        default=0,
        help=f"load generator processes (default: one per {STREAMS_PER_LOADGEN} events)",
    )
    parser.add_argument(
        "--per-process",
        type=int,
        default=2,
        help="with --ffmpeg: events published by one ffmpeg process (an RTMP connection each; 1: a process per event)",
    )
    parser.add_argument(
        "--nice-load",
        type=int,
        default=0,
        help="with --ffmpeg: run the ffmpeg publishers at this niceness (the load, not the system measured)",
    )
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="reachlive-bench-"))
    # A/V: made once and cached across runs (x264 at 720p takes a while); audio-only: the AAC
    # encoding the bench used before issue 22, for comparison with its figures.
    flv = av_flv(loops=LOOPS) if args.video else encode_flv(JFK_FLAC, workdir / "jfk.flv", loops=LOOPS)
    starts = "all at once" if args.burst else f"at distinct phases over ~{STARTS_OVER_CHUNKS * CHUNK_SECONDS:.0f} s"
    what = "3 Mbps 720p30 H.264 + AAC" if args.video else "AAC audio only"
    by = (
        f"ffmpeg -re -c copy, {args.per_process} event(s) per process"
        if args.ffmpeg
        else "the load generator (bench/loadgen.py)"
    )
    print(
        f"pipeline bench: {os.cpu_count()} cores, {LOOPS * 11} s of speech per event ({what}, "
        f"{flv.stat().st_size * 8 / (LOOPS * 11) / 1e6:.2f} Mbit/s) published by {by}, starting {starts}, "
        f"ingest replicas {args.replicas}, workdir {workdir}"
    )
    print("overhead = transcript frame at the client - arrival at ingest of its chunk's end - the emulator's")
    print("          median reply time (steady state: while all N events are live; the first and last chunk")
    print("          of each event, which include session start / end-of-media detection, are shown apart)")
    print(
        f"{'N':>5} {'ingests':>7} {'p50 ms':>8} {'p99 ms':>8} {'edge p50':>9} {'complete':>9} {'real time':>9}  "
        "CPU % of a core per event"
    )
    best = 0
    replicas = [int(r) for r in str(args.replicas).split(",") if r.strip()]
    for n, ingests in ((n, r) for n in args.n for r in replicas):
        spread = 0.0 if args.burst else STARTS_OVER_CHUNKS * CHUNK_SECONDS
        result = run_n(
            n,
            flv,
            workdir,
            args.stages,
            spread,
            ingests,
            args.nice_load,
            args.per_process,
            use_ffmpeg=args.ffmpeg,
            loadgen_processes=args.loadgen_processes,
            monitor=args.by_service,
        )
        cpu = " ".join(f"{k}={v:.2f}" for k, v in result["cpu_per_event_pct"].items())
        print(
            f"{n:>5} {ingests:>7} {result['p50_ms']:>8.1f} {result['p99_ms']:>8.1f} {result['edge_p50_ms']:>9.1f} "
            f"{result['complete']:>5}/{n:<3} {'yes' if result['realtime'] else 'no':>9}  {cpu}",
            flush=True,
        )
        load = ", ".join(f"{k} {v:.0f} %" for k, v in result["load_pct"].items())
        reply = "/".join(f"{v:.2f}" for v in result["emulator_ms"])
        print(
            f"      {result['measured']} steady frames; load: {load}; emulator reply p50/p99 {reply} ms; "
            f"Redis {result['redis_commands_per_event_s']:.1f} commands/s per event (scripts' own counted)"
        )
        for line in result["publishers"]:
            print(f"      publishers: {line}")
        for line in result["redis_sample"]:
            print(f"      {line}")
        if mem := result["memory"]:
            retention = IngestSettings().audio_retention_seconds
            print(
                f"      Redis memory per live event ({mem['events_sampled']:.0f} sampled, MEMORY USAGE): audio "
                f"stream {mem['audio_bytes_per_event'] / 1000:.1f} kB (trimmed behind the relay's cursor; "
                f"at most ~{32 * retention / 1000:.1f} MB of PCM if no relay reads it, "
                f"REACHLIVE_INGEST_AUDIO_RETENTION_SECONDS={retention:.0f}); the rest (state, {LOOPS * 11} s "
                f"of captions, registry, log) {mem['other_bytes_per_event'] / 1000:.1f} kB"
            )
        if args.stages:
            print("      worst seconds of the steady state (max overhead; CPU % of a core per process group then):")
            for v, t, cpu in result["worst_seconds"]:
                print(f"        {t:3d} s: {v * 1000:6.0f} ms   {cpu}")
        if args.timeline:
            print("      every second of the steady state (frames, p50 / max overhead; CPU % of a core):")
            for t, p50, top, count, cpu in result["seconds"]:
                print(f"        {t:3d} s: {count:3d} {p50 * 1000:5.0f} / {top * 1000:5.0f} ms   {cpu}")
        for name, values in result["stages"].items():
            print(
                f"      stage {name}: p50 {percentile(values, 0.5) * 1000:.1f} ms, "
                f"p99 {percentile(values, 0.99) * 1000:.1f} ms"
            )
        for line in result["incomplete"]:
            print(f"      incomplete: {line}")
        if result["incomplete"]:
            print(f"      emulator sessions: {result['emulator_sessions']}")
        if result["realtime"]:
            best = max(best, n)
    print(f"largest N sustained in real time: {best}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
