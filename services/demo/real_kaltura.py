"""The demo against a real Kaltura partner: the order is placed by a person in KMC; the demo
waits until reachlive has provisioned it (SCHEDULED), then plays Kaltura's live side against the
endpoints reachlive wrote into the event's live features, read back with the task's accessKey."""

from __future__ import annotations

import time

from services.demo.scenario import FINAL, EventRun
from shared import redis_client, registry
from shared.kaltura.client import KalturaFacade
from shared.kaltura.models import SCHEDULED, feature_name
from shared.settings import KalturaSettings, load


def _facade() -> KalturaFacade:
    return KalturaFacade(load(KalturaSettings))


def wait_for_order(timeout: float) -> EventRun | None:
    facade = _facade()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = [j for j in facade.get_jobs((SCHEDULED,)) if j.scheduled_event_id]
        if jobs:
            first = jobs[0]
            siblings = [j for j in jobs if j.scheduled_event_id == first.scheduled_event_id]
            event = facade.get_schedule_event(first.scheduled_event_id, first.access_key, first.id)
            features = {f.system_name: f for f in event.features}
            run = EventRun(event_id=str(event.id), task_ids=[j.id for j in siblings])
            for job in siblings:
                f = features.get(feature_name(job.id))
                if f is None or not f.media_key:
                    break
                run.features[job.id] = {
                    "systemName": f.system_name,
                    "mediaUrl": f.media_url,
                    "mediaKey": f.media_key,
                    "captionUrl": f.caption_url,
                    "captionToken": f.caption_token,
                }
            else:
                return run
        time.sleep(5)
    return None


def wait_final(redis_url: str, run: EventRun, timeout: float) -> dict[str, int]:
    """Final statuses as reachlive set them in Kaltura (getJobs lists only PENDING/SCHEDULED
    tasks, so they are read from the registry, which the poller updates after each updateJob)."""
    deadline = time.monotonic() + timeout
    statuses: dict[str, int] = {}
    with redis_client.sync_client(redis_url) as client:
        while time.monotonic() < deadline:
            for task_id in run.task_ids:
                task = registry.read_task_sync(client, run.event_id, task_id)
                statuses[task_id] = task.status if task else 0
            if all(s in FINAL for s in statuses.values()):
                break
            time.sleep(1)
    return statuses
