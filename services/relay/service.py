"""One relay replica: the claim loop and its sessions (DESIGN section 4, "Session claiming").

Every ``tick`` (at most ``heartbeat_seconds``) the loop:

1. heartbeats the entries it owns; an entry another replica owns now is *lost*: its session is
   cancelled at once (its caption writes are also fenced, see ``output.py``);
2. below ``max_sessions``: takes over entries idle past ``failover_seconds`` (``XAUTOCLAIM``),
   then reads new entries (``XREADGROUP >``, blocking a fraction of the tick).

Self-fencing: if heartbeats have not succeeded for ``0.8 × failover_seconds`` (Redis unreachable
from here while others may still reach it), the replica stops its sessions itself, before any
other replica may take them over, so one event never has two KWIKmotion sessions.

SIGTERM: sessions stop (everything they emitted is already persisted with the captions), and
their entries are *released*, not acked: ``XCLAIM ... IDLE <failover>`` makes them look idle
past the failover timeout, so another replica's next scan (within one tick of it) takes them
over and resumes from the persisted cursor. Without the release (SIGKILL, a crash), the takeover
happens ``failover_seconds`` after the last heartbeat, plus at most one tick.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.relay import metrics
from services.relay.claim import Claimed, Claimer
from shared.aio import TaskSet
from shared.settings import RelaySettings

log = logging.getLogger(__name__)

SessionRunner = Callable[[Claimed], Awaitable[None]]


def consumer_name(settings: RelaySettings) -> str:
    return settings.consumer_name or f"{socket.gethostname()}-{os.getpid()}"


@dataclass(slots=True)
class Owned:
    claimed: Claimed
    task: asyncio.Task[None]


class Relay:
    def __init__(
        self,
        client: aioredis.Redis,
        settings: RelaySettings,
        runner: SessionRunner | None = None,
        consumer: str | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.runner = runner
        self.consumer = consumer or consumer_name(settings)
        self.claimer = Claimer(client, self.consumer, settings.failover_seconds)
        self.owned: dict[str, Owned] = {}
        self.tasks = TaskSet("relay")
        self.tick = min(settings.heartbeat_seconds, settings.failover_seconds / 4, 1.0)
        self._last_beat = time.monotonic()

    @property
    def free(self) -> int:
        return self.settings.max_sessions - len(self.owned)

    async def run(self, stop: asyncio.Event) -> None:
        await self.claimer.ensure_group()
        await self.claimer.prune_consumers()
        log.info(
            "relay claiming sessions", extra={"consumer": self.consumer, "max_sessions": self.settings.max_sessions}
        )
        try:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    # A hung Redis call must not keep us from self-fencing in time.
                    async with asyncio.timeout(max(2 * self.tick, self.settings.failover_seconds / 2)):
                        await self._round(stop)
                except (RedisError, TimeoutError) as exc:
                    log.warning("claim round failed: %s", exc)
                    self._self_fence()
                    await _wait(stop, self.tick)
                    continue
                await _wait(stop, max(0.0, self.tick - (time.monotonic() - started)))
        finally:
            await self.shutdown()

    async def _round(self, stop: asyncio.Event) -> None:
        lost = await self.claimer.heartbeat(list(self.owned))
        self._last_beat = time.monotonic()
        for entry_id in lost:
            owned = self.owned.get(entry_id)
            if owned is not None and not owned.task.done():
                log.warning("session taken over by another relay: stopping", extra={"event_id": owned.claimed.event_id})
                metrics.SESSIONS_LOST.inc()
                owned.task.cancel()
        if self.free > 0 and not stop.is_set():
            for c in await self.claimer.autoclaim(self.free):
                self._start(c)
        if self.free > 0 and not stop.is_set():
            block = max(1, int(self.tick * 500))
            for c in await self.claimer.read_new(self.free, block):
                self._start(c)

    def _self_fence(self) -> None:
        if time.monotonic() - self._last_beat < 0.8 * self.settings.failover_seconds:
            return
        for owned in self.owned.values():
            if not owned.task.done():
                log.error(
                    "heartbeats failing for too long: stopping session before a takeover",
                    extra={"event_id": owned.claimed.event_id},
                )
                owned.task.cancel()

    def _start(self, claimed: Claimed) -> None:
        if claimed.entry_id in self.owned:
            return
        metrics.SESSIONS_CLAIMED.labels("failover" if claimed.failover else "new").inc()
        if claimed.failover:
            metrics.FAILOVERS.inc()
            log.info("took over session", extra={"event_id": claimed.event_id, "entry": claimed.entry_id})
        task = self.tasks.spawn(self._guard(claimed), name=f"session:{claimed.event_id}")
        self.owned[claimed.entry_id] = Owned(claimed, task)
        metrics.SESSIONS_OWNED.set(len(self.owned))

    async def _guard(self, claimed: Claimed) -> None:
        assert self.runner is not None, "Relay.runner is not set"
        try:
            await self.runner(claimed)
        finally:
            self.owned.pop(claimed.entry_id, None)
            metrics.SESSIONS_OWNED.set(len(self.owned))

    async def shutdown(self) -> None:
        """Stop every session and hand the unfinished ones over (no XACK)."""
        entries = list(self.owned)
        running = [o.task for o in self.owned.values()]
        for t in running:
            t.cancel()
        if running:
            await asyncio.wait(running, timeout=10)
        try:
            released = await self.claimer.release(entries)
            if released:
                log.info("released sessions for takeover", extra={"count": released})
        except RedisError as exc:
            log.warning("release failed (sessions fail over after the timeout): %s", exc)
        await self.tasks.close(timeout=5)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    if seconds <= 0:
        return
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass
