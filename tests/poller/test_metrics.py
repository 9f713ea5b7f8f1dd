"""The poller's metrics move with the work: polls, outcomes, Kaltura latency and errors, sizes."""

from __future__ import annotations

from typing import Any

import redis
from prometheus_client import REGISTRY

from shared import commands
from shared.kaltura import errors
from shared.kaltura.models import SCHEDULED
from tests.kaltura.support import CAPTION, Admin, event_spec, translation, wait_for
from tests.poller.test_provision import wait_status


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_metrics(worker: Any, admin: Admin, send: Any, redis_client: redis.Redis) -> None:
    polls = value("reachlive_poller_polls_total", result="ok")
    scheduled = value("reachlive_poller_tasks_total", outcome="scheduled")
    refused = value("reachlive_poller_tasks_total", outcome="refused")
    calls = value(
        "reachlive_poller_kaltura_call_seconds_count", kaltura_service="reach_entryvendortask", action="getJobs"
    )
    lock_errors = value(
        "reachlive_poller_kaltura_errors_total",
        kaltura_service="schedule_scheduleevent",
        action="updateLiveFeature",
        code=errors.CANNOT_UPDATE_SCHEDULE_EVENT_FEATURE,
    )
    made = admin.create_event(**event_spec(CAPTION, translation("Dutch")))
    bad = admin.create_event(**event_spec({"feature": 8, "source_language": "Klingon"}))
    admin.fault(
        "schedule_scheduleevent",
        "updateLiveFeature",
        "error",
        code=errors.CANNOT_UPDATE_SCHEDULE_EVENT_FEATURE,
        count=1,
    )
    send(commands.POLL)
    wait_status(admin, made["task_ids"], SCHEDULED)
    wait_for(lambda: value("reachlive_poller_tasks_total", outcome="scheduled") == scheduled + 2)
    wait_for(lambda: value("reachlive_poller_tasks_total", outcome="refused") == refused + 1)
    assert int(admin.task(bad["task_ids"][0])["status"]) == 6
    assert value("reachlive_poller_polls_total", result="ok") == polls + 1
    # The poll's, then one per provision run (issue 19: the message carries the id, the worker
    # reads the job and its accessKey itself): three tasks, one retried after the lock code.
    assert (
        value("reachlive_poller_kaltura_call_seconds_count", kaltura_service="reach_entryvendortask", action="getJobs")
        == calls + 1 + 4
    )
    assert (
        value(
            "reachlive_poller_kaltura_errors_total",
            kaltura_service="schedule_scheduleevent",
            action="updateLiveFeature",
            code=errors.CANNOT_UPDATE_SCHEDULE_EVENT_FEATURE,
        )
        == lock_errors + 1
    )
    send(commands.POLL)  # the registry sizes are measured by reconcile
    wait_for(lambda: value("reachlive_poller_registry_tasks") == 2)
    assert value("reachlive_poller_registry_events") == 1
    assert value("reachlive_poller_jobs_listed", status="scheduled") == 2


def test_overdue_gauge(worker: Any, admin: Admin, send: Any) -> None:
    import time

    late = admin.create_event(**event_spec(CAPTION, start=time.time() - 600))  # started 10 min ago, no media
    admin.create_event(**event_spec(CAPTION))  # starts in an hour
    send(commands.POLL)
    wait_for(lambda: int(admin.task(late["task_ids"][0])["status"]) == SCHEDULED)

    def measured() -> bool:
        send(commands.POLL)  # the gauge is set by each reconcile
        time.sleep(0.3)
        return value("reachlive_poller_tasks_overdue") == 1

    wait_for(measured)
