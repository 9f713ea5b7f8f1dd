"""reachlive event EVENT_ID: the history of one event.

First the event as the registry holds it: partner, its media (not started, live, ended,
cancelled), window (UTC; the media window adds preStartTime before and postEndTime after) and
each task (service, language, status, error).
Then its history, oldest first, one line per entry: the UTC time, what happened, and its
details: tasks provisioned, statuses sent to Kaltura and what Kaltura refused, publishes accepted
and refused (with the reason), publishers gone, failovers, speech sessions opened and closed
(with the cause), KWIKmotion refusals, the end of the media, operator actions.

The history is the event's bounded log (its last 1000 or so entries), kept
REACHLIVE_RETENTION_DAYS (30) after the event's end, like its captions. --json prints the same
for scripts. An event id with neither a record nor a history is exit status 1; Redis unreachable
is 2. Reads Redis only (REACHLIVE_REDIS_URL).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import redis

from services.console.redis_io import with_redis
from services.console.status import STATUS_NAMES
from shared import journal, keys
from shared.cli import plain
from shared.journal import utc
from shared.redis_client import text
from shared.registry import EventRecord, TaskRecord

# What each kind of entry says, in words (a kind not listed is shown with its underscores as spaces).
KIND_WORDS = {
    "provisioned": "task provisioned",
    "status_sent": "status sent to Kaltura",
    "status_refused": "Kaltura refused a status",
    "status_failed": "status not sent (Kaltura error; retried)",
    "cancelled": "task cancelled",
    "no_show": "no-show: no media during the task's window",
    "window_moved": "event window moved",
    "publish_accepted": "publish accepted",
    "publish_refused": "publish refused",
    "publisher_gone": "publisher gone",
    "failover": "failover: a standby publisher continues the audio",
    "end_of_stream": "end of stream written",
    "session_opened": "speech session opened",
    "session_closed": "speech session closed",
    "session_taken_over": "speech session taken over by another relay",
    "late_order_joined": "task ordered mid-event joined the speech session",
    "speech_refused": "KWIKmotion refused the speech session",
    "target_refused": "KWIKmotion refused a translation language",
    "operator_action": "operator action",
}
SERVICES = {"caption": "captions", "translation": "translation"}


class UnknownEvent(Exception):
    """Neither a registry record nor a history: the message says so, for the operator."""


def load(client: redis.Redis, event_id: str) -> dict[str, Any]:
    """The event, its tasks and its history, JSON-able; two round trips."""
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.event(event_id))
    pipe.smembers(keys.event_tasks(event_id))
    pipe.hget(keys.ingest_state(event_id), "eos")
    raw_event, members, eos = pipe.execute()
    history = journal.read(client, event_id)
    task_ids = sorted(text(m) for m in members)
    pipe = client.pipeline(transaction=False)
    for task_id in task_ids:
        pipe.hgetall(keys.task(event_id, task_id))
    tasks = [t for t in (TaskRecord.parse(raw) for raw in pipe.execute()) if t is not None] if task_ids else []
    # A hash without its id is what a late write left of an expired record: no record.
    event = EventRecord.parse(raw_event) if b"id" in raw_event or "id" in raw_event else None
    if event is None and not tasks and not history:
        raise UnknownEvent(
            f"no event {event_id}: no registry record and no history (never ordered here, or kept no longer "
            "than REACHLIVE_RETENTION_DAYS after its end)"
        )
    return {
        "event_id": event_id,
        "event": _event(event, text(eos or b"") == "1") if event is not None else None,
        "tasks": [_task(t) for t in tasks],
        "history": [{"time": utc(e.ts), **e.as_dict()} for e in history],
        "history_capped": len(history) >= keys.EVENT_LOG_MAXLEN,
    }


def _event(event: EventRecord, ended: bool) -> dict[str, Any]:
    start, end = event.window()
    if event.status == "cancelled":
        media = "cancelled"
    elif ended:
        media = "ended"
    else:
        media = "live" if event.session == "1" else "not started"
    return {
        "partner_id": event.partner_id,
        "status": event.status,
        "media": media,  # not started | live | ended (end of stream written) | cancelled
        "start": event.start,
        "end": event.end,
        "media_start": start,
        "media_end": end,
        "source_language": event.source_language_code or event.source_language,
    }


def _task(task: TaskRecord) -> dict[str, Any]:
    # Chosen fields only: the record also holds key and token hashes and the sealed accessKey.
    return {
        "id": task.id,
        "service": SERVICES.get(task.kind, task.kind),
        "language": task.language_code or task.language,
        "status": "cancelled" if task.cancelled else STATUS_NAMES.get(task.status, str(task.status)),
        "error": task.error,
        "start": task.start,
        "end": task.end,
    }


def words(kind: str) -> str:
    return KIND_WORDS.get(kind, kind.replace("_", " "))


def render(view: dict[str, Any]) -> str:
    lines = []
    ev = view["event"]
    if ev is None:
        lines.append(f"event {view['event_id']}: no registry record (expired, or never provisioned here)")
    else:
        lines.append(f"event {view['event_id']}  partner {ev['partner_id'] or '?'}  media {ev['media']}")
        lines.append(
            f"window {_span(ev['start'], ev['end'])}  (media {_span(ev['media_start'], ev['media_end'])})"
            f"  source language {ev['source_language'] or '?'}"
        )
    if view["tasks"]:
        lines.append("tasks:")
        width = max(len(t["id"]) for t in view["tasks"])
        for t in view["tasks"]:
            error = f": {t['error']}" if t["error"] else ""
            lines.append(f"  {t['id']:<{width}}  {t['service']:<11}  {t['language']:<6}  {t['status']}{error}")
    history = view["history"]
    if not history:
        lines.append("history: none recorded")
        return "\n".join(lines)
    capped = "; the oldest were dropped (the log keeps the last ~1000)" if view["history_capped"] else ""
    count = f"{len(history)} entr{'y' if len(history) == 1 else 'ies'}"
    lines.append(f"history ({count}, oldest first{capped}):")
    for entry in history:
        details = journal.Entry(entry["ts"], entry["kind"], entry["fields"]).words()
        lines.append(f"  {entry['time']}  {words(entry['kind'])}{': ' + details if details else ''}")
    return "\n".join(lines)


def _span(start: float, end: float) -> str:
    if not start and not end:
        return "unknown"
    first, last = utc(start), utc(end)
    same_day = first[:10] == last[:10]
    return f"{first} to {last[11:] if same_day else last}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="reachlive event", description=plain(__doc__))
    parser.add_argument("event_id", metavar="EVENT_ID", help="the Kaltura scheduled event id")
    parser.add_argument("--json", action="store_true", help="print the event and its history as JSON")
    args = parser.parse_args(argv)

    def show(client: redis.Redis) -> int:
        view = load(client, args.event_id.strip())
        print(json.dumps(view, indent=1) if args.json else render(view))
        return 0

    return with_redis("reachlive event", show, refusals=(UnknownEvent,))
