"""Who may publish (docs/design.md section 3): a stream key that maps to an event whose task is not
cancelled, whose status is not cancelled/ended, inside the event's window, on our app.

Rejection descriptions go to the publisher in ``onStatus``; they never echo the key.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from shared import keys, registry
from shared.hashing import secret_hash
from shared.registry import EventRecord, TaskRecord


@dataclass(frozen=True, slots=True)
class Admission:
    event: EventRecord
    task: TaskRecord
    key_hash: str


class Rejected(Exception):
    """A publish that is refused; ``reason`` is a fixed word (a metric label)."""

    def __init__(self, reason: str, description: str, event_id: str = "") -> None:
        super().__init__(description)
        self.reason = reason
        self.description = description
        self.event_id = event_id  # when the key named an event (the console counts its refusals)


def normalize_app(app: str) -> str:
    # Encoders may append a query or a slash to the app ("live?x=1", "live/").
    return app.split("?", 1)[0].strip("/")


def stream_key(name: str) -> str:
    # Some encoders append "?query" to the stream name; the key is what precedes it.
    return name.split("?", 1)[0].strip()


async def admit(
    client: aioredis.Redis, *, expected_app: str, app: str, name: str, now: float, margin: float
) -> Admission:
    if normalize_app(app) != expected_app:
        raise Rejected("wrong_app", f"Unknown application; publish to the mediaUrl's /{expected_app}")
    key = stream_key(name)
    ref = await registry.lookup_media_key(client, key) if key else None
    if ref is None:
        raise Rejected("unknown_key", "Unknown or revoked stream key")
    event_id, task_id = ref
    event = await registry.read_event(client, event_id)
    task = await registry.read_task(client, event_id, task_id)
    if event is None or task is None:
        raise Rejected("unknown_key", "Unknown or revoked stream key")
    try:
        check(event, task, now, margin)
    except Rejected as exc:
        exc.event_id = event_id
        raise
    if (await client.hget(keys.ingest_state(event_id), "eos")) in (b"1", "1"):
        raise Rejected("ended", "The event's media has ended", event_id)
    return Admission(event, task, secret_hash(key))


def check(event: EventRecord, task: TaskRecord, now: float, margin: float) -> None:
    """The checks that stay true for the whole publish (re-run while it lasts)."""
    if task.cancelled or event.status == "cancelled":
        raise Rejected("cancelled", "The caption order was cancelled")
    if event.status == "ended":
        raise Rejected("ended", "The event's media has ended")
    start, end = event.window(margin)
    if now < start:
        raise Rejected("too_early", "The event's window has not opened yet")
    if now > end:
        raise Rejected("too_late", "The event's window is over")
