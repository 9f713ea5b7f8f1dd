"""The Celery commands other services send to the poller (docs/design.md section 2).

Ingest and relay do not import the poller's tasks: they send by name through a broker-only
Celery app, so the poller is the only component that talks to Kaltura.

Redis outages (issue 18): the broker is the shared Redis. A send has socket deadlines
(``SEND_SOCKET_OPTIONS``: a frozen Redis accepts the TCP connection and never answers) and a
short publish retry (``RETRY_POLICY``), so ``send`` fails within seconds instead of hanging its
thread. ``deliver`` retries a send with capped backoff until the broker takes it: the caller (a
session's task) waits for it, so the command is not lost; the number of commands waiting is
bounded by their callers (the relay: one FINALIZE at a time per session, one PROCESSING per task),
and each waits in one executor thread at most for one attempt's deadline at a time.
"""

from __future__ import annotations

import asyncio
import logging
from functools import lru_cache

from celery import Celery
from kombu.exceptions import OperationalError

from shared import keys, redis_client
from shared.redis_health import RedisHealth, is_outage

log = logging.getLogger(__name__)

POLL = "reach.poll"
PROVISION = "reach.provision"
RECONCILE = "reach.reconcile"
# args: (event_id, task_ids), kwargs jobs: reconcile's Kaltura checks of one event (the poller's own).
CHECK_EVENT = "reach.check_event"
# args: (event_id,) — the event's media started: its tasks go SCHEDULED → PROCESSING.
PROCESSING = "reach.processing"
# args: (task_id, outcome, reason) with outcome "ready" | "error"; reason is errDescription.
# kwargs resend=True (reachlive admin resend-status): send the task's stored final status again.
FINALIZE = "reach.finalize"

QUEUE = "reach"

# The sender's Redis deadlines: a publish is one LPUSH, so seconds are plenty.
SEND_SOCKET_OPTIONS = {"socket_timeout": 3.0, "socket_connect_timeout": 2.0}
# kombu's own retry of one publish (reconnecting once): a frozen Redis fails a ``send`` in ~10 s.
RETRY_POLICY = {"max_retries": 1, "interval_start": 0.2, "interval_step": 0.3, "interval_max": 0.5}
# ``deliver``'s waits between sends while the broker is unreachable.
DELIVER_INITIAL_SECONDS = 0.5
DELIVER_MAX_SECONDS = 5.0


def broker_options() -> dict[str, object]:
    """Transport options shared by the poller's app and the senders (same key prefix)."""
    return {"global_keyprefix": keys.BROKER_PREFIX}


@lru_cache(maxsize=4)
def _sender(redis_url: str) -> Celery:
    broker_url, transport = redis_client.celery_broker(redis_url)  # redis+sentinel:// too
    app = Celery("reachlive-sender", broker=broker_url)
    app.conf.broker_transport_options = {**broker_options(), **SEND_SOCKET_OPTIONS, **transport}
    app.conf.broker_connection_timeout = SEND_SOCKET_OPTIONS["socket_connect_timeout"]
    app.conf.task_default_queue = QUEUE
    app.conf.broker_connection_retry_on_startup = True
    return app


def send(redis_url: str, name: str, *args: object, **kwargs: object) -> None:
    """Enqueue a command for the poller's workers (blocking: call it off the event loop).
    Raises within seconds when the broker is unreachable (see the module doc)."""
    _sender(redis_url).send_task(
        name, args=list(args), kwargs=kwargs or None, queue=QUEUE, retry=True, retry_policy=RETRY_POLICY
    )


async def send_async(redis_url: str, name: str, *args: object) -> None:
    await asyncio.to_thread(send, redis_url, name, *args)


def _unreachable(exc: BaseException) -> bool:
    # kombu reports a broker it could not reach as OperationalError (the Redis error is its cause).
    return is_outage(exc) or isinstance(exc, OperationalError)


async def deliver(redis_url: str, name: str, *args: object, health: RedisHealth | None = None) -> None:
    """``send_async`` retried with capped backoff until the broker takes the command.

    An unreachable broker is reported to ``health`` (its one line per outage); any other failure
    is logged once as a warning, each retry after it at debug. A send whose reply a frozen Redis
    swallowed may have been enqueued, so a command may arrive twice: the poller's commands are
    idempotent (a second FINALIZE or PROCESSING is a no-op)."""
    delay = DELIVER_INITIAL_SECONDS
    warned = False
    while True:
        try:
            await send_async(redis_url, name, *args)
        except Exception as exc:
            if _unreachable(exc):
                if health is not None:
                    health.lost(exc)
                log.debug("command %s waits for the broker (%r): retrying in %.1fs", name, exc, delay)
            elif not warned:
                warned = True
                log.warning("command %s could not be sent (%s): retrying", name, type(exc).__name__)
            else:
                log.debug("command %s still not sent (%r)", name, exc)
            await asyncio.sleep(delay)
            delay = min(DELIVER_MAX_SECONDS, delay * 2)
            continue
        if health is not None:
            health.back()
        return
