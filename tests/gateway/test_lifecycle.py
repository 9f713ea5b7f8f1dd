"""Stopping for certain: feeds cancelled at any moment of their XREAD cycle end, a cancellation
swallowed below us is honoured, a drain leaves nothing running, and a log context closed in
another Context (a coroutine finalised by the GC) does not raise."""

from __future__ import annotations

import asyncio
import contextvars
import random

import redis.asyncio as aioredis

from services.gateway.fanout import CaptionHub, feed_client
from shared import keys
from shared.aio import TaskSet, check_cancelled
from shared.logs import _context, log_context
from tests.gateway.conftest import ws_url
from tests.gateway.helpers import add_caption, make_task

FEEDS = 8
ROUNDS = 25


async def test_feeds_cancelled_at_any_point_of_their_read_cycle_all_stop(redis_url, redis_client):
    """Cancel feeds right after new entries woke them, i.e. while they send their next XREAD
    (where Python 3.11's wait_for, used by redis-py for writes under a socket_timeout, loses a
    cancellation) or block in it: every feed task finishes, round after round."""
    rng = random.Random(7)
    commands = aioredis.Redis.from_url(redis_url)
    hub = CaptionHub(commands, feed_client(redis_url, 100), queue_frames=1000, check_seconds=3600.0)
    try:
        for n in range(ROUNDS):
            subs = [await hub.subscribe("E1", f"T{i}") for i in range(FEEDS)]
            feeds = [sub.feed.task for sub in subs]
            for i in range(FEEDS):
                add_caption(redis_client, "E1", f"T{i}", n)
            await asyncio.sleep(rng.choice([0, 0, 0.0005, 0.002, 0.01, 0.05]))
            for sub in subs:
                hub.unsubscribe(sub)  # the last subscriber gone: the feed is cancelled
            _done, pending = await asyncio.wait(feeds, timeout=10.0)
            assert not pending, f"round {n}: feeds still running after cancel: {pending}"
            assert all(t.cancelled() for t in feeds)
        assert len(hub.tasks) == 0  # no listener (not started here), no cursor writer
    finally:
        assert await hub.close(timeout=5.0)
        await commands.aclose()
        await hub.feed_redis.aclose()


def test_feed_client_has_a_read_deadline_beyond_the_block_and_no_socket_timeout(redis_url):
    from services.gateway import fanout

    client = feed_client(redis_url, 10)
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] is None  # no asyncio.wait_for around writes
    assert kwargs["socket_connect_timeout"] > 0
    assert fanout.READ_DEADLINE_SECONDS > fanout.READ_BLOCK_MS / 1000


async def test_a_swallowed_cancellation_is_honoured():
    """What 3.11's wait_for leaves behind: a cancel request counted, no CancelledError raised."""
    swallowed = asyncio.Event()

    async def loop_like_a_feed() -> None:
        while True:
            check_cancelled()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                swallowed.set()  # carry on without raising, as the buggy wait_for does

    task = asyncio.create_task(loop_like_a_feed())
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.wait_for(swallowed.wait(), 5)
    await asyncio.wait([task], timeout=5)
    assert task.cancelled()


async def test_taskset_close_cancels_again_what_outlives_the_first_request():
    tasks = TaskSet("t")
    asked = 0

    async def stubborn() -> None:
        nonlocal asked
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                asked += 1
                if asked >= 3:
                    raise
                asyncio.current_task().uncancel()  # swallowed for good: cancelling() back to 0

    tasks.spawn(stubborn(), "stubborn")
    await asyncio.sleep(0)
    assert await tasks.close(10.0)
    assert len(tasks) == 0 and asked == 3


async def test_drain_leaves_no_task_running(start_gateway, redis_client):
    from websockets.asyncio.client import connect

    token = make_task(redis_client)
    gw = await start_gateway()
    async with connect(ws_url(gw, f"?token={token}")) as ws:
        add_caption(redis_client, "E1", "T1", 0)
        await asyncio.wait_for(ws.recv(), 5)
        assert gw.hub.feeds and gw.leftovers()
        await gw.drain()
    assert gw.leftovers() == []
    assert redis_client.exists(keys.captions("E1", "T1"))


class _Suspend:
    def __await__(self):
        yield


def test_log_context_closed_in_another_context_does_not_raise():
    """A coroutine suspended inside ``log_context`` and closed elsewhere (GC, loop close)."""

    async def body() -> None:
        with log_context(event_id="E1", task_id="T1"):
            await _Suspend()

    coro = body()
    ctx = contextvars.copy_context()
    ctx.run(coro.send, None)  # suspended inside the block, in ``ctx``
    assert ctx.run(_context.get) == {"event_id": "E1", "task_id": "T1"}
    before = _context.get()
    coro.close()  # finalised in this (other) Context: must not raise ValueError
    assert _context.get() == before
