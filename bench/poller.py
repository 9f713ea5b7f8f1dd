"""Poller benchmark (issue 3): against the Kaltura emulator, with the real commands as separate
processes (``reachlive emulate kaltura``, ``reachlive worker``, ``reachlive poller``) on an
embedded Redis.

1. Provisioning latency at a 1 s poll period: a caption order appears at a random moment; the
   time until Kaltura shows it SCHEDULED (p50 / p95 / max over the samples).
2. Throughput: a backlog of orders appears at once; how many tasks per minute ONE worker
   process (REACHLIVE_POLLER_CONCURRENCY threads) takes to SCHEDULED.

    .venv/bin/python bench/poller.py                 # 20 latency samples, 300-task backlog
    .venv/bin/python bench/poller.py 40 600          # chosen sizes
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._measure import percentile  # noqa: E402
from emulators.kaltura_admin import KalturaAdmin  # noqa: E402
from services.poller.sealing import new_key  # noqa: E402
from shared import commands  # noqa: E402
from shared.embedded_redis import EmbeddedRedis  # noqa: E402

PARTNER, SECRET = 5173642, "vendor-secret"


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    full = {
        **os.environ,
        "REACHLIVE_LOG_FORMAT": "json",
        "REACHLIVE_METRICS_PORT": "0",
        "REACHLIVE_LOG_LEVEL": "WARNING",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "shared.cli", *args],
        cwd=ROOT,
        env=full,
        stdout=subprocess.PIPE if args[0] == "emulate" else open(log, "wb"),
        stderr=subprocess.STDOUT if args[0] != "emulate" else open(log, "wb"),
    )


def start_emulator(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    proc = spawn(
        [
            "emulate",
            "kaltura",
            "--listen",
            "127.0.0.1:0",
            "--partner-id",
            str(PARTNER),
            "--admin-secret",
            SECRET,
            "--log-level",
            "WARNING",
        ],
        {},
        workdir / "emulator.log",
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        text = line.decode().strip()
        if text.startswith("KALTURA_EMULATOR_URL="):
            return proc, text.split("=", 1)[1]
    raise RuntimeError("the Kaltura emulator did not start")


def order(admin: KalturaAdmin, start: int) -> list[str]:
    made = admin.create_event(
        summary="bench",
        start=start,
        end=start + 3600,
        partner_id=5831172,
        pre_start=0,
        post_end=0,
        tasks=[{"feature": 8, "source_language": "English"}],
        reach_profile={"maxCharactersPerCaptionLine": 26, "enableProfanityRemoval": True},
        duration_limit=480,
    )
    return [str(t) for t in made["task_ids"]]


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def latency(admin: KalturaAdmin, samples: int) -> list[float]:
    out = []
    base = int(time.time()) + 7200
    for i in range(samples):
        time.sleep(random.uniform(0.0, 1.0))  # appear at a random phase of the poll period
        appeared = time.monotonic()
        (task_id,) = order(admin, base + i * 10)
        while int(admin.task(task_id)["status"]) != 9:
            time.sleep(0.01)
        out.append(time.monotonic() - appeared)
    return out


def throughput(admin: KalturaAdmin, redis_url: str, backlog: int) -> float:
    base = int(time.time()) + 90000
    ids = [t for i in range(backlog) for t in order(admin, base + i * 10)]
    began = time.monotonic()
    commands.send(redis_url, commands.POLL)  # don't wait for the next tick
    pending = set(ids)
    while pending:
        time.sleep(0.2)
        pending = {t for t in pending if int(admin.task(t)["status"]) != 9}
    return len(ids) / (time.monotonic() - began) * 60


def main(argv: list[str]) -> int:
    samples = int(argv[0]) if argv else 20
    backlog = int(argv[1]) if len(argv) > 1 else 300
    workdir = Path(tempfile.mkdtemp(prefix="bench-poller-"))
    with EmbeddedRedis(workdir) as redis_server:
        emulator, url = start_emulator(workdir)
        env = {
            "REACHLIVE_REDIS_URL": redis_server.url,
            "REACHLIVE_KALTURA_SERVICE_URL": url,
            "REACHLIVE_KALTURA_PARTNER_ID": str(PARTNER),
            "REACHLIVE_KALTURA_ADMIN_SECRET": SECRET,
            "REACHLIVE_KALTURA_POLL_SECONDS": "1",
            "REACHLIVE_POLLER_ENCRYPTION_KEYS": new_key(),  # the worker seals accessKeys (issue 19)
        }
        worker = spawn(["worker"], env, workdir / "worker.log")
        beat = spawn(["poller"], env, workdir / "poller.log")
        admin = KalturaAdmin(url)
        try:
            # Warm up: the worker and beat are up and one order went through.
            order(admin, int(time.time()) + 3600)
            time.sleep(3)
            lat = latency(admin, samples)
            stop(beat)  # only the explicit poll below: the backlog is one listing
            rate = throughput(admin, redis_server.url, backlog)
        finally:
            for proc in (beat, worker, emulator):
                stop(proc)
    concurrency = os.environ.get("REACHLIVE_POLLER_CONCURRENCY", "8")
    print(
        f"provisioning latency, task appears -> SCHEDULED, 1 s poll period, {samples} samples: "
        f"p50 {percentile(lat, 0.5):.2f} s, p95 {percentile(lat, 0.95):.2f} s, max {max(lat):.2f} s"
    )
    print(
        f"throughput, one worker process ({concurrency} threads), backlog of {backlog} tasks: {rate:.0f} tasks/minute"
    )
    print(f"(logs in {workdir})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
