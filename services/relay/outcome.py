"""How one KWIKmotion connection ended, and what the session does next (docs/design.md section 4).

``Connection.run`` returns an :class:`Outcome`; ``EventSession`` acts on its :class:`Kind`:
finish the event, reconnect (with backoff, or slowly for a configuration fault), fail the
tasks, or re-read the registry. ``cause`` is the reconnect cause used as a metrics label.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

# Seed, "Error Codes": 4004 invalid_model, reason "Unsupported language: <code>".
_LANGUAGE = re.compile(r"language:\s*([A-Za-z]{2,3}(?:[-_][A-Za-z0-9]+)*)")


class Kind(enum.StrEnum):
    FINISHED = "finished"  # EndOfTranscript after the audio's end of stream
    RETRY = "retry"  # a drop, 1011, 1008 at capacity, a silent peer, a timeout, Redis
    CONFIG = "config"  # authentication refused: alert, retry slowly
    PERMANENT = "permanent"  # the same request would fail again: tasks → ERROR
    CANCELLED = "cancelled"  # every task (or the event) was cancelled
    FENCED = "fenced"  # another relay owns the session now
    GAP = "gap"  # a commit found the stored state behind it (a failover lost commits): restart
    IDLE = "idle"  # closed during a media pause; reopened when audio returns
    RETARGET = "retarget"  # a task joined the event: reconnect with its language
    LANGUAGE = "language"  # 4004 invalid_model: ``language`` says which (source or a target)


@dataclass(slots=True)
class Outcome:
    kind: Kind
    cause: str = ""  # reconnect cause (metrics label)
    code: str = ""
    reason: str = ""
    language: str = ""  # the language a 4004 names ("" when the reason does not say)


def close_cause(code: int, reason: str) -> str:
    """The reconnect cause of a WebSocket close (metrics label)."""
    if code == 1011 and "keepalive" in reason.lower():
        return "silent"
    return {1006: "drop", 1011: "internal_error", 1008: "capacity", 1000: "closed", 1001: "closed"}.get(code, "other")


def error_cause(code: int | None) -> str:
    """The reconnect cause of a KWIKmotion Error message (metrics label)."""
    return {1011: "internal_error", 1008: "capacity"}.get(code or 0, "error")


def refused_language(reason: str) -> str:
    """The language code a 4004 reason names ("" if none): the session's source language means
    the event cannot be served at all; a target language ends only that language's tasks."""
    m = _LANGUAGE.search(reason or "")
    return m.group(1) if m else ""
