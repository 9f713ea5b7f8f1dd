"""Event-loop lag: measured, exported, and explained (own work or waiting for a CPU)."""

from __future__ import annotations

import asyncio
import logging
import time

from prometheus_client import REGISTRY

from shared import loopwatch


def _count() -> float:
    return REGISTRY.get_sample_value("reachlive_event_loop_lag_seconds_count") or 0.0


def _over_100ms() -> float:
    total = _count()
    within = REGISTRY.get_sample_value("reachlive_event_loop_lag_seconds_bucket", {"le": "0.1"}) or 0.0
    return total - within


async def test_a_blocked_loop_is_measured_and_warned_about_as_its_own_work(caplog):
    caplog.set_level(logging.WARNING, logger="shared.loopwatch")
    before, late_before = _count(), _over_100ms()
    task = asyncio.create_task(loopwatch.run(interval=0.02))
    try:
        await asyncio.sleep(0.1)
        assert _count() > before  # observed while nothing is wrong too
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:  # a slow callback: the loop is stuck, on the CPU
            pass
        await asyncio.sleep(0.1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert _over_100ms() == late_before + 1
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "shared.loopwatch"]
    assert "busy with its own work" in warning
    assert int(warning.split(" ms late")[0].rsplit(" ", 1)[1]) >= 250


def test_a_process_that_did_not_run_is_told_apart_and_warnings_are_rate_limited(caplog):
    caplog.set_level(logging.WARNING, logger="shared.loopwatch")
    # 300 ms late, having run 20 ms of the 400 ms: the machine's CPUs were busy elsewhere.
    last = loopwatch.observe(0.3, 0.4, 0.02, now=100.0, last_warning=float("-inf"))
    assert last == 100.0
    assert "waiting for a CPU" in caplog.records[-1].getMessage()
    # Another within the period: counted, not logged again.
    assert loopwatch.observe(0.5, 0.6, 0.5, now=105.0, last_warning=last) == last
    assert len(caplog.records) == 1
    # On time: never a warning.
    assert loopwatch.observe(0.01, 0.11, 0.1, now=200.0, last_warning=last) == last
    assert loopwatch.observe(0.2, 0.3, 0.3, now=200.0, last_warning=last) == 200.0
    assert "busy with its own work" in caplog.records[-1].getMessage()
