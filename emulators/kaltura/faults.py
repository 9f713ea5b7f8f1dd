"""Faults on demand and the record of every call (issue 3: "inject faults (5xx, slow replies,
CANNOT_UPDATE_SCHEDULE_EVENT_FEATURE), and it records every call").

A fault matches a service and action (``*`` for any; case-insensitive) and optionally parameter
values (``match``: ``{"id": "464420602"}``), and hits the next ``count`` matching calls
(``count`` 0: every call until cleared). Kinds:
- ``http500``: an HTTP error status (``status``, default 500) with an HTML body, as a proxy sends;
- ``delay``: the reply comes ``delay`` seconds late (then the call runs normally);
- ``error``: a KalturaAPIException ``code`` with HTTP 200, and the call has no effect;
- ``reset``: the connection is closed without a reply.
"""

from __future__ import annotations

import threading
from typing import Any

from emulators.kaltura.wire import NULL, flat

KINDS = ("http500", "delay", "error", "reset")
SECRET_KEYS = {"ks", "secret", "tokenhash", "accesskey", "captiontoken", "mediakey", "token", "password"}
MASK = "***"


def mask(params: Any) -> Any:
    """A copy of nested params with every secret value replaced (docs/design.md section 8: no secret in records)."""
    if isinstance(params, dict):
        return {
            k: (MASK if str(k).lower() in SECRET_KEYS and v not in (None, NULL, "") else mask(v))
            for k, v in params.items()
        }
    if params is NULL:
        return None
    return params


class FaultBook:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[dict[str, Any]] = []
        self._next = 1

    def add(
        self,
        service: str = "*",
        action: str = "*",
        kind: str = "error",
        code: str | None = None,
        delay: float = 0.0,
        count: int = 1,
        status: int = 500,
        match: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        if kind not in KINDS:
            raise ValueError(f"fault kind must be one of {KINDS}")
        if kind == "error" and not code:
            raise ValueError("an error fault needs a code")
        with self._lock:
            fault = {
                "id": self._next,
                "service": (service or "*").lower(),
                "action": (action or "*").lower(),
                "kind": kind,
                "code": code,
                "delay": float(delay or 0),
                "count": int(count),
                "status": int(status),
                "match": {str(k): str(v) for k, v in (match or {}).items()},
                "hits": 0,
            }
            self._next += 1
            self._faults.append(fault)
            return dict(fault)

    def take(self, service: str, action: str, params: dict[str, Any]) -> dict[str, Any] | None:
        """The first fault matching this call, counted as used."""
        service, action = service.lower(), action.lower()
        with self._lock:
            for fault in self._faults:
                if fault["service"] not in ("*", service) or fault["action"] not in ("*", action):
                    continue
                if fault["match"]:
                    flat_params = flat(params)
                    if any(str(flat_params.get(k)) != v for k, v in fault["match"].items()):
                        continue
                fault["hits"] += 1
                if fault["count"] > 0:
                    fault["count"] -= 1
                    if fault["count"] == 0:
                        self._faults.remove(fault)
                return dict(fault)
        return None

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(f) for f in self._faults]

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()


class CallLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[dict[str, Any]] = []

    def add(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._calls.append(record)

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(c) for c in self._calls]

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()
