"""The rules of facts.md over raw HTTP (format=1): KS kinds and expiry, getJobs' status filter and
paging, status transitions and final states, feature removal, accessKey scope and invalidation."""

from __future__ import annotations

import pytest

from tests.emulators.kaltura.conftest import SECRET, VENDOR, order, post, vendor_ks

TASKS3 = [
    {"feature": 8, "source_language": "English"},
    {"feature": 11, "source_language": "English", "target_language": "French"},
    {"feature": 11, "source_language": "English", "target_language": "German"},
]


def jobs(emu, ks, **filt):
    fields = {"ks": ks, **{f"filter[{k}]": v for k, v in filt.items() if not k.startswith("page")}}
    for k in ("pageSize", "pageIndex"):
        if k in filt:
            fields[f"pager[{k}]"] = filt[k]
    return post(emu, "reach_entryvendortask", "getJobs", fields)


def update(emu, ks, task_id, **fields):
    return post(emu, "reach_entryvendortask", "updateJob",
                {"ks": ks, "id": task_id, **{f"entryVendorTask[{k}]": v for k, v in fields.items()}})  # fmt: skip


def access_key(emu, task_id):
    return emu.task(task_id)["accessKey"]


def feature_update(emu, ks, event_id, task_id, **fields):
    params = {"ks": ks, "scheduledEventId": event_id, "featureName": f"LiveCaptionFeature-reach-{task_id}",
              "liveFeature[objectType]": "KalturaLiveCaptionFeature"}  # fmt: skip
    params.update({f"liveFeature[{k}]": v for k, v in fields.items()})
    return post(emu, "schedule_scheduleevent", "updateLiveFeature", params)


# ----------------------------------------------------------------------------- sessions


def test_ks_errors(emu, clock):
    created = order(emu, clock)
    task = created["task_ids"][0]
    assert post(emu, "reach_entryvendortask", "getJobs", {})["code"] == "MISSING_KS"
    bad = post(emu, "reach_entryvendortask", "getJobs", {"ks": "djJ8unknown"})
    assert bad["code"] == "INVALID_KS" and bad["args"]["ERR_DESC"] == "INVALID_STR"
    wrong = post(emu, "session", "start", {"secret": "nope", "partnerId": VENDOR, "type": 2})
    assert wrong["code"] == "START_SESSION_ERROR" and wrong["args"] == {"PID": str(VENDOR)}
    other_partner = post(emu, "session", "start", {"secret": SECRET, "partnerId": 5831172, "type": 2})
    assert other_partner["code"] == "START_SESSION_ERROR"

    ks = vendor_ks(emu)
    key = access_key(emu, task)
    # Wrong kind of KS for the action → SERVICE_FORBIDDEN, both ways.
    assert post(emu, "reach_entryvendortask", "get", {"ks": ks, "id": task})["code"] == "SERVICE_FORBIDDEN"
    assert (
        post(emu, "schedule_scheduleevent", "get", {"ks": ks, "scheduleEventId": created["event_id"]})["code"]
        == "SERVICE_FORBIDDEN"
    )
    forbidden = jobs(emu, key)
    assert forbidden["code"] == "SERVICE_FORBIDDEN"
    assert forbidden["args"] == {"SERVICE": "reach_entryvendortask->getjobs"}
    assert update(emu, key, task, status=9)["code"] == "SERVICE_FORBIDDEN"
    assert post(emu, "reach_entryvendortask", "extendAccessKey", {"ks": key, "id": task})["code"] == (
        "SERVICE_FORBIDDEN"
    )
    user_ks = post(emu, "session", "start", {"secret": SECRET, "partnerId": VENDOR, "type": 0})
    assert jobs(emu, user_ks)["code"] == "SERVICE_FORBIDDEN"

    # Expiry: INVALID_KS whose message and args say EXPIRED (there is no EXPIRED_KS).
    clock.advance(86401)
    expired = jobs(emu, ks)
    assert expired["code"] == "INVALID_KS"
    assert expired["args"] == {"KSID": ks, "ERR_CODE": "-5", "ERR_DESC": "EXPIRED"}
    assert "EXPIRED" in expired["message"]
    assert jobs(emu, vendor_ks(emu))["totalCount"] == 1  # a fresh session works


def test_session_expiry_is_capped_and_admin_can_expire(emu, clock):
    order(emu, clock)
    short = post(emu, "session", "start", {"secret": SECRET, "partnerId": VENDOR, "type": 2, "expiry": 30})
    clock.advance(31)
    assert jobs(emu, short)["args"]["ERR_DESC"] == "EXPIRED"
    ks = vendor_ks(emu)
    emu.expire_sessions("vendor")
    assert jobs(emu, ks)["args"]["ERR_DESC"] == "EXPIRED"


def test_access_key_scope(emu, clock):
    first = order(emu, clock)
    second = order(emu, clock, tasks=TASKS3)
    key = access_key(emu, first["task_ids"][0])
    mine = post(emu, "reach_entryvendortask", "get", {"ks": key, "id": first["task_ids"][0]})
    assert mine["id"] == first["task_ids"][0]
    other = post(emu, "reach_entryvendortask", "get", {"ks": key, "id": second["task_ids"][0]})
    assert other["code"] == "ENTRY_VENDOR_TASK_NOT_FOUND"
    event = post(emu, "schedule_scheduleevent", "get", {"ks": key, "scheduleEventId": second["event_id"]})
    assert event["code"] == "INVALID_OBJECT_ID" and event["args"] == {"ID": str(second["event_id"])}
    assert feature_update(emu, key, second["event_id"], second["task_ids"][0], mediaKey="x")["code"] == (
        "CANNOT_UPDATE_SCHEDULE_EVENT_FEATURE"
    )
    # A partner-wide key (the other plausible reading) reaches the same customer's objects.
    emu.configure(access_key_scope="partner")
    assert post(emu, "reach_entryvendortask", "get", {"ks": key, "id": second["task_ids"][0]})["status"] == 1
    third = order(emu, clock, partner_id=4811563)
    assert post(emu, "reach_entryvendortask", "get", {"ks": key, "id": third["task_ids"][0]})["code"] == (
        "ENTRY_VENDOR_TASK_NOT_FOUND"
    )


# ----------------------------------------------------------------------------- getJobs


def test_get_jobs_status_filter_is_forced_to_pending_or_scheduled(emu, clock):
    created = order(emu, clock, tasks=TASKS3)
    ks = vendor_ks(emu)
    a, b, c = created["task_ids"]
    update(emu, ks, b, status=9)
    update(emu, ks, c, status=9)
    update(emu, ks, c, status=3)

    def ids(**filt):
        return [t["id"] for t in jobs(emu, ks, **filt)["objects"]]

    assert ids() == [a]  # no status: PENDING
    assert ids(statusEqual=9) == [b]
    assert ids(statusIn="1,9") == [a, b]
    assert ids(statusEqual=3) == [a]  # PROCESSING is not for getJobs: becomes PENDING
    assert ids(statusIn="3,2") == [a]
    assert ids(statusIn="9,3") == [a, b]
    assert ids(statusIn="1,9", idEqual=b) == [b]
    assert ids(statusIn="1,9", orderBy="-createdAt") == [b, a]


def test_get_jobs_paging(emu, clock):
    for _ in range(3):
        order(emu, clock, tasks=TASKS3)
    ks = vendor_ks(emu)
    everything = [t["id"] for t in emu.tasks()]
    pages = [jobs(emu, ks, pageSize=4, pageIndex=i) for i in (1, 2, 3, 4)]
    assert [p["totalCount"] for p in pages] == [9, 9, 9, 9]
    assert [len(p["objects"]) for p in pages] == [4, 4, 1, 0]
    assert [t["id"] for p in pages for t in p["objects"]] == everything
    assert len(jobs(emu, ks)["objects"]) == 9  # default page size 30
    assert len(jobs(emu, ks, pageSize=0)["objects"]) == 9


# ----------------------------------------------------------------------------- status rules


@pytest.mark.parametrize("final", [2, 5, 6, 7])
def test_final_states_never_change(emu, clock, final):
    task = order(emu, clock)["task_ids"][0]
    ks = vendor_ks(emu)
    emu.set_status(task, final)
    for target in (1, 2, 3, 6, 9):
        if target == final:
            continue
        got = update(emu, ks, task, status=target)
        assert got["code"] == "CANNOT_UPDATE_STATUS_OF_TASK_WHICH_IS_IN_FINAL_STATE"
        assert got["args"] == {"ID": task, "OLD_STATUS": str(final), "NEW_STATUS": str(target)}
    assert emu.task(task)["status"] == final
    assert update(emu, ks, task, status=final)["status"] == final  # no change: no error


@pytest.mark.parametrize("start", [1, 4, 8, 9])
def test_processing_allowed_from(emu, clock, start):
    task = order(emu, clock)["task_ids"][0]
    emu.set_status(task, start)
    assert update(emu, vendor_ks(emu), task, status=3)["status"] == 3


def test_abort_not_allowed_from_processing(emu, clock):
    task = order(emu, clock)["task_ids"][0]
    ks = vendor_ks(emu)
    update(emu, ks, task, status=3)
    got = update(emu, ks, task, status=7)
    assert got["code"] == "ENTRY_VENDOR_TASK_ITEM_COULD_NOT_BE_UPDATED" and "PROCESSING" in got["message"]
    assert update(emu, ks, task, status=3)["status"] == 3  # same status: fine


def test_vendor_settable_fields_only(emu, clock):
    task = order(emu, clock)["task_ids"][0]
    ks = vendor_ks(emu)
    got = update(emu, ks, task, status=6, errDescription="unsupported language", accuracy=0, outputObjectId="o1")
    assert (got["status"], got["errDescription"], got["accuracy"], got["outputObjectId"]) == (
        6, "unsupported language", 0, "o1"
    )  # fmt: skip
    task2 = order(emu, clock)["task_ids"][0]
    for field in ("entryId", "partnerId", "accessKey", "catalogItemId", "notes"):
        refused = update(emu, ks, task2, **{field: "x"})
        assert refused["code"] == "PROPERTY_VALIDATION_NOT_UPDATABLE" and refused["args"] == {"PROP_NAME": field}
    assert update(emu, ks, task2, status=42)["code"] == "INVALID_ENUM_VALUE"
    assert update(emu, ks, task2, objectType="KalturaLiveCaptionFeature")["code"] == "INVALID_OBJECT_TYPE"
    assert post(emu, "reach_entryvendortask", "updateJob", {"ks": ks, "id": task2})["code"] == (
        "MISSING_MANDATORY_PARAMETER"
    )
    assert emu.task(task2)["status"] == 1


def test_access_key_invalid_after_ready(emu, clock):
    created = order(emu, clock)
    task = created["task_ids"][0]
    ks, key = vendor_ks(emu), access_key(emu, task)
    update(emu, ks, task, status=9)
    update(emu, ks, task, status=3)
    assert post(emu, "reach_entryvendortask", "get", {"ks": key, "id": task})["status"] == 3
    update(emu, ks, task, status=2)
    got = post(emu, "reach_entryvendortask", "get", {"ks": key, "id": task})
    assert got["code"] == "INVALID_KS" and got["args"]["ERR_DESC"] == "LOGOUT"
    assert (
        post(emu, "schedule_scheduleevent", "get", {"ks": key, "scheduleEventId": created["event_id"]})["code"]
        == "INVALID_KS"
    )
    assert emu.feature(task) is not None  # READY keeps the feature


@pytest.mark.parametrize("how", ["error", "abort"])
def test_feature_removed_at_error_or_abort(emu, clock, how):
    created = order(emu, clock, tasks=TASKS3)
    task, other = created["task_ids"][0], created["task_ids"][1]
    ks, key = vendor_ks(emu), access_key(emu, task)
    if how == "error":
        update(emu, ks, task, status=6, errDescription="boom")
    else:
        emu.abort(task)
        assert emu.task(task)["status"] == 7
    features = post(emu, "schedule_scheduleevent", "get", {"ks": key, "scheduleEventId": created["event_id"]})
    names = [f["systemName"] for f in features["liveFeatures"]]
    assert f"LiveCaptionFeature-reach-{task}" not in names and f"LiveCaptionFeature-reach-{other}" in names
    # The server rethrows FEATURE_NAME_NOT_FOUND inside its lock as CANNOT_UPDATE_SCHEDULE_EVENT_FEATURE.
    wrapped = feature_update(emu, key, created["event_id"], task, mediaKey="k")
    assert wrapped["code"] == "CANNOT_UPDATE_SCHEDULE_EVENT_FEATURE"
    assert wrapped["args"] == {"FEATURE_NAME": f"LiveCaptionFeature-reach-{task}"}
    emu.configure(feature_errors="unwrapped")
    assert feature_update(emu, key, created["event_id"], task, mediaKey="k")["code"] == "FEATURE_NAME_NOT_FOUND"
    assert post(emu, "reach_entryvendortask", "get", {"ks": key, "id": task})["status"] in (6, 7)


def test_extend_access_key(emu, clock):
    task = order(emu, clock)["task_ids"][0]
    ks, old = vendor_ks(emu), access_key(emu, task)
    assert post(emu, "reach_entryvendortask", "extendAccessKey", {"ks": ks, "id": task})["code"] == (
        "CANNOT_EXTEND_ACCESS_KEY"
    )
    for status in (9, 3):
        update(emu, ks, task, status=status)
        new = post(emu, "reach_entryvendortask", "extendAccessKey", {"ks": ks, "id": task})["accessKey"]
        assert new != old and emu.task(task)["accessKey"] == new
        assert post(emu, "reach_entryvendortask", "get", {"ks": new, "id": task})["id"] == task
    assert post(emu, "reach_entryvendortask", "get", {"ks": old, "id": task})["id"] == task  # still valid
    emu.expire_sessions("access_key", task)
    assert post(emu, "reach_entryvendortask", "get", {"ks": new, "id": task})["args"]["ERR_DESC"] == "EXPIRED"
    update(emu, ks, task, status=2)
    assert post(emu, "reach_entryvendortask", "extendAccessKey", {"ks": ks, "id": task})["code"] == (
        "CANNOT_EXTEND_ACCESS_KEY"
    )


def test_update_live_feature_rules(emu, clock):
    created = order(emu, clock)
    event, task = created["event_id"], created["task_ids"][0]
    key = access_key(emu, task)
    base = {"ks": key, "scheduledEventId": event, "featureName": f"LiveCaptionFeature-reach-{task}"}
    no_type = post(emu, "schedule_scheduleevent", "updateLiveFeature", {**base, "liveFeature[mediaKey]": "k"})
    assert no_type["code"] == "OBJECT_TYPE_ABSTRACT" and no_type["args"] == {"OBJ_TYPE": "KalturaLiveFeature"}
    assert post(emu, "schedule_scheduleevent", "updateLiveFeature", base)["code"] == "MISSING_MANDATORY_PARAMETER"
    feature_update(
        emu, key, event, task, mediaUrl="rtmp://a/live", mediaKey="k1", captionUrl="wss://c", captionToken="t"
    )
    feature_update(emu, key, event, task, mediaKey="k2")  # merges only what is sent
    assert emu.feature(task) == {
        "systemName": f"LiveCaptionFeature-reach-{task}", "preStartTime": 0, "postEndTime": 0,
        "mediaUrl": "rtmp://a/live", "mediaKey": "k2", "captionUrl": "wss://c", "captionToken": "t",
        "language": "eng", "objectType": "KalturaLiveCaptionFeature",
    }  # fmt: skip
    missing_event = feature_update(emu, key, 999, task, mediaKey="x")
    assert missing_event["code"] == "CANNOT_UPDATE_SCHEDULE_EVENT_FEATURE"


def test_windows_buffers_and_move(emu, clock):
    start = int(clock.now) + 7200
    created = emu.create_event(start=start, end=start + 1800, pre_start=300, post_end=600,
                               tasks=[{"feature": 8, "source_language": "French (Canada)"}])  # fmt: skip
    task = created["task_ids"][0]
    ks = vendor_ks(emu)
    data = jobs(emu, ks)["objects"][0]["taskJobData"]
    assert (data["startDate"], data["endDate"], data["entryDuration"]) == (start - 300, start + 2400, 2700000)
    feature = emu.feature(task)
    assert (feature["preStartTime"], feature["postEndTime"], feature["language"]) == (300, 600, "fra")
    item = post(emu, "reach_vendorcatalogitem", "get", {"ks": ks, "id": emu.task(task)["catalogItemId"]})
    assert (item["startTimeBuffer"], item["endTimeBuffer"], item["sourceLanguage"]) == (300, 600, "French (Canada)")
    emu.move_window(created["event_id"], start + 600, start + 4200)
    data = jobs(emu, ks)["objects"][0]["taskJobData"]
    assert (data["startDate"], data["endDate"]) == (start + 300, start + 4800)
    event = emu.event(created["event_id"])
    assert (event["startDate"], event["endDate"], event["duration"]) == (start + 600, start + 4200, 3600)


def test_unknown_service_action_and_profile(emu, clock):
    order(emu, clock)
    ks = vendor_ks(emu)
    assert post(emu, "nosuch", "get", {"ks": ks})["code"] == "SERVICE_DOES_NOT_EXISTS"
    assert post(emu, "reach_entryvendortask", "nosuch", {"ks": ks})["code"] == "ACTION_DOES_NOT_EXISTS"
    got = post(emu, "reach_entryvendortask", "getJobs", {"ks": ks, "responseProfile[systemName]": "other"})
    assert got["code"] == "RESPONSE_PROFILE_NAME_NOT_FOUND"
    # Service and action names are case-insensitive, as on the server.
    assert post(emu, "REACH_ENTRYVENDORTASK", "GETJOBS", {"ks": ks})["totalCount"] == 1
