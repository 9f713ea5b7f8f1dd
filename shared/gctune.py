"""Keep the cyclic garbage collector's pauses off the live path of every asyncio service.

A service process holds hundreds of thousands of GC-tracked objects that live as long as it does
(the modules of celery, kombu, pydantic, PyAV...; the gateway's thousands of connections add a
million more), and every full collection walks them all: measured 105-115 ms in the ingest with
100 publishers, 150-300 ms in the gateway at 5,000 connections, stalling every stream at once.
CPython starts one whenever the objects promoted since the last one reach a quarter of the old
generation, which steady traffic does every few seconds. So right after each full collection the
survivors are frozen (``gc.freeze``: ignored by later automatic collections, which then only walk
what is new), and once every ``period`` seconds everything is unfrozen, collected and frozen
again, so cyclic garbage among frozen objects (closed connections) is reclaimed: one long pause
per period instead of one every few seconds. Objects freed by reference counting are freed at
once as usual. ``shared.runtime`` runs it in every ``reachlive`` asyncio service (the process is
the service's alone); issue 7 (gateway p99) and issue 8 (pipeline p99) measured it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_PERIOD_SECONDS = 300.0
YOUNG_THRESHOLD = 20_000


def collect_and_freeze() -> float:
    """A full collection of everything, then freeze the survivors; returns the pause (s)."""
    started = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return time.perf_counter() - started


async def run(period: float = DEFAULT_PERIOD_SECONDS) -> None:
    """Until cancelled: freeze after every full collection; collect everything once a period."""
    loop = asyncio.get_running_loop()

    def after_collection(phase: str, info: dict[str, Any]) -> None:
        # Not inside the collector: freeze from the loop, right after it finished.
        if phase == "stop" and info.get("generation") == 2:
            loop.call_soon_threadsafe(gc.freeze)

    gc.callbacks.append(after_collection)
    # Young collections much rarer than CPython's default (700 allocations): most objects of a
    # delivery (frames, futures, timers) die by reference counting before one runs, so fewer
    # are promoted into the old generation whose collection is the long pause.
    thresholds = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, *thresholds[1:])
    try:
        while True:
            pause = collect_and_freeze()
            log.debug("gc collected and froze %d objects in %.1f ms", gc.get_freeze_count(), pause * 1000)
            await asyncio.sleep(period)
    finally:
        gc.callbacks.remove(after_collection)
        gc.set_threshold(*thresholds)
        gc.unfreeze()
