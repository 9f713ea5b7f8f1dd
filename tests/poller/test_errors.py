"""What the poller does for every Kaltura error code a vendor meets (facts.md "Wire format"),
with a real Celery worker against the emulator's fault injection."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from shared import commands, keys, registry
from shared.kaltura import errors
from shared.kaltura.models import ERROR, PENDING, SCHEDULED
from tests.kaltura.support import CAPTION, Admin, event_spec, wait_for
from tests.poller.test_provision import wait_status


def _order(admin: Admin) -> tuple[str, str]:
    made = admin.create_event(**event_spec(CAPTION))
    return str(made["event_id"]), made["task_ids"][0]


def _no_keys(client: redis.Redis) -> bool:
    return not client.keys("rl:media-key:*") and not client.keys("rl:caption-token:*")


# Permanent codes while provisioning: the order is gone → cancel quietly; otherwise → ERROR once,
# with a reason that names the failed call and code (docs/design.md section 2, item 6).
@pytest.mark.parametrize(
    ("service", "action", "code", "expect"),
    [
        ("reach_entryvendortask", "get", errors.ENTRY_VENDOR_TASK_NOT_FOUND, "cancel"),
        ("schedule_scheduleevent", "get", errors.SCHEDULE_EVENT_ID_NOT_FOUND, "cancel"),
        ("schedule_scheduleevent", "updateLiveFeature", errors.FEATURE_NAME_NOT_FOUND, "cancel"),
        ("reach_entryvendortask", "updateJob", errors.CANNOT_UPDATE_STATUS_OF_TASK_WHICH_IS_IN_FINAL_STATE, "cancel"),
        ("reach_entryvendortask", "updateJob", errors.ENTRY_VENDOR_TASK_ITEM_COULD_NOT_BE_UPDATED, "error"),
        ("reach_entryvendortask", "get", errors.INVALID_OBJECT_ID, "error"),
        ("schedule_scheduleevent", "updateLiveFeature", errors.SERVICE_FORBIDDEN, "error"),
        ("reach_entryvendortask", "get", errors.MISSING_KS, "error"),
        ("reach_entryvendortask", "get", errors.INVALID_KS, "error"),
    ],
)
def test_permanent_codes_while_provisioning(
    worker: Any,
    admin: Admin,
    send: Any,
    redis_client: redis.Redis,
    service: str,
    action: str,
    code: str,
    expect: str,
) -> None:
    event_id, task_id = _order(admin)
    admin.fault(service, action, "error", code=code, count=1)
    send(commands.POLL)
    wait_for(lambda: any(c["code"] == code for c in admin.calls_of(service, action)))
    wait_for(lambda: not redis_client.exists(keys.provision_lock(task_id)))
    task = admin.task(task_id)
    if expect == "error":
        assert int(task["status"]) == ERROR
        assert code in task["errDescription"] and f"{service}.{action}" in task["errDescription"]
    else:
        assert int(task["status"]) == PENDING  # not ours to fail: the order went away
        assert not any(
            str(c["params"].get("entryVendorTask", {}).get("status")) == str(ERROR)
            for c in admin.calls_of("reach_entryvendortask", "updateJob")
        )
    assert _no_keys(redis_client)  # nothing handed out stays valid
    rec = registry.read_task_sync(redis_client, event_id, task_id)
    assert rec is None or rec.cancelled


@pytest.mark.parametrize(
    ("service", "action", "kind", "code"),
    [
        ("reach_entryvendortask", "updateJob", "error", errors.INTERNAL_SERVERL_ERROR),
        ("schedule_scheduleevent", "updateLiveFeature", "error", errors.CANNOT_UPDATE_SCHEDULE_EVENT_FEATURE),
        ("reach_entryvendortask", "get", "http500", ""),
        ("schedule_scheduleevent", "get", "delay", ""),
    ],
)
def test_transient_failures_retry_to_scheduled(
    worker: Any,
    admin: Admin,
    send: Any,
    redis_client: redis.Redis,
    service: str,
    action: str,
    kind: str,
    code: str,
    emulator: Any,
) -> None:
    event_id, task_id = _order(admin)
    # "delay" outlasts the request timeout of settings_for (5 s): a network error on our side.
    admin.fault(service, action, kind, code=code, count=1 if kind == "delay" else 2, delay=5.5)
    send(commands.POLL)
    wait_status(admin, [task_id], SCHEDULED, timeout=40 if kind == "delay" else 20)
    # (the emulator records a delayed call when it answers, after our timeout and retry)
    wait_for(lambda: len(admin.calls_of(service, action)) >= (2 if kind == "delay" else 3), timeout=10)
    assert len(admin.calls_of("schedule_scheduleevent", "updateLiveFeature")) == (
        3 if action == "updateLiveFeature" else 1
    )
    wait_for(lambda: registry.read_task_sync(redis_client, event_id, task_id).status == SCHEDULED)


def test_feature_lock_then_abort_cancels(
    worker: Any, admin: Admin, send: Any, redis_client: redis.Redis, emulator: Any
) -> None:
    event_id, task_id = _order(admin)
    admin.fault(
        "schedule_scheduleevent",
        "updateLiveFeature",
        "error",
        code=errors.CANNOT_UPDATE_SCHEDULE_EVENT_FEATURE,
        count=50,
    )
    send(commands.POLL)
    wait_for(lambda: admin.calls_of("schedule_scheduleevent", "updateLiveFeature"))
    admin.abort(task_id)  # the customer cancels while Kaltura keeps answering with the lock code
    wait_for(lambda: (r := registry.read_task_sync(redis_client, event_id, task_id)) is not None and r.cancelled)
    wait_for(lambda: not redis_client.exists(keys.provision_lock(task_id)))
    # Every retry starts with a fresh look at the task (it finds ABORTED and stops); never more
    # than one attempt and feature_lock_retries=2 retries (tests/poller/conftest.py).
    assert 1 <= len(admin.calls_of("schedule_scheduleevent", "updateLiveFeature")) <= 3
    assert int(admin.task(task_id)["status"]) != ERROR
    assert _no_keys(redis_client)


def test_feature_lock_exhausted_leaves_the_task_for_the_next_poll(
    worker: Any, admin: Admin, send: Any, redis_client: redis.Redis
) -> None:
    event_id, task_id = _order(admin)
    admin.fault(
        "schedule_scheduleevent",
        "updateLiveFeature",
        "error",
        code=errors.CANNOT_UPDATE_SCHEDULE_EVENT_FEATURE,
        count=3,
    )
    send(commands.POLL)
    wait_for(lambda: len(admin.calls_of("schedule_scheduleevent", "updateLiveFeature")) == 3)
    wait_for(lambda: not redis_client.exists(keys.provision_lock(task_id)))
    assert int(admin.task(task_id)["status"]) == PENDING  # still the customer's order, not failed
    send(commands.POLL)
    wait_status(admin, [task_id], SCHEDULED)
    wait_for(lambda: registry.read_task_sync(redis_client, event_id, task_id).status == SCHEDULED)
    assert len(redis_client.keys("rl:media-key:*")) == 1


def test_get_jobs_failure_fails_the_poll_and_the_next_poll_works(worker: Any, admin: Admin, send: Any) -> None:
    _, task_id = _order(admin)
    admin.fault("reach_entryvendortask", "getJobs", "http500", count=1)
    send(commands.POLL)
    wait_for(lambda: admin.calls_of("reach_entryvendortask", "getJobs"))
    send(commands.POLL)
    wait_status(admin, [task_id], SCHEDULED)


def test_expired_vendor_ks_is_renewed(worker: Any, admin: Admin, send: Any, emulator: Any) -> None:
    _, first = _order(admin)
    send(commands.POLL)
    wait_status(admin, [first], SCHEDULED)
    emulator.expire_sessions(kind="vendor")
    _, second = _order(admin)
    send(commands.POLL)
    wait_status(admin, [second], SCHEDULED)
    assert any(c["code"] == errors.INVALID_KS for c in admin.calls_of("reach_entryvendortask", "getJobs"))
    assert len(admin.calls_of("session", "start")) == 2
