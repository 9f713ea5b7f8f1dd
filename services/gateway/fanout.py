"""One Redis reader per task, fanned out to bounded per-connection queues (docs/design.md section 5:
"many subscribers of one task on one replica share one Redis reader").

A ``TaskFeed`` blocks in ``XREAD`` on ``keys.captions(event, task)`` from the stream's tail at the
time the feed started, and pushes each new entry to every ``Subscription``. A subscriber
registers *after* the feed fixed its start and *before* it reads its own backlog with ``XRANGE``,
so every entry reaches it one way or the other (the driver drops duplicates by stream id).

A subscription's queue is bounded: a subscriber that cannot keep up is flagged ``overflowed``
and the driver closes it (it resumes on reconnect); the feed never waits for anyone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.gateway import metrics
from services.gateway.delivery import (
    REASON_REVOKED,
    REASON_UNAVAILABLE,
    REVOKED,
    TRY_AGAIN,
    ZERO,
    Close,
    Item,
    StreamId,
)
from services.gateway.lineage import LineageStore
from shared import keys, operator, redis_client, redis_health, revocations
from shared.aio import TaskSet, check_cancelled
from shared.logs import log_context
from shared.streams import CaptionEntry, PayloadError

log = logging.getLogger(__name__)

READ_BLOCK_MS = 2000
READ_COUNT = 200
# The feed client has no socket_timeout (see ``feed_client``): each XREAD gets this deadline
# instead, longer than the block so that an idle stream never times out, short enough that a
# dead Redis connection is replaced within seconds.
READ_DEADLINE_SECONDS = READ_BLOCK_MS / 1000 + 5.0
FEED_CONNECT_TIMEOUT_SECONDS = 5.0
# Short commands (task checks) give up after this: a frozen Redis (SIGSTOP) answers
# nothing and would hold them, and the pool's connections, until it thaws.
COMMAND_DEADLINE_SECONDS = 5.0
BACKOFF_MAX_SECONDS = 2.0  # Redis back → delivering again within this


def feed_client(redis_url: str, max_connections: int) -> aioredis.Redis:
    """The client for the feeds' blocking reads (one connection per feed, held in XREAD BLOCK).

    No ``socket_timeout``: with one, redis-py 8 wraps each command write in ``asyncio.wait_for``,
    which on Python 3.11 can swallow the cancellation of a stopping feed (shared.aio), and the
    feed would keep reading after its gateway stopped. The read deadline is ``asyncio.timeout``
    (``READ_DEADLINE_SECONDS`` > the block time), which counts cancellations correctly; a
    cancelled read makes redis-py drop that connection at once (``disconnect(nowait=True)``).
    """
    return redis_client.async_client(
        redis_url,
        max_connections=max_connections,
        socket_timeout=None,
        socket_connect_timeout=FEED_CONNECT_TIMEOUT_SECONDS,
        client_name=redis_client.client_name("gateway"),
    )


def to_item(entry_id: Any, fields: dict[Any, Any]) -> Item | None:
    """Decode one captions stream entry; None (logged) for one that breaks the contract."""
    sid = StreamId.parse(entry_id)
    try:
        entry = CaptionEntry.parse(fields)
    except PayloadError as exc:
        log.warning("skipping bad captions entry %s: %s", sid, exc)
        return None
    return Item(id=sid, data=entry.json.encode(), kind=entry.kind, eos=entry.eos, created=entry.created)


def stream_entries(response: Any) -> list[tuple[Any, dict[Any, Any]]]:
    """The entries of a one-stream XREAD reply (RESP2: ``[[key, entries]]``)."""
    return [e for _key, entries in response or () for e in entries]


class Wake:
    """A wake-up flag for one waiter; lighter than ``asyncio.Event`` (no deque), which matters
    at thousands of idle connections per replica (issue 7: < 20 KiB each)."""

    __slots__ = ("_flag", "_waiter")

    def __init__(self) -> None:
        self._flag = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._flag = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def clear(self) -> None:
        self._flag = False

    async def wait(self, timeout: float) -> None:
        """Until ``set`` (or already set since ``clear``) or ``timeout`` seconds."""
        if self._flag:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await self._waiter
        except TimeoutError:
            pass
        finally:
            self._waiter = None


class Subscription:
    """One connection's view of a task feed: a bounded queue and a wake-up flag."""

    __slots__ = ("close", "direct", "feed", "items", "limit", "notify", "overflowed", "wake")

    def __init__(self, feed: TaskFeed, limit: int) -> None:
        self.feed = feed
        self.items: list[Item] = []  # taken whole by the connection (``take``)
        self.limit = limit
        self.overflowed = False
        self.close: Close | None = None  # set by the feed (revocation)
        self.wake = Wake()
        # Called on overflow and revocation: a connection blocked in a send must hear of it.
        self.notify: Callable[[], None] | None = None
        # The connection's synchronous write path: True when it wrote (or skipped) the entry
        # itself, so the common case of an idle live subscriber costs no task wake-up.
        self.direct: Callable[[Item], bool] | None = None

    def push(self, item: Item) -> None:
        if not self.items and self.direct is not None and self.direct(item):
            return
        if len(self.items) >= self.limit:
            if not self.overflowed:
                self.overflowed = True
                self.alert()
        else:
            self.items.append(item)
            self.wake.set()

    def alert(self) -> None:
        self.wake.set()
        if self.notify is not None:
            self.notify()

    def take(self) -> list[Item]:
        items, self.items = self.items, []
        return items

    def discard_backlog(self) -> None:
        """While catching up from Redis, queued live entries will be read again anyway."""
        self.items = []
        self.overflowed = False


class TaskFeed:
    def __init__(self, hub: CaptionHub, event_id: str, task_id: str) -> None:
        self.hub = hub
        self.event_id = event_id
        self.task_id = task_id
        self.stream = keys.captions(event_id, task_id)
        self.subscribers: set[Subscription] = set()
        self.refs = 0
        self.ready: asyncio.Future[StreamId] = asyncio.get_running_loop().create_future()
        self.revoked: Close | None = None
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        with log_context(event_id=self.event_id, task_id=self.task_id):
            try:
                last = await self._tail()
            except Exception as exc:
                self.ready.set_exception(exc)
                self.hub.forget(self)
                raise
            self.ready.set_result(last)
            try:
                await self._read(last)
            except Exception:
                # A reader that died would leave its subscribers waiting forever: close them
                # (they reconnect and resume) and let the next subscriber start a fresh reader.
                self.hub.forget(self)
                for sub in tuple(self.subscribers):
                    sub.close = Close(TRY_AGAIN, REASON_UNAVAILABLE)
                    sub.alert()
                raise

    async def _tail(self) -> StreamId:
        newest = await self.hub.redis.xrevrange(self.stream, "+", "-", count=1)
        return StreamId.parse(newest[0][0]) if newest else ZERO

    async def _read(self, last: StreamId) -> None:
        loop = asyncio.get_running_loop()
        next_check = loop.time() + self.hub.check_seconds
        backoff = 0.1
        while True:
            check_cancelled()  # a stop request swallowed by redis-py's write path ends the loop
            try:
                async with asyncio.timeout(READ_DEADLINE_SECONDS):
                    response = await self.hub.feed_redis.xread(
                        {self.stream: str(last)}, count=READ_COUNT, block=READ_BLOCK_MS
                    )
                if loop.time() >= next_check:
                    next_check = loop.time() + self.hub.check_seconds
                    async with asyncio.timeout(COMMAND_DEADLINE_SECONDS):
                        await self.check_task()
                backoff = 0.1
            except (RedisError, TimeoutError) as exc:
                # Subscribers stay connected; nothing is lost since ``last`` did not move: when
                # Redis is back the read goes on from there. An outage is one line for the
                # process (RedisHealth), not one per feed and retry.
                check_cancelled()
                if redis_health.is_outage(exc):
                    self.hub.health.lost(exc)
                    log.debug("captions reader waiting for Redis: %r", exc)
                else:
                    log.warning("captions reader error, retrying: %s", str(exc) or type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)
                continue
            for entry_id, fields in stream_entries(response):
                item = to_item(entry_id, fields)
                last = StreamId.parse(entry_id)
                if item is not None:
                    for sub in tuple(self.subscribers):
                        try:
                            sub.push(item)
                        except Exception:  # one broken connection must not stop the others
                            log.exception("delivering to a subscriber failed")
                            sub.close = Close(TRY_AGAIN, REASON_UNAVAILABLE)
                            sub.wake.set()

    async def check_task(self) -> None:
        """Backstop for a missed revocation message: a cancelled or vanished task is revoked."""
        cancelled = await self.hub.redis.hget(keys.task(self.event_id, self.task_id), "cancelled")
        if cancelled is None or cancelled in (b"1", "1"):
            self.revoke()

    def revoke(self) -> None:
        self.revoked = Close(REVOKED, REASON_REVOKED)
        for sub in tuple(self.subscribers):
            sub.close = self.revoked
            sub.alert()


class CaptionHub:
    """The replica's task feeds, its connections' lineages (cursors) and the revocation listener."""

    def __init__(
        self, client: aioredis.Redis, feed_client: aioredis.Redis, *, queue_frames: int, check_seconds: float
    ) -> None:
        self.redis = client
        self.feed_redis = feed_client  # one connection per feed, held in XREAD BLOCK
        self.queue_frames = queue_frames
        self.check_seconds = check_seconds
        self.tasks = TaskSet("gateway-hub")
        self.health = redis_health.get("gateway")
        self.lineages = LineageStore(client, self.tasks, self.health)
        self.lineages.connections = lambda: {ref: len(feed.subscribers) for ref, feed in self.feeds.items()}
        self.feeds: dict[tuple[str, str], TaskFeed] = {}
        # The revocation listener is subscribed (cleared while it reconnects): until it is, a
        # new connection could not be revoked, and the gateway refuses new ones.
        self.revocations_live = False

    async def subscribe(self, event_id: str, task_id: str) -> Subscription:
        """Join (or start) the task's feed; returns once the feed's start position is fixed."""
        key = (event_id, task_id)
        feed = self.feeds.get(key)
        if feed is None:
            feed = self.feeds[key] = TaskFeed(self, event_id, task_id)
            feed.task = self.tasks.spawn(feed.run(), f"feed:{event_id}:{task_id}")
            metrics.READERS.set(len(self.feeds))
        feed.refs += 1
        try:
            await asyncio.shield(feed.ready)
        except BaseException:
            self._release(feed)
            raise
        sub = Subscription(feed, self.queue_frames)
        if feed.revoked is not None:
            sub.close = feed.revoked
        feed.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        sub.feed.subscribers.discard(sub)
        self._release(sub.feed)

    def _release(self, feed: TaskFeed) -> None:
        feed.refs -= 1
        if feed.refs <= 0:
            if self.feeds.get((feed.event_id, feed.task_id)) is feed:
                del self.feeds[(feed.event_id, feed.task_id)]
            if feed.task is not None:
                feed.task.cancel()
            metrics.READERS.set(len(self.feeds))

    def forget(self, feed: TaskFeed) -> None:
        """Stop handing out a feed whose reader failed (its subscribers are being closed)."""
        if self.feeds.get((feed.event_id, feed.task_id)) is feed:
            del self.feeds[(feed.event_id, feed.task_id)]
            metrics.READERS.set(len(self.feeds))

    def revoke(self, event_id: str, task_id: str) -> None:
        feed = self.feeds.get((event_id, task_id))
        if feed is not None:
            feed.revoke()

    def on_operator(self, req: operator.Request) -> None:
        """reachlive admin revoke (shared/operator.py): the task's connections close as at any
        revocation (the revocation message follows this one); logged and counted as the operator's."""
        feed = self.feeds.get((req.event_id, req.task_id)) if req.action == operator.REVOKE else None
        if feed is None or not feed.subscribers:
            return
        closing = len(feed.subscribers)
        feed.revoke()
        metrics.OPERATOR_ACTIONS.labels(req.action).inc()
        ids = {"event_id": req.event_id, "task_id": req.task_id}
        log.warning("operator revoke: closing %d caption connection(s)", closing, extra=ids)

    async def listen_revocations(
        self, subscribed: asyncio.Event | None = None, health: redis_health.RedisHealth | None = None
    ) -> None:
        """Close a cancelled task's connections at once (the poller publishes "<event>:<task>")."""
        health = health or self.health
        backoff = 0.1

        async def on_subscribed() -> None:
            nonlocal backoff
            # After a reconnect, messages may have been missed: re-check every feed.
            for feed in list(self.feeds.values()):
                if feed.ready.done() and not feed.ready.exception():
                    await feed.check_task()
            self.revocations_live = True
            if subscribed is not None:
                subscribed.set()
            backoff = 0.1

        async def on_lost(exc: BaseException) -> None:
            nonlocal backoff
            self.revocations_live = False
            if redis_health.is_outage(exc):
                health.lost(exc)
            else:
                log.warning("revocation listener error, reconnecting: %s", exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)

        await revocations.listen(
            self.redis,
            self.revoke,
            on_lost,
            on_subscribed=on_subscribed,
            on_operator=self.on_operator,
            errors=(RedisError, TimeoutError),
        )

    async def close(self, timeout: float) -> bool:
        """Save pending cursors and close marks, then stop every feed, writer, the heartbeat and
        the revocation listener and wait for them all; True when none is left running."""
        await self.lineages.flush(timeout)
        return await self.tasks.close(timeout)
