"""A small client of the Kaltura emulator's admin surface (``/admin/...``), used by the demo,
the end-to-end tests and the pipeline benchmark to play the Kaltura customer's part."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any


class KalturaAdmin:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else (b"{}" if method == "POST" else None)
        req = urllib.request.Request(
            f"{self.url}/admin/{path}", data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"null")

    def create_event(self, **spec: Any) -> dict[str, Any]:
        return self._call("POST", "events", spec)

    def event(self, event_id: int | str) -> dict[str, Any]:
        return self._call("GET", f"events/{event_id}")

    def task(self, task_id: int | str) -> dict[str, Any]:
        return self._call("GET", f"tasks/{task_id}")

    def abort(self, task_id: int | str) -> dict[str, Any]:
        return self._call("POST", f"tasks/{task_id}/abort")

    def add_task(
        self,
        event_id: int | str,
        feature: int = 11,
        source_language: str = "English",
        target_language: str | None = None,
        **order: Any,
    ) -> str:
        """A late order on an existing (possibly live) event: a PENDING task with its own live
        caption feature; returns the new task id. ``order`` as a task of ``create_event``
        (``pre_start``, ``post_end``, ``status``, ``language``, ``feature_present``, ...)."""
        body = {"feature": feature, "source_language": source_language, **order}
        if target_language is not None:
            body["target_language"] = target_language
        return str(self._call("POST", f"events/{event_id}/tasks", body)["task_id"])

    def move_window(self, event_id: int | str, start: float | None, end: float | None) -> dict[str, Any]:
        """Reschedule the event, also while live (None keeps that date); its tasks' dates follow."""
        body = {k: int(v) for k, v in (("start", start), ("end", end)) if v is not None}
        return self._call("POST", f"events/{event_id}/window", body)

    def end_window(self, event_id: int | str, at: float | None = None) -> dict[str, Any]:
        """The Kaltura admin ends the event: its window's end moves to ``at`` (default now). An
        event that would end before (or as) it starts starts a second before ``at`` (a window
        needs end > start), e.g. one ordered and ended within the same second."""
        end = int(time.time() if at is None else at)
        start = int(self.event(event_id)["startDate"])
        return self.move_window(event_id, min(start, end - 1), end)

    def calls(self) -> list[dict[str, Any]]:
        return self._call("GET", "calls")

    def features(self, event_id: int | str) -> dict[str, dict[str, Any]]:
        """Task id → its live caption feature (mediaUrl, mediaKey, captionUrl, captionToken, ...)."""
        out = {}
        for feature in self.event(event_id).get("liveFeatures", []):
            out[feature["systemName"].rsplit("-", 1)[-1]] = feature
        return out

    def wait_status(self, task_ids: list[str], statuses: set[int], timeout: float) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        while True:
            got = {t: int(self.task(t)["status"]) for t in task_ids}
            if all(s in statuses for s in got.values()) or time.monotonic() > deadline:
                return got
            time.sleep(0.25)
