"""The GC tuning of the gateway process: survivors of a full collection are frozen, and a
period collects everything again (frozen cyclic garbage is reclaimed)."""

from __future__ import annotations

import asyncio
import gc
import weakref

from shared import gctune


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic GC frees it


async def test_freezes_after_a_full_collection_and_reclaims_frozen_garbage_each_period():
    default = gc.get_threshold()
    task = asyncio.create_task(gctune.run(period=0.2))
    try:
        await asyncio.sleep(0.05)
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == gctune.YOUNG_THRESHOLD
        node = Node()
        ref = weakref.ref(node)
        gc.collect()  # a full collection: survivors (node) get frozen right after
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert gc.get_freeze_count() > 0
        del node
        gc.collect()  # frozen garbage is not collected by a normal collection ...
        assert ref() is not None
        await asyncio.sleep(0.3)  # ... but by the next period's unfreeze + collect
        assert ref() is None
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == default
