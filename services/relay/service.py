"""One relay replica: the claim loop and its sessions (docs/design.md section 4, "Session claiming").

Every ``tick`` (at most ``heartbeat_seconds``, ``failover_seconds / 4`` and 1 s) the loop:

1. every ``beat`` (``heartbeat_seconds``, at most ``failover_seconds / 4``: four heartbeats or
   more per failover window), and in the first round after an outage, heartbeats the entries it
   owns (a script per round, two commands per entry: not every tick, issue 22); an entry another
   replica owns now is *lost*: its session is cancelled at once (its caption writes are also
   fenced, see ``writer.py``);
2. below ``max_sessions``: takes over entries idle past ``failover_seconds`` (``XAUTOCLAIM``),
   then reads new entries (``XREADGROUP >``, blocking a fraction of the tick).

Redis outages (issue 18): nothing is stopped. Rounds fail (one "redis lost" line for the
process, ``RedisHealth``) and are retried every tick; sessions keep their KWIKmotion connections
and hold their captions (see ``connection``). Starting with Redis down, the replica waits for it
(alive, not ready) instead of exiting. Taking over is the delicate part: Redis counts an entry's
idle time from its last heartbeat in wall-clock time, *including* the outage (a restarted Redis
reloads the PEL's delivery times from its AOF; a frozen one wakes with its clock moved on), so
after an outage longer than ``failover_seconds`` every entry looks abandoned. Hence, after an
outage a replica does not ``XAUTOCLAIM`` for ``failover_seconds`` from Redis's return (as seen
from it): live owners heartbeat within a tick of the return and keep their sessions; only those
of a replica that died meanwhile are taken over, one failover timeout after Redis's return.
If a takeover happens anyway (a replica started just then, or a network partition: others
reach Redis, this replica does not), it is a clean handover: the new owner's epoch fences this
replica's commits (``output``), its next heartbeat reports the entry lost and the session stops,
and until then it cannot read audio either (Redis is unreachable from here), so it sends
KWIKmotion nothing the new owner does not send again from the persisted cursor.

(There used to be a self-fence stopping sessions after heartbeats failed for
``0.8 × failover_seconds``: it ended every KWIKmotion session in any outage longer than a few
seconds, for a partition that the epoch fencing already makes safe.)

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
from services.relay.outage import COMMAND_SECONDS, Retry
from shared import journal, probes, redis_health
from shared.aio import TaskSet, check_cancelled
from shared.redis_health import RedisHealth, is_outage
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
        health: RedisHealth | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.runner = runner
        self.consumer = consumer or consumer_name(settings)
        self.claimer = Claimer(client, self.consumer, settings.failover_seconds)
        self.owned: dict[str, Owned] = {}
        self.tasks = TaskSet("relay")
        self.tick = min(settings.heartbeat_seconds, settings.failover_seconds / 4, 1.0)
        self.beat = min(settings.heartbeat_seconds, settings.failover_seconds / 4)
        self.last_beat = float("-inf")  # monotonic: the last heartbeat that succeeded
        self.health = health or redis_health.get("relay")
        self.down = False  # the last round failed for want of Redis
        self.autoclaim_after = 0.0  # monotonic: no takeovers before (after an outage, see module doc)
        self.last_round = float("-inf")  # monotonic: the last round that succeeded
        self._warned = False  # a non-outage round failure was logged (once per streak)
        self.need_group = False

    @property
    def free(self) -> int:
        return self.settings.max_sessions - len(self.owned)

    def claiming(self) -> bool:
        """Readiness: the claim loop's rounds succeed (Redis answers this replica's own calls)."""
        return time.monotonic() - self.last_round < max(3.0, 5 * self.tick)

    async def start_up(self, stop: asyncio.Event) -> bool:
        """The consumer group, waiting for Redis if it is down (alive, not ready, no exit).
        False if stopped first."""
        retry = Retry()
        while not stop.is_set():
            check_cancelled()
            try:
                async with asyncio.timeout(2 * COMMAND_SECONDS):
                    await self.claimer.ensure_group()
                    await self.claimer.prune_consumers()
            except Exception as exc:
                if not is_outage(exc):
                    raise
                self.health.lost(exc)
                self.down = True
                log.debug("relay start-up waits for redis (%r)", exc)
                await _wait(stop, retry.delay)
                retry.delay = min(retry.maximum, retry.delay * 2)
                continue
            self._up()
            return True
        return False

    async def run(self, stop: asyncio.Event) -> None:
        probe = probes.current()
        if probe is not None:
            probe.add_check("claim loop", self.claiming)
        try:
            if not await self.start_up(stop):
                return
            log.info(
                "relay claiming sessions", extra={"consumer": self.consumer, "max_sessions": self.settings.max_sessions}
            )
            while not stop.is_set():
                started = time.monotonic()
                try:
                    # A frozen Redis answers nothing: a round has a deadline, then it is retried.
                    async with asyncio.timeout(max(2 * self.tick, COMMAND_SECONDS)):
                        await self._round(stop)
                except (RedisError, OSError) as exc:  # OSError: the builtin TimeoutError too
                    check_cancelled()
                    if is_outage(exc):
                        self.health.lost(exc)
                        self.down = True
                        log.debug("claim round failed: redis unreachable (%r)", exc)
                    elif "NOGROUP" in str(exc):
                        # Redis came back without its data (no AOF): the group is made again; the
                        # sessions it listed are gone with it (see docs/operating.md, Running Redis).
                        log.error("the relays' consumer group is gone from redis: creating it again")
                        self.need_group = True
                    elif not self._warned:
                        self._warned = True
                        log.warning("claim round failed: %s", exc)
                    else:
                        log.debug("claim round failed again: %s", exc)
                    await _wait(stop, self.tick)
                    continue
                self._up()
                await _wait(stop, max(0.0, self.tick - (time.monotonic() - started)))
        finally:
            await self.shutdown()

    def _up(self) -> None:
        """A round (or the start-up) succeeded."""
        self.last_round = time.monotonic()
        self._warned = False
        self.health.back()
        if self.down:
            self.down = False
            self.autoclaim_after = self.last_round + self.settings.failover_seconds
            log.debug("redis answers again: no takeovers for %.1fs", self.settings.failover_seconds)

    async def _round(self, stop: asyncio.Event) -> None:
        if self.need_group:
            await self.claimer.ensure_group()
            self.need_group = False
        # Due a little early rather than a tick late (rounds start a tick apart, give or take).
        # After an outage at once: Redis counted the outage as idle time of our entries.
        now = time.monotonic()
        lost: set[str] = set()
        if self.down or now - self.last_beat >= self.beat - self.tick / 2:
            lost = await self.claimer.heartbeat(list(self.owned))
            self.last_beat = now
        for entry_id in lost:
            # Forgotten now, not when its task has ended: this replica may take the entry over
            # again in this very round (an operator's restart-session hands it to no relay: any,
            # this one too, takes it from the cursor, with a new epoch that fences the old session).
            self._lose(entry_id)
        if self.free > 0 and not stop.is_set() and time.monotonic() >= self.autoclaim_after:
            for c in await self.claimer.autoclaim(self.free):
                self._start(c)
        if self.free > 0 and not stop.is_set():
            block = max(1, int(self.tick * 500))
            for c in await self.claimer.read_new(self.free, block):
                self._start(c)

    def _lose(self, entry_id: str) -> None:
        """Stop the session of an entry another consumer holds (or held) since we claimed it."""
        owned = self.owned.pop(entry_id, None)
        metrics.SESSIONS_OWNED.set(len(self.owned))
        if owned is not None and not owned.task.done():
            log.warning("session taken over by another relay: stopping", extra={"event_id": owned.claimed.event_id})
            metrics.SESSIONS_LOST.inc()
            owned.task.cancel()

    def _start(self, claimed: Claimed) -> None:
        if claimed.entry_id in self.owned:
            if not claimed.failover:
                return
            # XAUTOCLAIM gave us an entry we still run: another consumer held it since (an
            # operator's restart-session hands it to none) and no heartbeat of ours ran in
            # between to say so (they run every ``beat``, not every round). The entry is
            # lost and taken again: the running session stops, a new one resumes from the cursor
            # with a new epoch that fences the old one's writes.
            self._lose(claimed.entry_id)
        metrics.SESSIONS_CLAIMED.labels("failover" if claimed.failover else "new").inc()
        if claimed.failover:
            metrics.FAILOVERS.inc()
            log.info("took over session", extra={"event_id": claimed.event_id, "entry": claimed.entry_id})
            if claimed.event_id is not None:
                entry = journal.arecord(self.client, claimed.event_id, "session_taken_over", replica=self.consumer)
                self.tasks.spawn(entry, "journal")
        task = self.tasks.spawn(self._guard(claimed), name=f"session:{claimed.event_id}")
        self.owned[claimed.entry_id] = Owned(claimed, task)
        metrics.SESSIONS_OWNED.set(len(self.owned))

    async def _guard(self, claimed: Claimed) -> None:
        assert self.runner is not None, "Relay.runner is not set"
        try:
            await self.runner(claimed)
        finally:
            owned = self.owned.get(claimed.entry_id)
            if owned is not None and owned.task is asyncio.current_task():  # not a newer claim of it
                del self.owned[claimed.entry_id]
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
            async with asyncio.timeout(COMMAND_SECONDS):
                released = await self.claimer.release(entries)
            if released:
                log.info("released sessions for takeover", extra={"count": released})
        except (RedisError, OSError) as exc:
            log.warning("release failed (sessions fail over after the timeout): %r", exc)
        await self.tasks.close(timeout=5)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    if seconds <= 0:
        return
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass
