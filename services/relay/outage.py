"""Riding through Redis outages (issue 18): deadlines on Redis calls and waits that retry.

Redis stopped (connection refused), restarted (still loading its AOF) or frozen (SIGSTOP: the
TCP connection is accepted, nothing answers) must not end or hang anything in the relay. Every
Redis call of a session runs under ``asyncio.timeout`` (not a ``socket_timeout``: see
``shared.aio`` on Python 3.11's cancellation), and a call that fails for want of Redis is retried
after a short capped backoff until Redis is back. The process's ``RedisHealth`` says it once:
one line when Redis is lost, one when it is back; each retry is a debug line.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from shared.aio import check_cancelled
from shared.redis_health import RedisHealth, is_outage

log = logging.getLogger(__name__)

T = TypeVar("T")

# A command that takes longer than this is taken for a frozen Redis (every relay command is a
# few keys; a blocking XREAD gets its block time on top).
COMMAND_SECONDS = 2.0
# Retries while Redis is down: quick at first (a restart is back within a second or two), then
# at most once a second (captions resume within about a second of Redis's return).
RETRY_INITIAL_SECONDS = 0.1
RETRY_MAX_SECONDS = 1.0


class Retry:
    """Capped exponential waits between attempts while Redis is unreachable."""

    def __init__(self, initial: float = RETRY_INITIAL_SECONDS, maximum: float = RETRY_MAX_SECONDS) -> None:
        self.initial = initial
        self.maximum = maximum
        self.delay = initial

    async def wait(self) -> None:
        await asyncio.sleep(self.delay)
        self.delay = min(self.maximum, self.delay * 2)

    def reset(self) -> None:
        self.delay = self.initial


async def until_done(
    health: RedisHealth,
    call: Callable[[], Awaitable[T]],
    what: str,
    seconds: float = COMMAND_SECONDS,
) -> T:
    """``call()`` under a deadline, retried while Redis is unreachable; other errors propagate.
    Only for calls that are safe to repeat (a timed-out call may still have been applied)."""
    retry = Retry()
    while True:
        check_cancelled()
        try:
            async with asyncio.timeout(seconds):
                result = await call()
        except Exception as exc:
            if not is_outage(exc):
                raise
            health.lost(exc)
            log.debug("%s: redis unreachable (%r), retrying in %.2fs", what, exc, retry.delay)
            await retry.wait()
            continue
        health.back()
        return result
