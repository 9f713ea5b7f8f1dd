"""Test helpers for the gateway: a task in the registry, caption entries on its stream (as the
relay writes them), a real in-process gateway, and a check of the seed's response schema."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import redis

from shared import keys
from shared.hashing import new_secret
from shared.registry import EventRecord, TaskRecord, write_event, write_task
from shared.streams import CaptionEntry

NS = uuid.UUID("6f1c1f9e-3c8e-4d7e-9a7a-6b1f2d3c4e5f")


def make_task(client: redis.Redis, event_id: str = "E1", task_id: str = "T1") -> str:
    """Register an event and a caption task the way the poller does; returns the plain token."""
    token = new_secret()
    now = time.time()
    write_event(client, EventRecord(id=event_id, start=now - 60, end=now + 3600, status="live", session="1"))
    write_task(
        client,
        TaskRecord(id=task_id, event=event_id, language="en", language_code="en-US", status=3),
        caption_token=token,
    )
    return token


def response(
    task_id: str, n: int, kind: str = "captions", eos: bool = False, text: str | None = None
) -> dict[str, Any]:
    """A Kaltura caption response in the seed's schema (as the relay builds them)."""
    words = (text or f"caption number {n}").split()
    start, end = float(n), float(n) + 1.0
    speaker = str(uuid.uuid5(NS, "speaker"))
    step = (end - start) / max(1, len(words))
    items = [
        {"start": start + i * step, "end": start + (i + 1) * step, "kind": "text", "value": w, "speaker_id": speaker}
        for i, w in enumerate(words)
    ]
    epoch = 1_700_000_000.0 + start
    return {
        "response": {
            "id": str(uuid.uuid5(NS, f"{task_id}:{kind}:{n}")),
            "type": kind,
            "service_type": "transcription",
            "language_code": "en-US",
            "start": start,
            "end": end,
            "start_pts": start,
            "start_epoch": epoch,
            "is_final": True,
            "is_end_of_stream": eos,
            "speakers": [{"id": speaker, "label": None}],
            "alternatives": [
                {
                    "transcript": " ".join(words),
                    "start": start,
                    "end": end,
                    "start_pts": start,
                    "start_epoch": epoch,
                    "items": items,
                }
            ],
        }
    }


def add_caption(
    client: redis.Redis,
    event_id: str,
    task_id: str,
    n: int,
    kind: str = "captions",
    eos: bool = False,
    text: str | None = None,
) -> str:
    """XADD one caption entry (shared.streams.CaptionEntry); returns the stream id."""
    body = json.dumps(response(task_id, n, kind, eos, text))
    entry = CaptionEntry(json=body, kind=kind, eos=eos, created=time.time())
    sid = client.xadd(keys.captions(event_id, task_id), entry.fields())
    return sid.decode() if isinstance(sid, bytes) else sid


def stream_ids_by_response(client: redis.Redis, event_id: str, task_id: str) -> dict[str, str]:
    """response.id → stream id, for every entry of the task's stream."""
    out = {}
    for sid, fields in client.xrange(keys.captions(event_id, task_id)):
        doc = json.loads(fields[b"json"])
        out[doc["response"]["id"]] = sid.decode()
    return out


def sid_key(sid: str) -> tuple[int, int]:
    ms, _, seq = sid.partition("-")
    return int(ms), int(seq)


def check_schema(doc: Any) -> None:
    """Assert a frame follows the seed's "Websocket response - schema" exactly (and passes the
    caption-client emulator's validator too)."""
    from emulators.caption_schema import validate_response

    assert validate_response(doc) == []
    assert set(doc) == {"response"}
    r = doc["response"]
    assert set(r) == {
        "id",
        "type",
        "service_type",
        "language_code",
        "start",
        "end",
        "start_pts",
        "start_epoch",
        "is_final",
        "is_end_of_stream",
        "speakers",
        "alternatives",
    }
    uuid.UUID(r["id"])
    assert r["type"] in ("transcript", "captions")
    assert r["service_type"] in ("transcription", "translation")
    assert isinstance(r["language_code"], str) and r["language_code"]
    for f in ("start", "end", "start_pts", "start_epoch"):
        assert isinstance(r[f], float)
    assert isinstance(r["is_final"], bool) and isinstance(r["is_end_of_stream"], bool)
    for s in r["speakers"]:
        assert set(s) == {"id", "label"}
        uuid.UUID(s["id"])
    assert r["alternatives"]
    speaker_ids = {s["id"] for s in r["speakers"]}
    for alt in r["alternatives"]:
        assert set(alt) == {"transcript", "start", "end", "start_pts", "start_epoch", "items"}
        assert alt["start"] == r["start"] and alt["end"] == r["end"]
        for item in alt["items"]:
            assert set(item) == {"start", "end", "kind", "value", "speaker_id"}
            assert item["kind"] in ("text", "punct")
            assert item["speaker_id"] in speaker_ids
    if r["type"] == "captions":
        assert r["is_final"] is True and len(r["alternatives"]) == 1
