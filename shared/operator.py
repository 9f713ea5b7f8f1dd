"""Operator requests that services carry out at once (``reachlive admin``, issue 20).

``disconnect`` (the ingest drops an event's publishers, or one of them) and ``revoke`` (the
ingest and the gateway close a revoked task's publishers and caption connections, and count it)
travel on ``keys.OPERATOR_CHANNEL`` as versioned JSON, heard by the revocation listener
(shared/revocations.py) that both services already run. Pub/sub is lossy: a service whose
subscription is down misses the request; the console then sees the publisher still there and
says so (a revocation itself does not depend on it: the registry and the revocation channel carry
it, and the services re-check at their next revalidation).

The other actions need no message: ``restart-session`` hands the session's entry in the relays'
consumer group over (services/relay/service.py), ``end-media`` sets the event's status "ended"
(the ingest's sweep writes the end of stream), ``resend-status`` is a Celery command for the
poller's workers (shared/commands.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from shared import keys

VERSION = 1
RESTART_SESSION = "restart-session"
DISCONNECT = "disconnect"
END_MEDIA = "end-media"
RESEND_STATUS = "resend-status"
REVOKE = "revoke"
ACTIONS = (RESTART_SESSION, DISCONNECT, END_MEDIA, RESEND_STATUS, REVOKE)
# Actions sent on the channel (the others take effect through Redis state, see the module doc).
MESSAGES = (DISCONNECT, REVOKE)


@dataclass(frozen=True, slots=True)
class Request:
    """One operator request on the channel: ``disconnect`` names an event (and a publisher id as
    ``reachlive status`` shows it, or "" for all of the event's), ``revoke`` an event and a task."""

    action: str
    event_id: str
    task_id: str = ""
    publisher: str = ""

    def encode(self) -> str:
        body = {"v": VERSION, "action": self.action, "event": self.event_id}
        if self.task_id:
            body["task"] = self.task_id
        if self.publisher:
            body["publisher"] = self.publisher
        return json.dumps(body, separators=(",", ":"))


def parse(data: bytes | str) -> Request | None:
    """A channel message → a Request; None for anything else (another version, garbage)."""
    try:
        body: Any = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(body, dict) or body.get("v") != VERSION:
        return None
    action, event_id = body.get("action"), body.get("event")
    if action not in MESSAGES or not isinstance(event_id, str) or not event_id:
        return None
    task_id, publisher = body.get("task", ""), body.get("publisher", "")
    if not isinstance(task_id, str) or not isinstance(publisher, str):
        return None
    if action == REVOKE and not task_id:
        return None
    return Request(action, event_id, task_id, publisher)


def publish(client: redis.Redis, request: Request) -> int:
    """Send a request; returns how many subscribers (ingest and gateway processes) heard it."""
    return int(client.publish(keys.OPERATOR_CHANNEL, request.encode()))
