"""reachlive captions TASK_ID: export a task's final captions as WebVTT, SubRip, JSON or text.

The captions are those Kaltura's client was sent: the task's captions stream in Redis (a
translation task's holds its own language). One cue per captions response, its line breaks
kept, timed in media seconds from the start of the event's media; the empty end-of-stream
response is not a cue. A task that got no captions responses (REACHLIVE_CAPTION_TYPES=transcript)
is exported from its transcript responses instead.

--format vtt (default), srt, json (the responses as stored, a list, the end-of-stream one
included) or txt (plain text, one block per response, a blank line between). --output FILE
writes the file instead of stdout.

Captions are kept REACHLIVE_RETENTION_DAYS (30) after the event's end. An unknown task id, or
one whose captions expired, is exit status 1 with a message saying which; Redis unreachable is
exit status 2. Reads Redis only (REACHLIVE_REDIS_URL).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from services.console.redis_io import with_redis
from shared import keys, registry
from shared.cli import plain
from shared.kaltura import models
from shared.redis_client import text
from shared.registry import EventRecord, TaskRecord
from shared.streams import CaptionEntry, PayloadError

FORMATS = ("vtt", "srt", "json", "txt")
PAGE = 1000  # stream entries per XRANGE round trip


class ExportError(Exception):
    """Nothing to export; the message says why, for the operator."""


@dataclass(frozen=True, slots=True)
class Cue:
    start: float
    end: float
    lines: list[str]


@dataclass
class Export:
    task: TaskRecord
    event: EventRecord | None
    kind: str  # the response type exported: captions | transcript
    responses: list[dict[str, Any]] = field(default_factory=list)  # envelopes as stored, in order
    complete: bool = False  # the end-of-stream response is among them

    @property
    def language(self) -> str:
        return self.task.language_code or self.task.language

    def cues(self) -> list[Cue]:
        out = []
        for envelope in self.responses:
            r = envelope["response"]
            alternatives = r.get("alternatives") or [{}]
            lines = [line for line in str(alternatives[0].get("transcript", "")).split("\n") if line.strip()]
            if r.get("is_end_of_stream") or not lines:
                continue
            start = float(r["start"])
            out.append(Cue(start, max(start, float(r["end"])), lines))
        return out


def _retention_days() -> float:
    from shared.settings import CommonSettings

    return CommonSettings().retention_days


def load(client: redis.Redis, task_id: str) -> Export:
    """The task's stored responses, or ``ExportError`` saying why there are none."""
    raw_event = client.get(keys.task_event(task_id))
    task = registry.read_task_sync(client, text(raw_event), task_id) if raw_event is not None else None
    if task is None:
        raise ExportError(
            f"unknown task {task_id}: not in the registry (never ordered from this deployment, or its records "
            f"expired: they are kept REACHLIVE_RETENTION_DAYS={_retention_days():g} days after the event)"
        )
    event = registry.read_event_sync(client, task.event)
    entries = _read(client, keys.captions(task.event, task.id))
    if not entries:
        raise ExportError(_why_none(task, event))
    kinds = {e.kind for e in entries}
    kind = "captions" if "captions" in kinds else "transcript"
    export = Export(task, event, kind)
    for e in entries:
        if e.kind == kind:
            export.responses.append(json.loads(e.json))
            export.complete = export.complete or e.eos
    return export


def _read(client: redis.Redis, key: str) -> list[CaptionEntry]:
    out: list[CaptionEntry] = []
    low = "-"
    while True:
        page = client.xrange(key, low, "+", count=PAGE)
        for _id, fields in page:
            try:
                out.append(CaptionEntry.parse(fields))
            except PayloadError:
                continue  # a payload of another version: not ours to guess
        if len(page) < PAGE:
            return out
        low = f"({text(page[-1][0])}"


def _why_none(task: TaskRecord, event: EventRecord | None) -> str:
    status = _status(task)
    if event is not None and event.session == "1" and task.status in models.FINAL_STATUSES:
        ended = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(event.end + event.post_end))
        return (
            f"task {task.id} ({status}) has no captions left in Redis: they expired or were deleted (kept "
            f"REACHLIVE_RETENTION_DAYS={_retention_days():g} days after the event, which ended {ended})"
        )
    reason = f": {task.error}" if task.error else ""
    return f"task {task.id} has no captions: none were written ({status}{reason})"


def _status(task: TaskRecord) -> str:
    if task.cancelled:
        return "cancelled"
    names = {models.READY: "ready", models.ERROR: "error", models.PROCESSING: "live", models.SCHEDULED: "scheduled"}
    return names.get(task.status, f"status {task.status}")


# --- formats -----------------------------------------------------------------------------------
def _clock(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _vtt_text(line: str) -> str:
    """Cue text escaped as WebVTT requires (this also keeps a "-->" out of it)."""
    return line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(export: Export) -> str:
    parts = [f"WEBVTT\nKind: captions\nLanguage: {export.language}\n"]
    for i, cue in enumerate(export.cues(), 1):
        body = "\n".join(_vtt_text(line) for line in cue.lines)
        parts.append(f"{i}\n{_clock(cue.start, '.')} --> {_clock(cue.end, '.')}\n{body}\n")
    return "\n".join(parts)


def to_srt(export: Export) -> str:
    parts = []
    for i, cue in enumerate(export.cues(), 1):
        body = "\n".join(cue.lines)
        parts.append(f"{i}\n{_clock(cue.start, ',')} --> {_clock(cue.end, ',')}\n{body}\n")
    return "\n".join(parts)


def to_txt(export: Export) -> str:
    return "\n".join("\n".join(cue.lines) + "\n" for cue in export.cues())


def to_json(export: Export) -> str:
    return json.dumps(export.responses, ensure_ascii=False, indent=1) + "\n"


RENDER = {"vtt": to_vtt, "srt": to_srt, "json": to_json, "txt": to_txt}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="reachlive captions", description=plain(__doc__))
    parser.add_argument("task_id", metavar="TASK_ID", help="the Kaltura REACH task id (entryVendorTask id)")
    parser.add_argument("--format", choices=FORMATS, default="vtt", help="vtt (default), srt, json or txt")
    parser.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of stdout")
    args = parser.parse_args(argv)
    loaded: list[Export] = []

    def fetch(client: redis.Redis) -> int:
        loaded.append(load(client, args.task_id.strip()))
        return 0

    if code := with_redis("reachlive captions", fetch, refusals=(ExportError,)):
        return code
    [export] = loaded
    body = RENDER[args.format](export)
    if not export.complete:
        print(
            f"reachlive captions: task {export.task.id} has no end of stream yet ({_status(export.task)}): "
            "the captions written so far",
            file=sys.stderr,
        )
    if args.output:
        with open(args.output, "w", encoding="utf-8", newline="\n") as out:
            out.write(body)
        cues = len(export.cues())
        print(f"reachlive captions: {cues} cues of task {export.task.id} written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(body)
    return 0
