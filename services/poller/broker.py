"""The worker's broker consumer through Redis outages (issue 18): reconnect forever, quickly,
with one line lost / back per outage (``shared.redis_health``) instead of Celery's line per
retry and its give-up after 100; and the readiness facts the worker's ``/readyz`` needs.

- ``Consumer`` (``worker_consumer``): Celery's, whose reconnect loop retries without end every
  ``RETRY_MAX_SECONDS`` at most (kombu's default grows to 30 s: a task sent after Redis returned
  waited up to that long), reporting to RedisHealth rather than logging each attempt. Each retry
  stamps the probe's loop turn: the main thread waiting for Redis is not a wedged process.
- ``Readiness`` (a consumer bootstep after ``Tasks``): started once the consumer is connected and
  consuming, stopped when the connection is lost (Celery restarts the consumer blueprint then),
  which is the reliable "broker consumer connected" signal; it also stamps the loop turn from
  the consumer's event loop (hub timer), so a wedged loop goes stale.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import bootsteps
from celery.worker.consumer import Consumer as CeleryConsumer
from celery.worker.state import maybe_shutdown

from shared import probes, redis_health

log = logging.getLogger(__name__)

RETRY_START_SECONDS = 0.5
RETRY_MAX_SECONDS = 2.0
TURN_SECONDS = 0.5


def _health() -> redis_health.RedisHealth:
    return redis_health.get("worker")


def _turned() -> None:
    probe = probes.current()
    if probe is not None:
        probe.turned()


class Consumer(CeleryConsumer):
    connected = False  # class-wide: one consumer per worker process

    def ensure_connected(self, conn: Any) -> Any:
        def errback(exc: BaseException, _interval: float) -> None:
            _health().lost(exc)

        def each_second() -> None:
            _turned()
            maybe_shutdown()  # a SIGTERM during the outage still stops the worker

        conn = conn.ensure_connection(
            errback,
            None,  # forever (also broker_connection_max_retries=None in the app's conf)
            interval_start=RETRY_START_SECONDS,
            interval_step=RETRY_START_SECONDS,
            interval_max=RETRY_MAX_SECONDS,
            callback=each_second,
        )
        self.first_connection_attempt = False
        self.broker_connection_retry_attempt = 0
        return conn

    def on_connection_error_before_connected(self, exc: BaseException) -> None:
        _health().lost(exc)

    def on_connection_error_after_connected(self, exc: BaseException) -> None:
        # Not reported to RedisHealth: the consumer often hears of a dead connection only when
        # Redis is back (its blocked read fails then), after the pinger ended the outage; the
        # pinger and the reconnect attempts below report the outage itself.
        Consumer.connected = False
        log.debug("broker connection lost, reconnecting: %r", exc)


class Readiness(bootsteps.StartStopStep):
    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, c: Any, **kwargs: Any) -> None:
        super().__init__(c, **kwargs)
        self._said = False

    def start(self, c: Any) -> None:
        Consumer.connected = True
        _health().back()
        _turned()
        c.timer.call_repeatedly(TURN_SECONDS, _turned)  # cancelled with the connection's entries
        if not self._said:
            self._said = True
            log.info("worker consuming", extra={"queues": sorted(q.name for q in c.task_consumer.queues)})

    def stop(self, c: Any) -> None:
        Consumer.connected = False

    def shutdown(self, c: Any) -> None:
        Consumer.connected = False


def install(app: Any) -> None:
    """Use the consumer and the readiness step in this app's workers."""
    app.conf.worker_consumer = f"{__name__}:Consumer"
    app.steps["consumer"].add(Readiness)
