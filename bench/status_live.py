"""``reachlive status`` during a live run: N real events on the whole stack (issue 20's "Show").

Starts the stack ``reachlive demo`` uses (embedded Redis, every service a process of its own, the
Kaltura and KWIKmotion emulators), orders N events (a caption task and a French translation each)
plus one for tomorrow-ish (an hour ahead, shown as upcoming), publishes the speech sample in a loop
in real time to every feature (ffmpeg, the first feature primary, the other a hot standby), and
connects Kaltura's caption client to every task. Once every event shows a publisher, a relay
session and a caption, it runs the real command (``reachlive status``, a child process) and prints
its screen, then takes ``--samples`` snapshots through ``reachlive status --json`` and prints what
one costs (round trips and commands from the snapshot's own count, wall time of the command,
which includes starting Python).

    .venv/bin/python bench/status_live.py            # 20 events
    .venv/bin/python bench/status_live.py 5 --samples 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._measure import percentile
from emulators.media import JFK_FLAC
from services.demo import scenario
from services.demo.stack import Stack


def status(stack: Stack, *args: str) -> tuple[str, float]:
    env = {**os.environ, "REACHLIVE_REDIS_URL": stack.redis_url}
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "shared.cli", "status", *args], env=env, capture_output=True, text=True, timeout=60
    )
    took = time.perf_counter() - started
    if out.returncode != 0:
        raise RuntimeError(f"reachlive status exited {out.returncode}: {out.stderr}")
    return out.stdout, took


def ready(snap: dict[str, Any], event_ids: set[str]) -> bool:
    """Every event live, with a publisher, a relay session and a caption committed."""
    events = {e["id"]: e for e in snap["events"] if e["id"] in event_ids}
    return len(events) == len(event_ids) and all(
        e["phase"] == "live"
        and e["publishers"]
        and e["session"]["replica"]
        and any(t["last_caption"] for t in e["tasks"])
        for e in events.values()
    )


async def run(n: int, samples: int, timeout: float) -> None:
    with tempfile.TemporaryDirectory(prefix="reachlive-status-") as tmp:
        env = {"REACHLIVE_INGEST_WINDOW_MARGIN_SECONDS": "1"}
        with Stack(data_dir=Path(tmp) / "data", log_dir=Path(tmp) / "logs", env=env) as stack:
            admin = stack.kaltura
            runs = [scenario.order(admin, duration=1800) for _ in range(n)]
            later = scenario.order(admin, translations=(), duration=1800, start_in=1800)
            for r in [*runs, later]:
                await asyncio.to_thread(scenario.wait_scheduled, admin, r, 120)
            stop = threading.Event()
            threads: list[threading.Thread] = []
            clients: list[asyncio.Task[None]] = []
            try:
                for r in runs:
                    clients += scenario.start_clients(r, gateway_urls=stack.gateway_urls())
                    threads += scenario.start_restreams(r, JFK_FLAC, stop, loops=50)
                ids = {r.event_id for r in runs}
                deadline = time.monotonic() + timeout
                while True:
                    out, _ = await asyncio.to_thread(status, stack, "--json")
                    if ready(json.loads(out), ids):
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the {n} events were not all live with captions within {timeout:.0f}s")
                    await asyncio.sleep(1.0)
                screen, took = await asyncio.to_thread(status, stack)
                print(f"$ reachlive status    # {n} live events, one upcoming ({took * 1000:.0f} ms)\n")
                print(screen)
                walls, commands, trips, size = [], [], [], 0
                for _ in range(samples):
                    out, took = await asyncio.to_thread(status, stack, "--json")
                    snap = json.loads(out)
                    walls.append(took * 1000)
                    commands.append(snap["cost"]["commands"])
                    trips.append(snap["cost"]["round_trips"])
                    size = len(out)
                    await asyncio.sleep(1.0)
                print(
                    f"cost of one snapshot at {n} live events ({samples} runs of reachlive status --json): "
                    f"{trips[-1]} Redis round trips, {max(commands)} commands, JSON {size / 1024:.1f} KiB; "
                    f"command wall time (Python start-up included) p50 {percentile(walls, 0.5):.0f} ms, "
                    f"max {max(walls):.0f} ms"
                )
            finally:
                stop.set()
                for t in threads:
                    await asyncio.to_thread(t.join, 30)
                for c in clients:
                    c.cancel()
                await asyncio.gather(*clients, return_exceptions=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", type=int, nargs="?", default=20, help="live events (20)")
    parser.add_argument("--samples", type=int, default=10, help="snapshots to time (10)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds for every event to go live (180)")
    args = parser.parse_args(argv)
    asyncio.run(run(args.n, args.samples, args.timeout))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
