"""Redis reachability of one process (issue 18): one log line when Redis is lost and one when it
is back, per outage, however many connections, feeds or retries see the errors in between.

Every service holds one ``RedisHealth`` (``get(service)``), fed by its readiness pinger
(``shared.probes``) and by its own code wherever a Redis call fails or succeeds. An outage
starts at the first ``lost`` and ends at the first ``back``: the lines, the outage counter and
the gauges follow those two transitions only, so a retry loop may call them on every attempt.

``reachlive_redis_outage_seconds`` is the length of the *current* outage (0 while Redis
answers), computed at scrape time, so an alert or a dashboard sees it grow; the finished
outage's length is in the "back" line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from redis.exceptions import BusyLoadingError, ConnectionError, TimeoutError

from shared.metrics import REDIS_OUTAGE_SECONDS, REDIS_OUTAGES, REDIS_UP

log = logging.getLogger(__name__)

# The errors that mean "Redis is unreachable" (an outage), not a bad command. BusyLoadingError
# (a restarted Redis still loading its AOF) is a ConnectionError subclass, listed for the reader;
# OSError covers the builtin TimeoutError that ``asyncio.timeout`` raises around a frozen Redis.
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError, BusyLoadingError, OSError)

_UNKNOWN, _UP, _DOWN = "unknown", "up", "down"

# After Redis is back, the pools still hold connections that died during the outage; each fails
# once on its next use. A failure reported this soon after "back" is taken for one of those (a
# debug line), unless the readiness pinger reports it (``confirmed``): it pings on a connection
# that has just answered, so its failure is a new outage.
SETTLE_SECONDS = 5.0


def is_outage(exc: BaseException) -> bool:
    """Whether an exception stands for Redis being unreachable (asyncio timeouts included)."""
    return isinstance(exc, OUTAGE_ERRORS)


class RedisHealth:
    """Reachability of Redis from one process; thread-safe (Celery's pinger is a thread)."""

    def __init__(self, service: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.service = service
        self._clock = clock
        self._lock = threading.Lock()
        self._state = _UNKNOWN  # until the first answer or failure: not up (gauge 0), no line
        self._since = clock()  # start of the current outage (or of waiting for the first answer)
        self._back_at = float("-inf")
        REDIS_UP.labels(service).set(0)
        REDIS_OUTAGES.labels(service)
        REDIS_OUTAGE_SECONDS.labels(service).set_function(self.outage_seconds)

    @property
    def up(self) -> bool:
        return self._state == _UP

    @property
    def down(self) -> bool:
        """In an outage (False before the first answer or failure, unlike ``not up``)."""
        return self._state == _DOWN

    def outage_seconds(self) -> float:
        """Seconds the current outage has lasted (0 while up or before the first answer)."""
        return self._clock() - self._since if self._state == _DOWN else 0.0

    def lost(self, exc: BaseException | None = None, *, confirmed: bool = False) -> bool:
        """A Redis call failed for want of Redis. True when this call started the outage (and
        logged its one line); later calls during the same outage do nothing, and so do
        unconfirmed ones within ``SETTLE_SECONDS`` of the end of an outage (stale connections)."""
        with self._lock:
            if self._state == _DOWN:
                return False
            if not confirmed and self._state == _UP and self._clock() - self._back_at < SETTLE_SECONDS:
                log.debug("redis error on a connection from before the outage: %r", exc)
                return False
            first = self._state == _UNKNOWN
            self._state = _DOWN
            self._since = self._clock()
        REDIS_UP.labels(self.service).set(0)
        REDIS_OUTAGES.labels(self.service).inc()
        error = type(exc).__name__ if exc is not None else "no answer"
        log.warning(
            "redis %s (%s); retrying until it is back",
            "unreachable at start" if first else "lost",
            error,
            extra={"service": self.service, "error": error},
        )
        return True

    def back(self) -> float | None:
        """A Redis call succeeded. Returns the outage's seconds when this call ended one (and
        logged its one line); None otherwise."""
        with self._lock:
            if self._state == _UP:
                return None
            was, self._state = self._state, _UP
            seconds = self._clock() - self._since
            if was == _DOWN:
                self._back_at = self._clock()
        REDIS_UP.labels(self.service).set(1)
        if was == _UNKNOWN:
            return None  # the first answer ends no outage
        log.info(
            "redis back after %.1f s",
            seconds,
            extra={"service": self.service, "outage_seconds": round(seconds, 3)},
        )
        return seconds


_instances: dict[str, RedisHealth] = {}
_instances_lock = threading.Lock()


def get(service: str) -> RedisHealth:
    """The process's ``RedisHealth`` for a service (one per service name, shared by the readiness
    pinger and the service's own code, so that one outage is one pair of lines)."""
    with _instances_lock:
        health = _instances.get(service)
        if health is None:
            health = _instances[service] = RedisHealth(service)
        return health
