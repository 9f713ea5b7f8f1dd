"""The real commands: ``reachlive poller`` (beat, redbeat lock) and ``reachlive worker`` as child
processes against the embedded Redis and the Kaltura emulator."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from shared import commands, keys
from shared.child import Service
from shared.kaltura.models import SCHEDULED
from tests.kaltura.support import ADMIN_SECRET, CAPTION, VENDOR_PARTNER, Admin, event_spec, translation, wait_for
from tests.poller.conftest import CAPTION_URL, ENCRYPTION_KEY, MEDIA_URL
from tests.poller.test_provision import wait_status

QUEUE_KEY = f"{keys.BROKER_PREFIX}{commands.QUEUE}"  # kombu's list for the queue, under the prefix
ACQUIRED = "beat: Acquired lock"


def _env(redis_url: str, service_url: str, poll: float = 0.5) -> dict[str, str]:
    return {
        "REACHLIVE_REDIS_URL": redis_url,
        "REACHLIVE_KALTURA_SERVICE_URL": service_url,
        "REACHLIVE_KALTURA_PARTNER_ID": str(VENDOR_PARTNER),
        "REACHLIVE_KALTURA_ADMIN_SECRET": ADMIN_SECRET,
        "REACHLIVE_KALTURA_POLL_SECONDS": str(poll),
        "REACHLIVE_POLLER_BEAT_LOCK_SECONDS": "3",
        "REACHLIVE_POLLER_BEAT_MAX_INTERVAL_SECONDS": "0.5",
        "REACHLIVE_POLLER_CONCURRENCY": "4",
        "REACHLIVE_INGEST_PUBLIC_URL": MEDIA_URL,
        "REACHLIVE_GATEWAY_PUBLIC_URL": CAPTION_URL,
        "REACHLIVE_POLLER_ENCRYPTION_KEYS": ENCRYPTION_KEY,
    }


@pytest.mark.slow
def test_two_beat_replicas_never_both_lead(
    redis_url: str, redis_client: redis.Redis, emulator: Any, tmp_path: Path
) -> None:
    env = _env(redis_url, emulator.url)
    first = Service(["poller"], env, tmp_path, name="beat-a")
    try:
        wait_for(lambda: ACQUIRED in first.log(), timeout=30)
        second = Service(["poller"], env, tmp_path, name="beat-b")
        try:
            wait_for(lambda: "poller (beat) starting" in second.log(), timeout=30)
            time.sleep(1.0)
            before = redis_client.llen(QUEUE_KEY)
            time.sleep(4.0)
            sent = redis_client.llen(QUEUE_KEY) - before
            # One leader at 0.5 s: about 8 polls in 4 s; two leaders would send about 16.
            assert 2 <= sent <= 11, sent
            assert ACQUIRED not in second.log() and second.alive()
            first.kill()  # SIGKILL: the lock is not released, it expires (3 s)
            wait_for(lambda: ACQUIRED in second.log(), timeout=30)
            before = redis_client.llen(QUEUE_KEY)
            time.sleep(2.0)
            assert redis_client.llen(QUEUE_KEY) > before  # the new leader schedules
        finally:
            assert second.stop() == 0
    finally:
        first.stop()
    assert not redis_client.exists(f"{keys.BEAT_PREFIX}:lock")  # a clean stop releases the lock


@pytest.mark.slow
def test_beat_and_worker_processes_provision(
    redis_url: str, redis_client: redis.Redis, emulator: Any, admin: Admin, tmp_path: Path
) -> None:
    env = _env(redis_url, emulator.url, poll=1.0)
    made = admin.create_event(**event_spec(CAPTION, translation("French"), translation("Arabic")))
    with Service(["worker"], env, tmp_path, name="worker") as worker, Service(["poller"], env, tmp_path) as beat:
        wait_status(admin, made["task_ids"], SCHEDULED, timeout=60)
        assert len({f["mediaKey"] for f in admin.features(made["event_id"]).values()}) == 3
        assert beat.alive() and worker.alive()
        log = worker.log()
        for feature in admin.features(made["event_id"]).values():
            # Secrets never reach the logs.
            assert feature["mediaKey"] not in log and feature["captionToken"] not in log
        for task_id in made["task_ids"]:
            assert admin.task(task_id)["accessKey"] not in log + beat.log()
        assert ADMIN_SECRET not in log + beat.log()
        for job in admin.calls_of("reach_entryvendortask", "getJobs")[:1]:
            assert job["ks_kind"] == "vendor"
        worker.proc.send_signal(signal.SIGTERM)
        assert worker.proc.wait(30) == 0
