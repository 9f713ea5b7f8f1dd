"""The Kaltura caption WebSocket response schema, checked independently of our own builder
(from the seed, "Websocket response - schema" and "fields description"), so the emulated
Kaltura client catches what our library gets wrong instead of agreeing with it."""

from __future__ import annotations

import uuid
from typing import Any

_NUM = (int, float)
_TOP = {
    "id": str,
    "type": str,
    "service_type": str,
    "language_code": str,
    "start": _NUM,
    "end": _NUM,
    "start_pts": _NUM,
    "start_epoch": _NUM,
    "is_final": bool,
    "is_end_of_stream": bool,
    "speakers": list,
    "alternatives": list,
}
_ALT = {"transcript": str, "start": _NUM, "end": _NUM, "start_pts": _NUM, "start_epoch": _NUM, "items": list}
_ITEM = {"start": _NUM, "end": _NUM, "kind": str, "value": str, "speaker_id": str}


def _fields(obj: Any, spec: dict[str, Any], where: str, errors: list[str]) -> bool:
    if not isinstance(obj, dict):
        errors.append(f"{where}: not an object")
        return False
    for name, kind in spec.items():
        if name not in obj:
            errors.append(f"{where}.{name}: missing")
        elif isinstance(obj[name], bool) and kind is not bool:
            errors.append(f"{where}.{name}: boolean where {kind} expected")
        elif not isinstance(obj[name], kind):
            errors.append(f"{where}.{name}: {type(obj[name]).__name__}, expected {kind}")
    extra = set(obj) - set(spec)
    if extra:
        errors.append(f"{where}: unknown fields {sorted(extra)}")
    return not errors


def _uuid(value: Any, where: str, errors: list[str]) -> None:
    try:
        uuid.UUID(str(value))
    except ValueError:
        errors.append(f"{where}: not a UUID")


def validate_response(doc: Any) -> list[str]:
    """Every way ``doc`` departs from the seed's schema (empty list: valid)."""
    errors: list[str] = []
    if not isinstance(doc, dict) or set(doc) != {"response"}:
        return ["root: expected exactly {'response': {...}}"]
    r = doc["response"]
    if not _fields(r, _TOP, "response", errors):
        return errors
    _uuid(r["id"], "response.id", errors)
    if r["type"] not in ("transcript", "captions"):
        errors.append(f"response.type: {r['type']!r}")
    if r["service_type"] not in ("transcription", "translation"):
        errors.append(f"response.service_type: {r['service_type']!r}")
    if not r["language_code"]:
        errors.append("response.language_code: empty")
    if r["end"] < r["start"]:
        errors.append("response: end before start")
    if r["type"] == "captions" and not r["is_final"]:
        errors.append("response.is_final: captions are always final")
    speakers = set()
    for i, sp in enumerate(r["speakers"]):
        if _fields(sp, {"id": str, "label": (str, type(None))}, f"response.speakers[{i}]", errors):
            _uuid(sp["id"], f"response.speakers[{i}].id", errors)
            speakers.add(sp["id"])
    if not r["alternatives"]:
        errors.append("response.alternatives: at least one alternative is always returned")
    if r["type"] == "captions" and len(r["alternatives"]) != 1:
        errors.append("response.alternatives: captions have exactly one alternative")
    for i, alt in enumerate(r["alternatives"]):
        where = f"response.alternatives[{i}]"
        if not _fields(alt, _ALT, where, errors):
            continue
        for name in ("start", "end", "start_pts", "start_epoch"):
            if alt[name] != r[name]:
                errors.append(f"{where}.{name}: differs from response.{name}")
        for j, item in enumerate(alt["items"]):
            iw = f"{where}.items[{j}]"
            if not _fields(item, _ITEM, iw, errors):
                continue
            if item["kind"] not in ("text", "punct"):
                errors.append(f"{iw}.kind: {item['kind']!r}")
            if item["end"] < item["start"]:
                errors.append(f"{iw}: end before start")
            if item["speaker_id"] not in speakers:
                errors.append(f"{iw}.speaker_id: not one of response.speakers")
    return errors
