"""The Celery commands other services send to the poller (DESIGN section 2).

Ingest and relay do not import the poller's tasks: they send by name through a broker-only
Celery app, so the poller is the only component that talks to Kaltura.
"""

from __future__ import annotations

import asyncio
from functools import lru_cache

from celery import Celery

from shared import keys

POLL = "reach.poll"
PROVISION = "reach.provision"
RECONCILE = "reach.reconcile"
# args: (event_id, task_ids), kwargs jobs: reconcile's Kaltura checks of one event (the poller's own).
CHECK_EVENT = "reach.check_event"
# args: (event_id,) — the event's media started: its tasks go SCHEDULED → PROCESSING.
PROCESSING = "reach.processing"
# args: (task_id, outcome, reason) with outcome "ready" | "error"; reason is errDescription.
FINALIZE = "reach.finalize"

QUEUE = "reach"


def broker_options() -> dict[str, object]:
    """Transport options shared by the poller's app and the senders (same key prefix)."""
    return {"global_keyprefix": keys.BROKER_PREFIX}


@lru_cache(maxsize=4)
def _sender(redis_url: str) -> Celery:
    app = Celery("reachlive-sender", broker=redis_url)
    app.conf.broker_transport_options = broker_options()
    app.conf.task_default_queue = QUEUE
    app.conf.broker_connection_retry_on_startup = True
    return app


def send(redis_url: str, name: str, *args: object) -> None:
    """Enqueue a command for the poller's workers (blocking: call it off the event loop)."""
    _sender(redis_url).send_task(name, args=list(args), queue=QUEUE)


async def send_async(redis_url: str, name: str, *args: object) -> None:
    await asyncio.to_thread(send, redis_url, name, *args)
