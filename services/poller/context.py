"""What every poller task body needs: Redis, the Kaltura facade, settings, public endpoints, the
sealer of task accessKeys."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from services.poller.sealing import Sealer
from services.poller.store import CheckLock, ProvisionLock
from shared import keys
from shared.kaltura import KalturaFacade
from shared.settings import CommonSettings, KalturaSettings, PollerSettings


@dataclass
class Context:
    redis: redis.Redis
    kaltura: KalturaFacade
    kaltura_settings: KalturaSettings
    poller: PollerSettings
    media_url: str  # INGEST_PUBLIC_URL: every task's mediaUrl
    caption_url: str  # GATEWAY_PUBLIC_URL: every task's captionUrl
    # REACHLIVE_INGEST_WINDOW_MARGIN_SECONDS: the ingest accepts media this long after a window's
    # end; a window has passed for the poller only after it (services/poller/window.py).
    window_margin_seconds: float = 300.0
    # Seals each task's accessKey in its record (REACHLIVE_POLLER_ENCRYPTION_KEYS, sealing.py).
    sealer: Sealer = field(default_factory=Sealer.ephemeral)
    # Enqueue reach.provision for a task id under a given Celery task id (the lock holder). Ids
    # only (issue 19): the worker re-reads the job, accessKey included, from getJobs.
    send_provision: Callable[[str, str], None] = field(default=lambda task_id, holder: None)
    # Enqueue reach.check_event (event id, its live task ids, the status getJobs listed for those
    # it listed, lock holder, countdown seconds). No accessKey: the check reads the sealed one.
    send_check: Callable[[str, list[str], dict[str, int], str, float], None] = field(
        default=lambda event_id, task_ids, listed, holder, countdown: None
    )
    clock: Callable[[], float] = time.time
    # REACHLIVE_RETENTION_DAYS in seconds: how long an ended event's registry records (what a
    # captions export reads) and its tasks' usage records are kept.
    retention_seconds: int = field(default_factory=lambda: CommonSettings().retention_seconds)

    @property
    def lock_seconds(self) -> int:
        # Long enough to cover a retry's backoff (a retry keeps the lock: polls do not resend).
        return max(keys.PROVISION_LOCK_SECONDS, 2 * self.poller.retry_backoff_max_seconds + 30)

    def lock(self, task_id: str, holder: str) -> ProvisionLock:
        return ProvisionLock(self.redis, task_id, holder, self.lock_seconds)

    def check_lock(self, event_id: str, holder: str) -> CheckLock:
        # Two poll periods: a check still queued or running when the next poll comes is not
        # sent again; one lost with its worker (acks_late redelivers it anyway) is not stuck.
        return CheckLock(self.redis, event_id, holder, int(max(60.0, 2 * self.kaltura_settings.poll_seconds)))

    def expire_event_after(self, end: float) -> tuple[float, float]:
        """(when the event's records expire, when its media key / caption token lookups do),
        for an event whose window (post-end included) ends at ``end``."""
        return end + self.retention_seconds, end + min(self.retention_seconds, keys.KEY_INDEX_TTL_AFTER_END_SECONDS)

    def external_task_id(self, event_id: str | int, task_id: str) -> str:
        return f"{self.kaltura_settings.vendor_name}:{event_id}:{task_id}"
