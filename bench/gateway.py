"""Gateway delivery lag and memory per connection (issue 7: p99 < 50 ms, < 20 KiB per idle
connection) at 5,000 subscribers (100 tasks × 50) on ONE gateway process, 1 caption/s per task.

Runs a real ``reachlive gateway`` child process on the embedded Redis (or ``REACHLIVE_REDIS_URL``),
registers 100 tasks, connects 5,000 real WebSocket clients from helper processes, measures the
gateway's RSS before and after (idle: nothing sent yet), then XADDs one caption per task per
second (spread over the second) for ``seconds`` and reports the lag from the XADD to the frame
received by the client (clients stamp the arrival; the producer puts its XADD time in the
response's ``start_epoch``), plus the gateway's own histogram (XADD → frame written).

Run: ``.venv/bin/python bench/gateway.py [seconds=30] [tasks=100] [per_task=50]``.
On a shared machine the client processes compete with the gateway for the CPU; the figures are
an upper bound on the gateway's lag.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared import keys  # noqa: E402
from shared.child import Service, free_port, wait_port  # noqa: E402
from shared.embedded_redis import EmbeddedRedis  # noqa: E402
from shared.registry import EventRecord, TaskRecord, write_event, write_task  # noqa: E402
from shared.streams import CaptionEntry  # noqa: E402

CLIENT_PROCS = 2


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def client_proc(port: int, tokens: list[str], ready: mp.Event, stop: mp.Event, out: mp.Queue) -> None:
    """A helper process: connect its share of clients, then stamp the lag of every frame."""
    from websockets.asyncio.client import connect

    async def main() -> None:
        lags: list[float] = []
        sem = asyncio.Semaphore(100)
        conns = []

        async def open_one(token: str) -> None:
            async with sem:
                conns.append(await connect(f"ws://127.0.0.1:{port}/v1/captions?token={token}", open_timeout=60))

        await asyncio.gather(*(open_one(t) for t in tokens))
        ready.set()

        async def read(ws) -> None:
            async for message in ws:
                now = time.time()
                # Cheaper than json.loads: the clients share the 2 cores with the gateway.
                at = message.index('"start_epoch": ') + 15
                lags.append(now - float(message[at : message.index(",", at)]))

        readers = [asyncio.create_task(read(ws)) for ws in conns]
        await asyncio.get_running_loop().run_in_executor(None, stop.wait)
        for r in readers:
            r.cancel()
        out.put(lags)
        for ws in conns:
            ws.transport.abort()

    asyncio.run(main())


def caption_json(task: str, n: int, stamp: float) -> str:
    words = ["ask", "not", "what", "your", "country", "can", "do", "for", "you"]
    items = [
        {
            "start": n + i / 10,
            "end": n + (i + 1) / 10,
            "kind": "text",
            "value": w,
            "speaker_id": "00000000-0000-0000-0000-000000000001",
        }
        for i, w in enumerate(words)
    ]
    alt = {
        "transcript": " ".join(words),
        "start": float(n),
        "end": n + 1.0,
        "start_pts": float(n),
        "start_epoch": stamp,
        "items": items,
    }
    return json.dumps(
        {
            "response": {
                "id": f"00000000-0000-5000-8000-{n:012d}",
                "type": "captions",
                "service_type": "transcription",
                "language_code": "en-US",
                "start": float(n),
                "end": n + 1.0,
                "start_pts": float(n),
                "start_epoch": stamp,
                "is_final": True,
                "is_end_of_stream": False,
                "speakers": [{"id": "00000000-0000-0000-0000-000000000001", "label": None}],
                "alternatives": [alt],
            }
        }
    )


async def produce(url: str, tasks: list[str], seconds: float) -> int:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    start = time.monotonic()
    sent = 0
    n = 0
    while time.monotonic() - start < seconds:
        for i, task in enumerate(tasks):
            due = start + n + i / len(tasks)
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            stamp = time.time()
            entry = CaptionEntry(json=caption_json(task, n, stamp), kind="captions", eos=False, created=stamp)
            await client.xadd(keys.captions("BENCH", task), entry.fields())
            sent += 1
        n += 1
    await client.aclose()
    return sent


def histogram_quantiles(text: str, qs: tuple[float, ...]) -> dict[float, float]:
    buckets = [
        (float(m.group(1)), float(m.group(2)))
        for m in re.finditer(r'reachlive_gateway_delivery_lag_seconds_bucket\{le="([^"]+)"\} ([0-9.e+]+)', text)
    ]
    buckets.sort()
    total = buckets[-1][1] if buckets else 0
    out = {}
    for q in qs:
        target, prev_le, prev_c = q * total, 0.0, 0.0
        for le, c in buckets:
            if c >= target:
                span = c - prev_c
                frac = (target - prev_c) / span if span else 1.0
                out[q] = prev_le + (le - prev_le) * frac if le != float("inf") else prev_le
                break
            prev_le, prev_c = le, c
    return out


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def main(argv: list[str]) -> int:
    seconds = float(argv[0]) if argv else 30.0
    n_tasks = int(argv[1]) if len(argv) > 1 else 100
    per_task = int(argv[2]) if len(argv) > 2 else 50
    with tempfile.TemporaryDirectory() as tmp:
        redis_url = os.environ.get("REACHLIVE_REDIS_URL", "")
        embedded = None
        if not redis_url:
            embedded = EmbeddedRedis(tmp).start()
            redis_url = embedded.url
        try:
            return run(redis_url, Path(tmp), seconds, n_tasks, per_task)
        finally:
            if embedded is not None:
                embedded.stop()


def run(redis_url: str, tmp: Path, seconds: float, n_tasks: int, per_task: int) -> int:
    sync = redis.Redis.from_url(redis_url)
    now = time.time()
    write_event(sync, EventRecord(id="BENCH", start=now, end=now + 3600, status="live", session="1"))
    tasks, tokens = [], []
    for i in range(n_tasks):
        task, token = f"T{i}", f"bench-token-{i:04d}-xxxxxxxxxxxxxxxx"
        write_task(sync, TaskRecord(id=task, event="BENCH", status=3), caption_token=token)
        sync.delete(keys.captions("BENCH", task), keys.lineage("BENCH", task))
        tasks.append(task)
        tokens += [token] * per_task
    port, metrics_port = free_port(), free_port()
    env = {
        "REACHLIVE_REDIS_URL": redis_url,
        "REACHLIVE_GATEWAY_LISTEN": f"127.0.0.1:{port}",
        "REACHLIVE_METRICS_PORT": str(metrics_port),  # /metrics is not on the public port (issue 19)
        "REACHLIVE_METRICS_HOST": "127.0.0.1",
        # per_task readers of one token: a fan-out load, above the per-task cap of production.
        "REACHLIVE_GATEWAY_MAX_CONNECTIONS_PER_TASK": str(max(per_task, 10)),
        "REACHLIVE_LOG_LEVEL": "WARNING",
    }
    with Service(["gateway"], env, tmp, name="bench-gateway") as gw:
        wait_port(port)
        time.sleep(1.0)
        base = rss_kib(gw.proc.pid)
        ctx = mp.get_context("spawn")
        stop, out = ctx.Event(), ctx.Queue()
        procs, readies = [], []
        for k in range(CLIENT_PROCS):
            ready = ctx.Event()
            p = ctx.Process(target=client_proc, args=(port, tokens[k::CLIENT_PROCS], ready, stop, out))
            p.start()
            procs.append(p)
            readies.append(ready)
        t0 = time.monotonic()
        for ready in readies:
            if not ready.wait(600):
                raise RuntimeError("clients did not connect")
        connect_s = time.monotonic() - t0
        time.sleep(3.0)  # every connection authenticated, subscribed and idle
        idle = rss_kib(gw.proc.pid)
        n_conns = n_tasks * per_task
        print(f"connected {n_conns} subscribers ({n_tasks} tasks x {per_task}) in {connect_s:.1f} s")
        print(f"gateway RSS: {base} KiB before, {idle} KiB with {n_conns} idle connections")
        print(f"memory per idle connection: {(idle - base) / n_conns:.1f} KiB (target < 20 KiB)")

        sent = asyncio.run(produce(redis_url, tasks, seconds))
        time.sleep(2.0)
        stop.set()
        lags: list[float] = []
        for _ in procs:
            lags += out.get(timeout=120)
        for p in procs:
            p.join(60)
        metrics_text = ""
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as resp:
            metrics_text = resp.read().decode()
        busy = rss_kib(gw.proc.pid)
        warnings = [line for line in gw.log().splitlines() if '"level": "warning"' in line or "error" in line]
    expected = sent * per_task
    print(f"captions written: {sent} over {seconds:.0f} s; frames received: {len(lags)} of {expected}")
    if lags:
        print(
            f"delivery lag XADD -> client received: p50 {pct(lags, 0.5) * 1000:.1f} ms, "
            f"p99 {pct(lags, 0.99) * 1000:.1f} ms, max {max(lags) * 1000:.1f} ms (target p99 < 50 ms)"
        )
    q = histogram_quantiles(metrics_text, (0.5, 0.99))
    if q:
        print(
            f"gateway histogram XADD -> frame written (bucket-interpolated): p50 {q[0.5] * 1000:.1f} ms, "
            f"p99 {q[0.99] * 1000:.1f} ms"
        )
    frames = re.search(r"^reachlive_gateway_frames_sent_total ([0-9.e+]+)", metrics_text, re.M)
    print(f"frames written by the gateway: {float(frames.group(1)) if frames else 0:.0f}")
    print(f"gateway RSS after the run: {busy} KiB")
    if warnings:
        kinds: dict[str, int] = {}
        for line in warnings:
            msg = json.loads(line).get("msg", line) if line.startswith("{") else line
            kinds[msg[:120]] = kinds.get(msg[:120], 0) + 1
        print(f"gateway warnings/errors: {kinds}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
