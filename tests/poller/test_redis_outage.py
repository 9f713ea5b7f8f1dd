"""The beat and the worker through a real Redis restart (issue 18): a dedicated redis-server with
AOF, stopped for a few seconds (longer than the beat lock) and restarted with its data.

- Two ``reachlive poller`` beats: neither exits, each logs one line lost and one back, and once
  Redis is back exactly one of them sends polls (the lock expired during the outage: the
  contest after it must still elect one leader).
- One ``reachlive worker``: it does not exit, its /readyz follows Redis and the broker
  consumer, and a task sent after Redis returned is executed (a getJobs call reaches Kaltura).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from shared import commands
from shared.child import Service, free_port
from tests.kaltura.support import ADMIN_SECRET, VENDOR_PARTNER, Admin, wait_for
from tests.poller.conftest import CAPTION_URL, ENCRYPTION_KEY, MEDIA_URL
from tests.support.outage import OutageRedis

pytestmark = pytest.mark.slow

OUTAGE_SECONDS = 6.0  # longer than the beat lock (3 s): the lock expires during the outage
SENT = "Scheduler: Sending due task"


def env_for(redis_url: str, service_url: str, metrics_port: int = 0) -> dict[str, str]:
    return {
        "REACHLIVE_REDIS_URL": redis_url,
        "REACHLIVE_KALTURA_SERVICE_URL": service_url,
        "REACHLIVE_KALTURA_PARTNER_ID": str(VENDOR_PARTNER),
        "REACHLIVE_KALTURA_ADMIN_SECRET": ADMIN_SECRET,
        "REACHLIVE_KALTURA_POLL_SECONDS": "0.5",
        "REACHLIVE_POLLER_BEAT_LOCK_SECONDS": "3",
        "REACHLIVE_POLLER_BEAT_MAX_INTERVAL_SECONDS": "0.5",
        "REACHLIVE_POLLER_CONCURRENCY": "2",
        "REACHLIVE_INGEST_PUBLIC_URL": MEDIA_URL,
        "REACHLIVE_GATEWAY_PUBLIC_URL": CAPTION_URL,
        "REACHLIVE_METRICS_PORT": str(metrics_port),
        "REACHLIVE_METRICS_HOST": "127.0.0.1",
        "REACHLIVE_POLLER_ENCRYPTION_KEYS": ENCRYPTION_KEY,
    }


def status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def messages(svc: Service) -> list[str]:
    out = []
    for line in svc.log().splitlines():
        try:
            out.append(json.loads(line)["msg"])
        except (ValueError, KeyError):
            out.append(line)
    return out


def check_one_pair_of_lines(svc: Service) -> None:
    """One line lost, one line back, no traceback, no per-retry error lines."""
    msgs = messages(svc)
    lost = [m for m in msgs if m.startswith("redis lost")]
    back = [m for m in msgs if m.startswith("redis back")]
    assert len(lost) == 1 and len(back) == 1, (lost, back)
    assert "Traceback" not in svc.log(), svc.log()[-3000:]
    retries = [m for m in msgs if "Trying again" in m or "Cannot connect" in m or "Retrying" in m]
    assert not retries, retries


@pytest.fixture
def outage_redis(tmp_path: Path):
    with OutageRedis(tmp_path) as server:
        yield server


def test_two_beats_ride_through_a_restart_and_exactly_one_polls_after(
    outage_redis: OutageRedis, emulator: Any, tmp_path: Path
) -> None:
    env = env_for(outage_redis.url, emulator.url)
    beats = [Service(["poller"], env, tmp_path, name=f"beat-{n}") for n in "ab"]
    try:
        wait_for(lambda: any(SENT in b.log() for b in beats), timeout=60)
        outage_redis.stop()
        during = sum(b.log().count(SENT) for b in beats)
        time.sleep(OUTAGE_SECONDS)
        assert sum(b.log().count(SENT) for b in beats) == during  # nobody sends while Redis is away
        outage_redis.start()
        back = time.monotonic()
        wait_for(lambda: sum(b.log().count(SENT) for b in beats) > during, timeout=30)
        resumed = time.monotonic() - back
        # Settle (the contest for the expired lock, stale connections), then watch 4 s.
        wait_for(lambda: all("redis back" in b.log() for b in beats), timeout=30)
        time.sleep(2.0)
        before = [b.log().count(SENT) for b in beats]
        time.sleep(4.0)
        sent = [b.log().count(SENT) - n for n, b in zip(before, beats, strict=True)]
        assert all(b.alive() for b in beats), [b.log()[-2000:] for b in beats]
        # Exactly one leader polls (about 8 polls in 4 s at 0.5 s; the other sends none).
        assert sorted(sent)[0] == 0 and sorted(sent)[1] >= 3, sent
        for b in beats:
            check_one_pair_of_lines(b)
        print(f"beats: polling again {resumed:.1f} s after Redis returned; polls per beat in 4 s after: {sent}")
    finally:
        for b in beats:
            assert b.stop() == 0


def test_worker_reconnects_and_runs_a_task_sent_after_redis_returns(
    outage_redis: OutageRedis, emulator: Any, admin: Admin, tmp_path: Path
) -> None:
    port = free_port()
    with Service(["worker"], env_for(outage_redis.url, emulator.url, port), tmp_path, name="worker") as worker:
        wait_for(lambda: status(port, "/readyz") == 200, timeout=60)
        outage_redis.stop()
        wait_for(lambda: status(port, "/readyz") == 503, timeout=15)
        assert status(port, "/livez") == 200  # waiting for Redis is not a wedged process
        time.sleep(OUTAGE_SECONDS)
        outage_redis.start()
        back = time.monotonic()
        calls = len(admin.calls_of("reach_entryvendortask", "getJobs"))
        commands.send(outage_redis.url, commands.POLL)
        wait_for(lambda: len(admin.calls_of("reach_entryvendortask", "getJobs")) > calls, timeout=30)
        ran = time.monotonic() - back
        wait_for(lambda: status(port, "/readyz") == 200, timeout=15)
        ready = time.monotonic() - back
        assert worker.alive()
        check_one_pair_of_lines(worker)
        print(f"worker: task sent after the restart ran {ran:.1f} s after Redis returned; ready after {ready:.1f} s")
