"""The emulator's world: partners, scheduled events, REACH tasks, catalog items, reach profiles,
sessions, and the admin operations that play the Kaltura customer's part (create an order, add a
late order to an existing event, abort it, delete it, move the event's window).

All access goes through ``KalturaState.lock`` (the HTTP server is threaded).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from emulators.kaltura.errors import KalturaAPIError, api_error
from emulators.kaltura.languages import language_code
from emulators.kaltura.model import (
    ABORTED,
    DEFAULT_REACH_PROFILE,
    ERROR,
    FEATURE_PREFIX,
    FINAL,
    LIVE_CAPTION,
    LIVE_TRANSLATION,
    READY,
    CatalogItem,
    Event,
    ReachProfile,
    Task,
    entry_id,
)
from emulators.kaltura.sessions import SessionStore

DEFAULT_CUSTOMER_PARTNER = 5831172
STATUS_NAMES = {1: "PENDING", 2: "READY", 3: "PROCESSING", 4: "PENDING_MODERATION", 5: "REJECTED",
                6: "ERROR", 7: "ABORTED", 8: "PENDING_ENTRY_READY", 9: "SCHEDULED"}  # fmt: skip
log = logging.getLogger("emulators.kaltura")


class AdminError(Exception):
    """An admin request that cannot be done (HTTP 4xx on the admin surface)."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class KalturaState:
    def __init__(
        self,
        partner_id: int,
        admin_secret: str,
        *,
        app_tokens: dict[str, str] | None = None,
        ks_expiry_seconds: int = 86400,
        access_key_expiry_seconds: int = 7 * 86400,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lock = threading.RLock()
        self.partner_id = int(partner_id)
        self.admin_secret = admin_secret
        self.app_tokens = dict(app_tokens or {})
        self.ks_expiry_seconds = int(ks_expiry_seconds)
        self.access_key_expiry_seconds = int(access_key_expiry_seconds)
        self.clock = clock
        self.sessions = SessionStore(self.partner_id, admin_secret)
        # How updateLiveFeature reports a missing feature or event. "wrapped" is the server's
        # current code: it catches FEATURE_NAME_NOT_FOUND / INVALID_OBJECT_ID inside its lock and
        # rethrows CANNOT_UPDATE_SCHEDULE_EVENT_FEATURE (facts.md); "unwrapped" returns the inner code.
        self.feature_errors = "wrapped"
        # What a task's accessKey reaches: "task" (its own task and event) or "partner" (every task and
        # event of its customer partner, as a partner-wide REACH vendor role KS would).
        self.access_key_scope = "task"
        self.reset()

    def reset(self) -> None:
        """Empty state. Vendor sessions survive (a running poller keeps its KS); access keys do not."""
        with self.lock:
            self.events: dict[int, Event] = {}
            self.tasks: dict[str, Task] = {}
            self.catalog: dict[int, CatalogItem] = {}
            self.profiles: dict[int, ReachProfile] = {}
            self.next_event_id = 58812112
            self.next_task_id = 464420602
            self.next_catalog_id = 33962
            self.next_profile_id = 287163
            self.sessions.drop_access_keys()

    def now(self) -> int:
        return int(self.clock())

    # ------------------------------------------------------------------ admin: the customer's part

    def create_event(self, spec: dict[str, Any]) -> dict[str, Any]:
        """A scheduled live event with one REACH task (and one live caption feature) per order."""
        with self.lock:
            now = self.now()
            start = int(spec.get("start", now + 3600))
            end = int(spec.get("end", start + 3600))
            if end <= start:
                raise AdminError(400, "end must be after start")
            pre_start, post_end = int(spec.get("pre_start", 0)), int(spec.get("post_end", 0))
            partner_id = int(spec.get("partner_id", DEFAULT_CUSTOMER_PARTNER))
            event = Event(
                id=self._take("event"),
                partner_id=partner_id,
                summary=str(spec.get("summary", "test townhall")),
                start=start,
                end=end,
                entry_id=str(spec.get("entry_id") or entry_id()),
                created_at=now,
                pre_start=pre_start,
                post_end=post_end,
                description=str(spec.get("description", "")),
            )
            profile = ReachProfile(
                self._take("profile"), partner_id, {**DEFAULT_REACH_PROFILE, **dict(spec.get("reach_profile") or {})}
            )
            self.profiles[profile.id] = profile
            self.events[event.id] = event
            task_ids = []
            for order in spec.get("tasks") or [{"feature": LIVE_CAPTION, "source_language": "English"}]:
                task = self._add_task(event, profile, dict(order), spec, now)
                task_ids.append(task.id)
            return {"event_id": event.id, "entry_id": event.entry_id, "task_ids": task_ids}

    def add_task(self, event_id: int | str, order: dict[str, Any]) -> dict[str, Any]:
        """A late order: one more REACH task on an existing (possibly live) event, as a customer
        ordering e.g. a translation mid-event. Like an order placed with the event: a PENDING task
        (listed by getJobs) with its own ``LiveCaptionFeature-reach-<taskId>`` (facts.md), its
        dates the event's window with the order's buffers (default: the event's)."""
        with self.lock:
            event = self.event_or_404(event_id)
            if int(order.get("feature", LIVE_CAPTION)) == LIVE_TRANSLATION and not order.get("target_language"):
                raise AdminError(400, "a live translation task needs target_language")
            # The event's reach profile (the one its first order used); a new one if it has none.
            profile = next(
                (self.profiles[t.reach_profile_id] for t in self.tasks.values()
                 if t.event_id == event.id and t.reach_profile_id in self.profiles),
                None,
            )  # fmt: skip
            if profile is None:
                profile = ReachProfile(self._take("profile"), event.partner_id, dict(DEFAULT_REACH_PROFILE))
                self.profiles[profile.id] = profile
            now = self.now()
            task = self._add_task(event, profile, dict(order), {"pre_start": event.pre_start,
                                                                "post_end": event.post_end}, now)  # fmt: skip
            if order.get("feature_present", True):
                event.updated_at = now
            return {"event_id": event.id, "task_id": task.id, "feature": event.feature(FEATURE_PREFIX + task.id)}

    def _add_task(self, event: Event, profile: ReachProfile, order: dict[str, Any], spec: dict[str, Any], now: int):
        feature = int(order.get("feature", LIVE_CAPTION))
        source = str(order.get("source_language", "English"))
        target = order.get("target_language")
        if feature == LIVE_TRANSLATION and not target:
            raise AdminError(400, "a live translation task needs target_language")
        pre = int(order.get("pre_start", spec.get("pre_start", 0)))
        post = int(order.get("post_end", spec.get("post_end", 0)))
        item = CatalogItem(
            id=self._take("catalog"),
            vendor_partner_id=self.partner_id,
            service_feature=feature,
            source_language=source,
            target_language=str(target) if target else None,
            created_at=now,
            service_type=int(order.get("service_type", 2)),
            duration_limit=int(order.get("duration_limit", spec.get("duration_limit", 480))),
            minimal_order_time=int(order.get("minimal_order_time", 30)),
            minimal_refund_time=int(order.get("minimal_refund_time", 30)),
            start_time_buffer=pre or None,
            end_time_buffer=post or None,
        )
        self.catalog[item.id] = item
        task = Task(
            id=str(self._take("task")),
            partner_id=event.partner_id,
            vendor_partner_id=self.partner_id,
            event_id=event.id,
            entry_id=event.entry_id,
            catalog_item_id=item.id,
            reach_profile_id=profile.id,
            service_feature=feature,
            created_at=now,
            start=event.start - pre,
            end=event.end + post,
            user_id=str(order.get("user_id", "test@test.com")),
            status=int(order.get("status", 1)),
            service_type=item.service_type,
        )
        task.access_key = self._new_access_key(task)
        self.tasks[task.id] = task
        if order.get("feature_present", True):
            # facts.md: one KalturaLiveCaptionFeature per task, captions and translations alike;
            # language = source for captions, target for translations.
            lang = order.get("language") or language_code(str(target) if feature == LIVE_TRANSLATION else source)
            event.features.append(
                {
                    "systemName": FEATURE_PREFIX + task.id,
                    "preStartTime": event.start - task.start,
                    "postEndTime": task.end - event.end,
                    "language": str(lang),
                    "objectType": "KalturaLiveCaptionFeature",
                }
            )
        return task

    def _take(self, kind: str) -> int:
        attr = f"next_{kind}_id"
        value = getattr(self, attr)
        setattr(self, attr, value + 1)
        return value

    def _new_access_key(self, task: Task) -> str:
        session = self.sessions.issue(
            "access_key",
            task.partner_id,
            self.now() + self.access_key_expiry_seconds,
            session_type=0,
            privileges=f"setrole:REACH_VENDOR_ROLE,sview:{task.entry_id},reachTaskId:{task.id}",
            task_id=task.id,
            event_id=task.event_id,
        )
        return session.ks

    def event_or_404(self, event_id: int | str) -> Event:
        event = self.events.get(_int(event_id))
        if event is None:
            raise AdminError(404, f"no event {event_id}")
        return event

    def task_or_404(self, task_id: int | str) -> Task:
        task = self.tasks.get(str(task_id))
        if task is None:
            raise AdminError(404, f"no task {task_id}")
        return task

    def admin_event(self, event_id: int | str) -> dict[str, Any]:
        with self.lock:
            return self.event_or_404(event_id).render()

    def admin_task(self, task_id: int | str) -> dict[str, Any]:
        with self.lock:
            return self.task_or_404(task_id).render()

    def admin_tasks(self) -> list[dict[str, Any]]:
        with self.lock:
            return [t.render() for t in self.tasks.values()]

    def abort(self, task_id: int | str) -> dict[str, Any]:
        """The customer cancels the order: ABORTED, and Kaltura removes the task's feature.
        (Kaltura's own abort action allows only PENDING_MODERATION/PENDING/SCHEDULED; this test hook
        also aborts a PROCESSING task, the case of an order cancelled during the event.)"""
        with self.lock:
            task = self.task_or_404(task_id)
            if task.status in FINAL:
                err = api_error("CANNOT_UPDATE_STATUS_OF_TASK_WHICH_IS_IN_FINAL_STATE", task.id, task.status, ABORTED)
                raise AdminError(409, err.message, err.code)
            self.set_status(task, ABORTED)
            return task.render()

    def admin_set_status(self, task_id: int | str, status: int) -> dict[str, Any]:
        """Force a status (e.g. PENDING_MODERATION), with the side effects of that status."""
        with self.lock:
            task = self.task_or_404(task_id)
            self.set_status(task, int(status))
            return task.render()

    def delete(self, task_id: int | str, remove_feature: bool = False) -> dict[str, Any]:
        """The task vanishes: ENTRY_VENDOR_TASK_NOT_FOUND from then on (its feature stays unless asked)."""
        with self.lock:
            task = self.task_or_404(task_id)
            del self.tasks[task.id]
            if remove_feature:
                self.remove_feature(task)
            return {"deleted": task.id}

    def admin_remove_feature(self, task_id: int | str) -> dict[str, Any]:
        """The task's live feature disappears while the task stays (FEATURE_NAME_NOT_FOUND case)."""
        with self.lock:
            task = self.task_or_404(task_id)
            if not self.remove_feature(task):
                raise AdminError(404, f"task {task.id} has no live feature")
            return self.events[task.event_id].render()

    def move_window(self, event_id: int | str, start: int | None, end: int | None) -> dict[str, Any]:
        """The customer reschedules the event (also while it is live: extend it, shorten it, end
        it now): its dates and its tasks' taskJobData move; None keeps that date."""
        with self.lock:
            event = self.event_or_404(event_id)
            start = event.start if start is None else int(start)
            end = event.end if end is None else int(end)
            if end <= start:
                raise AdminError(400, "end must be after start")
            now = self.now()
            for task in self.tasks.values():
                if task.event_id == event.id:
                    # facts.md: preStartTime = event start − task start, postEndTime = task end −
                    # event end; the buffers stay, the dates move with the window. A task whose
                    # feature is gone (ERROR, ABORTED) keeps its own buffers.
                    feature = event.feature(FEATURE_PREFIX + task.id) or {}
                    pre = int(feature.get("preStartTime", event.start - task.start))
                    post = int(feature.get("postEndTime", task.end - event.end))
                    task.start, task.end = start - pre, end + post
                    task.updated_at = now
            event.start, event.end = start, end
            event.updated_at = now
            event.sequence += 1
            return event.render()

    def expire_sessions(self, kind: str | None = None, task_id: str | None = None) -> dict[str, Any]:
        with self.lock:
            return {"expired": self.sessions.expire(self.clock(), kind, task_id)}

    def configure(self, options: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            if "feature_errors" in options:
                if options["feature_errors"] not in ("wrapped", "unwrapped"):
                    raise AdminError(400, "feature_errors is wrapped or unwrapped")
                self.feature_errors = options["feature_errors"]
            if "access_key_scope" in options:
                if options["access_key_scope"] not in ("task", "partner"):
                    raise AdminError(400, "access_key_scope is task or partner")
                self.access_key_scope = options["access_key_scope"]
            if "ks_expiry_seconds" in options:
                self.ks_expiry_seconds = int(options["ks_expiry_seconds"])
            if "access_key_expiry_seconds" in options:
                self.access_key_expiry_seconds = int(options["access_key_expiry_seconds"])
            return {
                "feature_errors": self.feature_errors,
                "access_key_scope": self.access_key_scope,
                "ks_expiry_seconds": self.ks_expiry_seconds,
                "access_key_expiry_seconds": self.access_key_expiry_seconds,
            }

    # ------------------------------------------------------------------ shared rules

    def set_status(self, task: Task, status: int) -> None:
        """A status change with Kaltura's side effects (facts.md): the accessKey is invalidated at
        READY; the task's live feature is removed at ERROR or ABORTED."""
        if status == task.status:
            return
        log.info(
            "Kaltura EMULATOR: task %s %s -> %s",
            task.id,
            STATUS_NAMES.get(task.status, task.status),
            STATUS_NAMES.get(status, status),
            extra={"task_id": task.id, "event_id": task.event_id},
        )
        task.status = status
        now = self.now()
        task.updated_at = now
        if status in FINAL:
            task.finish_time = now
        if status == READY:
            self.sessions.revoke_task(task.id)
        if status in (ERROR, ABORTED):
            self.remove_feature(task)

    def remove_feature(self, task: Task) -> bool:
        event = self.events.get(task.event_id)
        if event is None:
            return False
        name = FEATURE_PREFIX + task.id
        before = len(event.features)
        event.features = [f for f in event.features if f.get("systemName") != name]
        if len(event.features) != before:
            event.updated_at = self.now()
            return True
        return False

    def extend_access_key(self, task: Task) -> None:
        task.access_key = self._new_access_key(task)
        task.updated_at = self.now()

    def task_for(self, task_id: Any, code_if_missing: str = "ENTRY_VENDOR_TASK_NOT_FOUND") -> Task:
        task = self.tasks.get(str(task_id).strip()) if task_id is not None else None
        if task is None:
            raise api_error(code_if_missing, task_id)
        return task


def _int(value: Any) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        return -1


__all__ = ["AdminError", "KalturaAPIError", "KalturaState"]
