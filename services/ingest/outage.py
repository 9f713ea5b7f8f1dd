"""The ingest's view of Redis reachability (issue 18): whether Redis answers, so that a Redis
outage pauses the ingest's Redis work instead of dropping publishers.

Every Redis call of the ingest that fails with an outage error marks the link down
(``lost``); from then on publishers stop calling Redis and buffer their audio, the sweeper
skips its rounds, new publishes wait for Redis. One prober (``IngestServer._probe``) PINGs
until Redis answers and marks the link up again (``back``); each publisher then resumes on
its next read or heartbeat.

Reporting (one log line when lost, one when back, the ``reachlive_redis_*{service="ingest"}``
gauges) is the process's ``shared.redis_health.RedisHealth``, which the readiness pinger feeds
too: it logs transitions only, so both reporting one outage still make one pair of lines.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

import redis.exceptions as rex

from shared import redis_health

# What "Redis is not there" looks like from redis-py: refused/reset connections, a frozen
# server (socket timeout), a server still loading its AOF (shared.redis_health's list), and a
# replica left read-only by a failover (the ingest writes). Anything else is a bug, not an
# outage, and keeps its traceback.
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (*redis_health.OUTAGE_ERRORS, rex.ReadOnlyError)


class Health(Protocol):
    """What a service reports about Redis (shared.redis_health.RedisHealth's interface)."""

    def lost(self, exc: BaseException) -> object: ...

    def back(self) -> object: ...


class Link:
    """Up or down, with an event for those waiting for Redis to come back."""

    def __init__(self, health: Health) -> None:
        self.health = health
        self.up = True
        self.back_at = 0.0  # wall clock of the last return (0: never down)
        self._down = asyncio.Event()
        self._up = asyncio.Event()
        self._up.set()

    def lost(self, exc: BaseException) -> None:
        if self.up:
            self.up = False
            self._up.clear()
            self._down.set()
            self.health.lost(exc)

    def back(self) -> None:
        if not self.up:
            self.up = True
            self.back_at = time.time()
            self._down.clear()
            self._up.set()
            self.health.back()

    async def wait_down(self) -> None:
        await self._down.wait()

    async def wait_up(self, timeout: float | None = None) -> bool:
        """True once Redis is up (at once if it is), False after ``timeout`` seconds."""
        if self.up:
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._up.wait()
        except TimeoutError:
            return False
        return True

    def down_or_recent(self, seconds: float) -> bool:
        """Redis is down, or came back less than ``seconds`` ago."""
        return not self.up or time.time() - self.back_at < seconds
