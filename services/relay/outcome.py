"""How one KWIKmotion connection ended, and what the session does next (DESIGN section 4).

``Connection.run`` returns an :class:`Outcome`; ``EventSession`` acts on its :class:`Kind`:
finish the event, reconnect (with backoff, or slowly for a configuration fault), fail the
tasks, or re-read the registry. ``cause`` is the reconnect cause used as a metrics label.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(enum.StrEnum):
    FINISHED = "finished"  # EndOfTranscript after the audio's end of stream
    RETRY = "retry"  # a drop, 1011, 1008 at capacity, a silent peer, a timeout, Redis
    CONFIG = "config"  # authentication refused: alert, retry slowly
    PERMANENT = "permanent"  # the same request would fail again: tasks → ERROR
    CANCELLED = "cancelled"  # every task (or the event) was cancelled
    FENCED = "fenced"  # another relay owns the session now


@dataclass(slots=True)
class Outcome:
    kind: Kind
    cause: str = ""  # reconnect cause (metrics label)
    code: str = ""
    reason: str = ""


def close_cause(code: int, reason: str) -> str:
    """The reconnect cause of a WebSocket close (metrics label)."""
    if code == 1011 and "keepalive" in reason.lower():
        return "silent"
    return {1006: "drop", 1011: "internal_error", 1008: "capacity", 1000: "closed", 1001: "closed"}.get(code, "other")


def error_cause(code: int | None) -> str:
    """The reconnect cause of a KWIKmotion Error message (metrics label)."""
    return {1011: "internal_error", 1008: "capacity"}.get(code or 0, "error")
