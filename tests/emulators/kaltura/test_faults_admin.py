"""Faults on demand, the call record (secrets masked), multirequest, the admin HTTP surface and
``reachlive emulate kaltura`` as a real process."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request

import pytest

from shared.child import Service
from tests.emulators.kaltura.conftest import SECRET, VENDOR, admin, order, post, vendor_ks


def raw_status(emu, service, action, fields):
    try:
        return post(emu, service, action, fields), 200
    except urllib.error.HTTPError as exc:
        return None, exc.code


def test_http500_fault_then_recovery(emu, clock):
    order(emu, clock)
    ks = vendor_ks(emu)
    emu.add_fault(service="reach_entryvendortask", action="getJobs", kind="http500", count=2, status=503)
    assert raw_status(emu, "reach_entryvendortask", "getJobs", {"ks": ks})[1] == 503
    assert raw_status(emu, "reach_entryvendortask", "getJobs", {"ks": ks})[1] == 503
    got, status = raw_status(emu, "reach_entryvendortask", "getJobs", {"ks": ks})
    assert status == 200 and got["totalCount"] == 1
    assert [c["code"] for c in emu.calls if c["action"] == "getJobs"] == ["HTTP503", "HTTP503", None]


def test_error_fault_has_no_effect_and_can_match_a_task(emu, clock):
    created = order(
        emu,
        clock,
        tasks=[
            {"feature": 8, "source_language": "English"},
            {"feature": 11, "source_language": "English", "target_language": "Italian"},
        ],
    )
    a, b = created["task_ids"]
    emu.add_fault(
        service="schedule_scheduleevent",
        action="updateLiveFeature",
        kind="error",
        code="CANNOT_UPDATE_SCHEDULE_EVENT_FEATURE",
        count=0,
        match={"featureName": f"LiveCaptionFeature-reach-{b}"},
    )

    def set_key(task, value):
        return post(
            emu,
            "schedule_scheduleevent",
            "updateLiveFeature",
            {
                "ks": emu.task(task)["accessKey"],
                "scheduledEventId": created["event_id"],
                "featureName": f"LiveCaptionFeature-reach-{task}",
                "liveFeature[objectType]": "KalturaLiveCaptionFeature",
                "liveFeature[mediaKey]": value,
            },
        )

    for _ in range(3):  # count 0: until cleared
        assert set_key(b, "kb")["code"] == "CANNOT_UPDATE_SCHEDULE_EVENT_FEATURE"
    assert "mediaKey" not in emu.feature(b)
    assert set_key(a, "ka")["id"] == created["event_id"]  # the other feature is not affected
    emu.clear_faults()
    assert set_key(b, "kb")["id"] == created["event_id"] and emu.feature(b)["mediaKey"] == "kb"
    ks = vendor_ks(emu)
    internal = emu.add_fault(kind="error", code="INTERNAL_SERVERL_ERROR")
    assert internal["service"] == "*" and internal["count"] == 1
    got = post(emu, "reach_entryvendortask", "getJobs", {"ks": ks})
    assert got == {"code": "INTERNAL_SERVERL_ERROR", "message": "Internal server error occurred",
                   "objectType": "KalturaAPIException", "args": {}}  # fmt: skip


def test_delay_and_reset_faults(emu, clock):
    order(emu, clock)
    ks = vendor_ks(emu)
    emu.add_fault(action="getJobs", kind="delay", delay=0.3)
    began = time.monotonic()
    assert post(emu, "reach_entryvendortask", "getJobs", {"ks": ks})["totalCount"] == 1
    assert time.monotonic() - began >= 0.3  # the reply waited for the fault (a lower bound, not a speed claim)
    emu.add_fault(action="getJobs", kind="reset")
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        post(emu, "reach_entryvendortask", "getJobs", {"ks": ks})
    assert post(emu, "reach_entryvendortask", "getJobs", {"ks": ks})["totalCount"] == 1
    with pytest.raises(ValueError):
        emu.add_fault(kind="error")  # an error fault needs a code


def test_calls_are_recorded_with_secrets_masked(emu, clock):
    created = order(emu, clock)
    task = created["task_ids"][0]
    ks = vendor_ks(emu)
    key = emu.task(task)["accessKey"]
    post(
        emu,
        "schedule_scheduleevent",
        "updateLiveFeature",
        {
            "ks": key,
            "scheduledEventId": created["event_id"],
            "featureName": f"LiveCaptionFeature-reach-{task}",
            "liveFeature[objectType]": "KalturaLiveCaptionFeature",
            "liveFeature[mediaKey]": "media-key-secret",
            "liveFeature[captionToken]": "caption-token-secret",
            "liveFeature[captionUrl]": "wss://x",
            "clientTag": "t1",
        },
    )
    post(emu, "reach_entryvendortask", "getJobs", {"ks": "djJ8garbage"})
    calls = emu.calls
    dump = json.dumps(calls)
    for secret in (SECRET, ks, key, "media-key-secret", "caption-token-secret", "djJ8garbage"):
        assert secret not in dump
    start, feature, bad = calls
    assert (start["service"], start["action"], start["ks_kind"], start["params"]["secret"]) == (
        "session",
        "start",
        None,
        "***",
    )
    assert feature["ks_kind"] == "access_key" and feature["code"] is None and feature["client_tag"] == "t1"
    assert feature["params"]["liveFeature"]["captionUrl"] == "wss://x"
    assert feature["params"]["liveFeature"]["mediaKey"] == "***" and feature["params"]["ks"] == "***"
    assert bad["ks_kind"] == "invalid" and bad["code"] == "INVALID_KS"
    assert all(isinstance(c["time"], float) for c in calls)


def test_multirequest_with_references(emu, clock):
    created = order(emu, clock)
    task = created["task_ids"][0]
    body = {
        "0": {"service": "session", "action": "start", "secret": SECRET, "partnerId": VENDOR, "type": 2},
        "1": {"service": "reach_entryvendortask", "action": "getJobs", "ks": "{1:result}"},
        "2": {"service": "reach_entryvendortask", "action": "updateJob", "ks": "{1:result}",
              "id": "{2:result:objects:0:id}",
              "entryVendorTask": {"objectType": "KalturaEntryVendorTask", "status": 9}},
        "3": {"service": "reach_entryvendortask", "action": "updateJob", "ks": "{1:result}", "id": "1",
              "entryVendorTask": {"status": 9}},
    }  # fmt: skip
    first, listed, updated, missing = post(emu, "multirequest", "", None, json_body=body)
    assert first.startswith("djJ8") and listed["totalCount"] == 1
    assert updated["id"] == task and updated["status"] == 9
    assert missing["code"] == "ENTRY_VENDOR_TASK_NOT_FOUND"
    assert [c.get("multirequest") for c in emu.calls] == [True] * 4
    # Form fields with colon notation, and the shared top-level ks.
    ks = vendor_ks(emu)
    got = post(
        emu,
        "multirequest",
        "",
        [("ks", ks), ("1:service", "reach_entryvendortask"), ("1:action", "getJobs"), ("1:filter:statusEqual", "9")],
    )
    assert [t["id"] for t in got[0]["objects"]] == [task]


def test_admin_http_surface(emu, clock):
    start = int(clock.now) + 3600
    status, created = admin(
        emu,
        "POST",
        "events",
        {
            "summary": "board meeting",
            "start": start,
            "end": start + 3600,
            "partner_id": 5831172,
            "tasks": [
                {"feature": 8, "source_language": "English"},
                {"feature": 11, "source_language": "English", "target_language": "French"},
            ],
            "reach_profile": {"maxCharactersPerCaptionLine": 40, "enableProfanityRemoval": False},
            "duration_limit": 60,
        },
    )
    assert status == 200 and re.match(r"^1_[a-z0-9]{8}$", created["entry_id"])
    event_id, (cap, tr) = created["event_id"], created["task_ids"]
    status, event = admin(emu, "GET", f"events/{event_id}")
    assert event["summary"] == "board meeting" and [f["language"] for f in event["liveFeatures"]] == ["eng", "fra"]
    status, task = admin(emu, "GET", f"tasks/{tr}")
    assert status == 200 and task["status"] == 1 and task["serviceFeature"] == 11 and task["accessKey"]
    ks = vendor_ks(emu)
    related = post(
        emu,
        "reach_entryvendortask",
        "get",
        {"ks": task["accessKey"], "id": tr, "responseProfile[systemName]": "reach_vendor"},
    )["relatedObjects"]
    assert related["reach_vendor_catalog_item"]["objects"][0]["durationLimit"] == 60
    assert related["reach_vendor_profile"]["objects"][0]["maxCharactersPerCaptionLine"] == 40
    assert related["reach_vendor_profile"]["objects"][0]["enableProfanityRemoval"] is False

    assert admin(emu, "POST", f"tasks/{cap}/abort")[1]["status"] == 7
    status, again = admin(emu, "POST", f"tasks/{cap}/abort")
    assert status == 409 and again["code"] == "CANNOT_UPDATE_STATUS_OF_TASK_WHICH_IS_IN_FINAL_STATE"
    moved = admin(emu, "POST", f"events/{event_id}/window", {"start": start + 60, "end": start + 3660})[1]
    assert moved["startDate"] == start + 60 and len(moved["liveFeatures"]) == 1
    assert admin(emu, "POST", f"tasks/{tr}/delete")[1] == {"deleted": tr}
    assert admin(emu, "GET", f"tasks/{tr}")[0] == 404
    assert (
        post(emu, "reach_entryvendortask", "updateJob", {"ks": ks, "id": tr, "entryVendorTask[status]": 9})["code"]
        == "ENTRY_VENDOR_TASK_NOT_FOUND"
    )
    fault = admin(
        emu,
        "POST",
        "faults",
        {"service": "*", "action": "getJobs", "kind": "error", "code": "INTERNAL_SERVERL_ERROR", "count": 1},
    )[1]
    assert admin(emu, "GET", "faults")[1][0]["id"] == fault["id"]
    assert post(emu, "reach_entryvendortask", "getJobs", {"ks": ks})["code"] == "INTERNAL_SERVERL_ERROR"
    assert admin(emu, "GET", "faults")[1] == []
    calls = admin(emu, "GET", "calls")[1]
    assert {"service", "action", "params", "ks_kind", "code", "time"} <= set(calls[-1])
    assert admin(emu, "POST", "sessions/expire", {"kind": "vendor"})[1]["expired"] >= 1
    assert post(emu, "reach_entryvendortask", "getJobs", {"ks": ks})["args"]["ERR_DESC"] == "EXPIRED"
    assert admin(emu, "POST", "config", {"feature_errors": "unwrapped"})[1]["feature_errors"] == "unwrapped"
    assert admin(emu, "POST", "config", {"feature_errors": "maybe"})[0] == 400
    assert admin(emu, "POST", "events", {"start": start, "end": start - 1})[0] == 400
    assert admin(emu, "POST", "events", {"tasks": [{"feature": 11}]})[0] == 400
    assert admin(emu, "GET", "nothing")[0] == 404
    assert admin(emu, "POST", "reset")[1] == {"reset": True}
    assert admin(emu, "GET", "tasks")[1] == [] and admin(emu, "GET", "calls")[1] == []
    with urllib.request.urlopen(f"{emu.url}/healthz", timeout=5) as resp:
        assert resp.status == 200


def test_stop_closes_kept_alive_connections(emu, clock):
    import requests

    order(emu, clock)
    session = requests.Session()
    url = f"{emu.url}/api_v3/service/system/action/ping"
    assert session.post(url, data={"format": 1}).json() is True
    emu.stop()
    with pytest.raises(requests.ConnectionError):
        session.post(url, data={"format": 1}, timeout=5)


def test_cli_process(tmp_path):
    start = int(time.time()) + 3600
    spec = json.dumps({"start": start, "end": start + 3600})
    with Service(["emulate", "kaltura", "--listen", "127.0.0.1:0", "--partner-id", "5173642", "--admin-secret",
                  "s3cret", "--event", spec], {}, tmp_path, name="kaltura-emulator") as svc:  # fmt: skip
        deadline = time.monotonic() + 30
        url = None
        while time.monotonic() < deadline and url is None:
            found = re.search(r"^KALTURA_EMULATOR_URL=(\S+)$", svc.log(), re.M)
            url = found.group(1) if found else None
            time.sleep(0.05)
        assert url, svc.log()
        assert re.search(r"^KALTURA_EMULATOR_EVENT=", svc.log(), re.M)
        data = b"secret=s3cret&partnerId=5173642&type=2&format=1"
        with urllib.request.urlopen(f"{url}/api_v3/service/session/action/start", data=data, timeout=5) as resp:
            ks = json.loads(resp.read())
        data = f"ks={ks}&format=1".encode()
        with urllib.request.urlopen(f"{url}/api_v3/service/reach_entryvendortask/action/getJobs", data=data,
                                    timeout=5) as resp:  # fmt: skip
            assert json.loads(resp.read())["totalCount"] == 1
        assert svc.stop() == 0
    log = svc.log()
    assert "Kaltura EMULATOR" in log and "s3cret" not in log and ks not in log
