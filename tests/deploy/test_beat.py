"""A single active beat across poller replicas (k8s runs two; celery-redbeat's lock picks one).

Two real `reachlive poller` processes on the test Redis: one acquires the redbeat lock and the
other waits; when the leader is killed (SIGKILL, no clean release), the standby takes over once
the lock expires (REACHLIVE_POLLER_BEAT_LOCK_SECONDS)."""

from __future__ import annotations

import time

import pytest

from shared.child import Service
from shared.cli import available

ACQUIRED = "beat: Acquired lock"


def _wait_for(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif("poller" not in available(), reason="reachlive poller not written yet")
def test_one_beat_leads_and_the_standby_takes_over(redis_url: str, tmp_path) -> None:
    env = {
        "REACHLIVE_REDIS_URL": redis_url,
        "REACHLIVE_LOG_LEVEL": "INFO",
        "REACHLIVE_POLLER_BEAT_LOCK_SECONDS": "5",
        "REACHLIVE_POLLER_BEAT_MAX_INTERVAL_SECONDS": "0.5",
        "REACHLIVE_KALTURA_POLL_SECONDS": "1",
        "REACHLIVE_DATA_DIR": str(tmp_path / "data"),
    }
    a = Service(["poller"], env, tmp_path, name="beat-a")
    b = Service(["poller"], env, tmp_path, name="beat-b")
    try:
        assert _wait_for(lambda: ACQUIRED in a.log() or ACQUIRED in b.log(), 60), a.log()[-2000:]
        leader, standby = (a, b) if ACQUIRED in a.log() else (b, a)
        # The leader keeps ticking (extending the lock) for longer than the lock timeout; the
        # standby, alive, must not lead meanwhile.
        time.sleep(6)
        assert leader.alive() and standby.alive(), standby.log()[-2000:]
        assert ACQUIRED not in standby.log(), "two beats lead at once"
        leader.kill()
        assert _wait_for(lambda: ACQUIRED in standby.log(), 30), standby.log()[-2000:]
    finally:
        a.stop()
        b.stop()
