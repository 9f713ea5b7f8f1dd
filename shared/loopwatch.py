"""Event-loop lag, the first thing to look at when an asyncio service's latency grows: every
``interval`` a timer is due, and how late it fires is how long the loop took to come back to a
ready task. Work that needs several loop iterations (an ingest read, its Redis write, the reply)
waits that long at each step, so a lag of 30 ms can mean a chunk 100+ ms late (issue 8's note).
``shared.runtime`` runs it in every asyncio service.

Lag has two causes an operator must tell apart: the loop busy with work of its own (CPU the
process used: scale out, or find the slow callback) and the process not running at all (the
machine's cores busy with others: give the pod more CPU or fewer neighbours). The warning says
which, from the process's CPU time over the late interval.
"""

from __future__ import annotations

import asyncio
import logging
import time

from shared.metrics import EVENT_LOOP_LAG

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 0.1
WARN_SECONDS = 0.1  # a live caption pipeline's whole latency budget
WARN_EVERY_SECONDS = 10.0  # at most one warning per this period (the histogram counts them all)


def observe(late: float, wall: float, cpu: float, now: float, last_warning: float) -> float:
    """Record one lateness; log a warning if due. Returns the time of the last warning."""
    EVENT_LOOP_LAG.observe(max(late, 0.0))
    if late < WARN_SECONDS or now - last_warning < WARN_EVERY_SECONDS:
        return last_warning
    log.warning(
        "event loop %.0f ms late; the process ran %.0f ms of the last %.0f ms (%s)",
        late * 1000,
        cpu * 1000,
        wall * 1000,
        "busy with its own work" if cpu >= 0.5 * wall else "waiting for a CPU",
    )
    return now


async def run(interval: float = INTERVAL_SECONDS) -> None:
    """Until cancelled."""
    loop = asyncio.get_running_loop()
    last_warning = float("-inf")
    while True:
        t0, c0 = loop.time(), time.process_time()
        await asyncio.sleep(interval)
        t1, c1 = loop.time(), time.process_time()
        last_warning = observe(t1 - t0 - interval, t1 - t0, c1 - c0, t1, last_warning)
