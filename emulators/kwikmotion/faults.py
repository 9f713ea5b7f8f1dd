"""Faults the KWIKmotion emulator injects on demand (docs/design.md section 4, issue 6).

``*_after_chunks = N``: the fault fires in a session right after its N-th audio chunk has been
answered (AudioAdded, AddTranscript, AddTranslations); later chunks of that session are not
answered. ``refuse_auth`` (401 or 403) fires at connect in place of a valid token's acceptance,
``refuse_capacity`` at connect after authentication, ``refuse_language`` (ISO codes, comma
separated) at a StartRecognition naming one of them as source or target (issue 16: refusals on
demand). Each fires on ``count`` sessions (default 1) and then clears itself, unless
``persistent`` (then until cleared). ``delay_seconds`` holds every reply that long for as long as
it is set.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields
from typing import Any

_FIRING = (
    "drop_after_chunks", "error_1011_after_chunks", "silent_after_chunks", "refuse_capacity", "refuse_auth",
    "refuse_language",
)  # fmt: skip
_NULLABLE = tuple(name for name in _FIRING if name != "refuse_capacity")
REFUSE_AUTH_CODES = (401, 403)


@dataclass
class Faults:
    drop_after_chunks: int | None = None  # abort the TCP connection (no close frame)
    delay_seconds: float = 0.0  # hold every reply
    error_1011_after_chunks: int | None = None  # Error internal_error, close 1011
    refuse_capacity: bool = False  # Error policy_violation, close 1008, at connect
    silent_after_chunks: int | None = None  # stop answering anything, pongs included
    refuse_auth: int | None = None  # 401 token_expired / 403 Insufficient permissions, at connect
    refuse_language: str | None = None  # "fr" or "fr,de": 4004 invalid_model at StartRecognition
    count: int = 1
    persistent: bool = False
    fired: dict[str, int] = field(default_factory=dict)  # name → firings so far (toward count)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def due(self, name: str, chunks: int | None = None) -> bool:
        """Fire ``name`` now if it is armed (and, for chunk faults, ``chunks`` reached it)."""
        with self._lock:
            value = getattr(self, name)
            if value is None or value is False:
                return False
            if chunks is not None and chunks < value:
                return False
            if not self.persistent:
                self.fired[name] = self.fired.get(name, 0) + 1
                if self.fired[name] >= max(1, self.count):
                    setattr(self, name, False if name == "refuse_capacity" else None)
                    self.fired.pop(name)
            return True

    def update(self, values: dict[str, Any]) -> None:
        """Set fields from a dict of already-typed values (unknown names raise KeyError)."""
        names = {f.name for f in fields(self)} - {"fired", "_lock"}
        for key in values:
            if key not in names:
                raise KeyError(key)
        with self._lock:
            for key, value in values.items():
                setattr(self, key, value)
                if key in _FIRING:
                    self.fired.pop(key, None)

    def clear(self) -> None:
        self.update(dict.fromkeys(_NULLABLE))
        self.update({"refuse_capacity": False, "delay_seconds": 0.0, "count": 1, "persistent": False})

    def refused_language(self, languages: list[str]) -> str | None:
        """The first of ``languages`` the ``refuse_language`` fault names (consumes one firing)."""
        armed = set((self.refuse_language or "").split(",")) - {""}
        hit = next((code for code in languages if code in armed), None)
        return hit if hit is not None and self.due("refuse_language") else None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "_lock"}


def parse_fault_query(params: dict[str, str]) -> dict[str, Any]:
    """Admin query parameters → typed fault values ("none" or "" clears a chunk fault)."""
    out: dict[str, Any] = {}
    for key, raw in params.items():
        low = raw.strip().lower()
        if key in ("drop_after_chunks", "error_1011_after_chunks", "silent_after_chunks"):
            out[key] = None if low in ("", "none", "null") else int(low)
            if out[key] is not None and out[key] < 1:
                raise ValueError(f"{key} must be at least 1")
        elif key == "delay_seconds":
            out[key] = float(low)
            if not 0 <= out[key] <= 3600:
                raise ValueError("delay_seconds must be within 0..3600")
        elif key == "refuse_auth":
            out[key] = None if low in ("", "none", "null") else int(low)
            if out[key] is not None and out[key] not in REFUSE_AUTH_CODES:
                raise ValueError("refuse_auth must be 401 or 403")
        elif key == "refuse_language":
            codes = [c.strip() for c in raw.split(",") if c.strip()]
            out[key] = None if low in ("", "none", "null") else ",".join(codes)
        elif key == "count":
            out[key] = int(low)
        elif key in ("refuse_capacity", "persistent"):
            if low not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(f"{key} must be true or false")
            out[key] = low in ("1", "true", "yes")
        else:
            raise KeyError(key)
    return out
