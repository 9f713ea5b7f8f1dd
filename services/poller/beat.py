"""The beat's scheduler: celery-redbeat's, riding through Redis outages in process (issue 18).

Stock redbeat lets a Redis error escape ``tick`` (the beat exits: a crash loop for as long as
Redis is away), acquires its lock once at start in a blocking call, and crashes when a tick
finds the lock gone. Here every tick is one pass of a small state machine, and a Redis error
is an outage (one line lost / back, ``shared.redis_health``) retried with backoff.

How the lock behaves across an outage, and why there is never more than one leader polling:

- The lock is a Redis key holding the leader's random token with a TTL of
  ``REACHLIVE_POLLER_BEAT_LOCK_SECONDS``. Each leader tick first *extends* it with a script that
  checks the token (redbeat's LUA_EXTEND_TO_SCRIPT), and only then sends what is due. A tick
  whose extend did not succeed sends nothing.
- Polls go to the Celery queue in the same Redis. While Redis is away nobody can send, and nobody
  can take the lock: there is nothing to be unsafe about during the outage itself.
- Short outage (the key's TTL has not run out when Redis is back, data kept by AOF): the
  leader's next extend succeeds and it carries on; a standby's ``SET NX`` still fails.
- Long outage, or a Redis restarted without its data, or a failover that lost the last
  extend: the key is gone. The first beat to tick takes it (``SET NX``); the former leader's
  extend then finds another token (or none), raises ``LockNotOwnedError``, and it becomes a
  standby *before* sending anything. Redis expires keys by wall-clock time, so a Redis frozen
  (SIGSTOP) past the TTL expires the lock at once when it resumes: the same case.
- The one overlap left is a leader whose extend succeeded and whose send then hangs (Redis
  frozen right between the two) beyond the TTL: a standby may take over and poll, and the hung
  send lands too. That is one duplicate poll of the same period, harmless (a poll only reads
  getJobs; provisioning is locked per task), never two leaders polling on.
- A standby polls for the lock every ``beat_max_interval_seconds`` (non-blocking ``SET NX``), so
  it keeps ticking (its liveness and the Redis pings stay fresh) instead of blocking in redbeat's
  start-up ``acquire``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import signals
from kombu.exceptions import OperationalError
from redbeat import schedulers as redbeat
from redis.exceptions import LockError, LockNotOwnedError, RedisError

from shared import probes, redis_health

log = logging.getLogger("celery.beat")  # the lock lines where redbeat logs them ("beat: Acquired lock")

BACKOFF_START_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 2.0  # Redis back → polling again within this

# The lock is taken by the scheduler's own ticks, never by redbeat's blocking start-up handler.
signals.beat_init.disconnect(redbeat.acquire_distributed_beat_lock)


def _outage(exc: BaseException) -> bool:
    """A Redis or broker connection failure anywhere in the exception's chain."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OperationalError) or redis_health.is_outage(seen):
            return True
        if isinstance(seen, RedisError) and not isinstance(seen, LockError):
            return False  # a bad command is a bug to show, not an outage
        seen = seen.__cause__ or seen.__context__
    return False


class Scheduler(redbeat.RedBeatScheduler):
    """``beat_scheduler = "services.poller.beat:Scheduler"``."""

    def __init__(self, app: Any, **kwargs: Any) -> None:
        self.health = redis_health.get("poller")
        self.probe = probes.current()
        self._backoff = BACKOFF_START_SECONDS
        self._candidate: Any = None  # the redis-py Lock object (holds our token once acquired)
        super().__init__(app, **kwargs)

    def _turned(self) -> None:
        if self.probe is not None:
            self.probe.turned()

    def _wait(self, exc: BaseException) -> float:
        """An outage: one line (RedisHealth), then ticks at a growing interval."""
        self.health.lost(exc)
        wait, self._backoff = self._backoff, min(self._backoff * 2, BACKOFF_MAX_SECONDS)
        return wait

    # --- start-up --------------------------------------------------------------------------
    def setup_schedule(self) -> None:
        """Redbeat writes the static schedule to Redis at start: retried until Redis answers
        (start-up with Redis down waits here, ticking its liveness, instead of exiting)."""
        while True:
            self._turned()
            try:
                super().setup_schedule()
            except Exception as exc:
                if not _outage(exc):
                    raise
                time.sleep(self._wait(exc))
                continue
            self._backoff = BACKOFF_START_SECONDS
            return

    # --- the lock --------------------------------------------------------------------------
    def _lead(self) -> bool:
        """Extend the lock if we hold it, else try to take it; True when we lead this tick."""
        if self.lock is not None:
            try:
                self.lock.extend(int(self.lock_timeout))
                return True
            except LockNotOwnedError:
                log.warning("beat: lost the lock (expired during a Redis outage, or taken); standing by")
                self.lock = None
        if self._candidate is None:
            client = redbeat.get_redis(self.app)
            lock = client.lock(self.lock_key, timeout=self.lock_timeout, sleep=self.max_interval)
            lock.lua_extend = client.register_script(redbeat.LUA_EXTEND_TO_SCRIPT)  # extend *to*, as redbeat
            self._candidate = lock
        if self._candidate.acquire(blocking=False):
            log.info("beat: Acquired lock")
            self.lock = self._candidate
            return True
        return False

    # --- ticks -----------------------------------------------------------------------------
    def tick(self, min: Any = min, **kwargs: Any) -> float:
        self._turned()
        try:
            if not self._lead():
                self._backoff = BACKOFF_START_SECONDS
                self.health.back()
                return self.max_interval  # standby: try the lock again next tick
            remaining = [self.max_interval]
            for entry in self.schedule.values():
                next_time_to_run = self.maybe_due(entry, **self._maybe_due_kwargs)
                if next_time_to_run:
                    remaining.append(next_time_to_run)
        except Exception as exc:
            if not _outage(exc):
                raise
            return self._wait(exc)
        self._backoff = BACKOFF_START_SECONDS
        self.health.back()
        return min(remaining)

    def maybe_due(self, entry: Any, **kwargs: Any) -> float:
        """Redbeat's, with a send lost to an outage reported as such (no traceback): the entry
        was already moved on, and a failed poll is not retried (the next period is its retry)."""
        is_due, next_time_to_run = entry.is_due()
        if is_due:
            log.info("Scheduler: Sending due task %s (%s)", entry.name, entry.task)
            try:
                self.apply_async(entry, **kwargs)
            except Exception as exc:
                if not _outage(exc):
                    log.exception("Scheduler: Message Error: %s", exc)
                else:
                    self.health.lost(exc)
        return next_time_to_run

    def _ensure_connected(self) -> Any:
        """The producer's broker connection: a few quick tries, then the tick's backoff (celery
        retries ``broker_connection_max_retries`` times, forever here, logging each one)."""
        return self.connection.ensure_connection(
            lambda exc, _interval: self.health.lost(exc),
            max_retries=2,
            interval_start=0.2,
            interval_step=0.2,
            interval_max=0.5,
        )

    def close(self) -> None:
        """Release the lock if we hold it (a clean stop hands over at once); during an outage
        the release fails and the lock expires by itself."""
        try:
            super().close()
        except Exception as exc:
            if not _outage(exc):
                raise
            log.info("beat: could not release the lock (Redis unavailable); it expires by itself")
