"""Raw HTTP against the emulator, compared field by field (names, order, values) with the request
and response examples of seeds/kaltura-reach-live-captions.txt. The emulator's clock and id
counters are set to the seed's so every value that is not random can be compared exactly."""

from __future__ import annotations

import re

import pytest
from lxml import etree

from emulators.kaltura import KalturaEmulator
from tests.emulators.kaltura.conftest import SECRET, VENDOR, Clock, post, vendor_ks

SEED_NOW = 1727259369

SEED_TASK = {
    "id": "464420602", "partnerId": 5831172, "vendorPartnerId": 5173642, "createdAt": 1727259369,
    "updatedAt": 1727259369, "queueTime": 1727259369, "entryId": "1_0k5j8ixt", "status": 1,
    "reachProfileId": 287163, "catalogItemId": 33962, "price": 0, "userId": "test@test.com",
    "accessKey": "fjj8NDgyMTRE2MnwM92Psr0JTe3xslQMbsjdVBR2YJFebuqECTCoAhr-8xUJ9SteASydS1qHf1_4qblWTCpyRKRBcQCq",
    "version": 0, "creationMode": 1,
    "taskJobData": {"entryDuration": 3600000, "startDate": 1727265600, "endDate": 1727269200,
                    "scheduledEventId": 58812112, "objectType": "KalturaScheduledVendorTaskData"},
    "expectedFinishTime": 1727864169, "serviceType": 2, "serviceFeature": 8, "turnAroundTime": -1,
    "objectType": "KalturaEntryVendorTask",
}  # fmt: skip
SEED_GET_JOBS = {"totalCount": 1, "objects": [SEED_TASK], "objectType": "KalturaEntryVendorTaskListResponse"}

SEED_GET_REACH_VENDOR = {
    "relatedObjects": {
        "reach_vendor_catalog_item": {
            "totalCount": 1,
            "objects": [{
                "serviceType": 2, "serviceFeature": 8, "turnAroundTime": -1,
                "engineType": "OpenCalaisReachVendor.OPEN_CALAIS", "sourceLanguage": "English",
                "allowResubmission": False, "stage": 2, "contract": "", "createdBy": "", "notes": "",
                "enableSpeakerId": False, "minimalRefundTime": 30, "minimalOrderTime": 30, "durationLimit": 480,
                "objectType": "KalturaVendorLiveCaptionCatalogItem",
            }],
            "objectType": "KalturaVendorCatalogItemListResponse",
        },
        "reach_vendor_profile": {
            "totalCount": 1,
            "objects": [{
                "name": "Default test profile", "defaultOutputFormat": 1, "enableMetadataExtraction": True,
                "enableSpeakerChangeIndication": False, "enableAudioTags": False, "enableProfanityRemoval": True,
                "maxCharactersPerCaptionLine": 26, "labelAdditionForMachineServiceType": "",
                "labelAdditionForHumanServiceType": "", "contentDeletionPolicy": 2, "flavorParamsIds": "",
                "vendorTaskProcessingRegion": 1, "objectType": "KalturaReachProfile",
            }],
            "objectType": "KalturaReachProfileListResponse",
        },
    },
    "id": "464420602", "partnerId": 5831172, "vendorPartnerId": 5173642, "createdAt": 1727259369,
    "entryId": "1_0k5j8ixt", "status": 1, "reachProfileId": 287163, "catalogItemId": 33962,
    "accessKey": "fjJ8NDgyMTRE2MnwM92Psr0JTe3xslQMbsjdVBR2YJFebuqECTCoAhr-8xUJ9SteASydS1qHf1_4qblWTCPyRKRBcQCqCM",
    "version": 0, "taskJobData": {"objectType": "KalturaScheduledVendorTaskData"},
    "objectType": "KalturaEntryVendorTask",
}  # fmt: skip

SEED_NOT_FOUND = {
    "code": "ENTRY_VENDOR_TASK_NOT_FOUND",
    "message": "Entry vendor task item with id provided not found [468571812]",
    "objectType": "KalturaAPIException",
    "args": {"ID": "468571812"},
}

SEED_CATALOG_ITEM = {
    "id": 33962, "vendorPartnerId": 5173642, "name": "test-live-captions-eng-withTimeFields",
    "systemName": "test-live-captions-eng-withTimeFields", "createdAt": 1727259141, "updatedAt": 1727259141,
    "status": 2, "serviceType": 2, "serviceFeature": 8, "turnAroundTime": -1,
    "engineType": "OpenCalaisReachVendor.OPEN_CALAIS", "sourceLanguage": "English", "allowResubmission": False,
    "stage": 2, "contract": "", "createdBy": "", "notes": "", "enableSpeakerId": False, "fixedPriceAddons": 0,
    "minimalRefundTime": 30, "minimalOrderTime": 30, "durationLimit": 480,
    "objectType": "KalturaVendorLiveCaptionCatalogItem",
}  # fmt: skip

SEED_EVENT = {
    "id": 58812112, "partnerId": 5831172, "summary": "test townhall 3", "description": "", "status": 2,
    "startDate": 1727265600, "endDate": 1727269200, "classificationType": 1,
    "organizer": "889800133a387a16d64e5bc83a6d351b8cbfd07ac429035108755612c27493fc",
    "ownerId": "kmsAdminServiceUser", "sequence": 11, "recurrenceType": 0, "duration": 3600, "tags": "",
    "createdAt": 1727259266, "updatedAt": 1727259369, "templateEntryId": "1_0k5j8ixt", "blackoutConflicts": [],
    "projectedAudience": 0, "preStartTime": 0, "postEndTime": 0,
    "liveFeatures": [{"systemName": "LiveCaptionFeature-reach-464420602", "preStartTime": 0, "postEndTime": 0,
                      "language": "eng", "objectType": "KalturaLiveCaptionFeature"}],
    "objectType": "KalturaLiveStreamScheduleEvent",
}  # fmt: skip

SEED_UPDATED_FEATURE_KEYS = [
    "systemName", "preStartTime", "postEndTime", "mediaUrl", "mediaKey", "captionUrl", "captionToken",
    "language", "objectType",
]  # fmt: skip

# The seed's updateJob response is cut short (it ends in a trailing comma, without objectType).
SEED_UPDATE_JOB_KEYS = [
    "id", "partnerId", "vendorPartnerId", "createdAt", "updatedAt", "queueTime", "entryId", "status",
    "reachProfileId", "catalogItemId", "price", "userId", "accessKey", "version", "creationMode", "taskJobData",
    "expectedFinishTime", "serviceType", "serviceFeature", "turnAroundTime",
]  # fmt: skip

KS_SHAPE = re.compile(r"^[A-Za-z0-9_-]{90,}$")  # base64url, like the seed's accessKey


def same_shape(got, want, varying=(), path=""):
    """Same keys in the same order, same values except ``varying`` leaf names."""
    if isinstance(want, dict):
        assert isinstance(got, dict), path
        assert list(got) == list(want), f"{path}: {list(got)} != {list(want)}"
        for key in want:
            if key not in varying:
                same_shape(got[key], want[key], varying, f"{path}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            same_shape(g, w, varying, f"{path}[{i}]")
    else:
        assert got == want and type(got) is type(want), f"{path}: {got!r} != {want!r}"


@pytest.fixture
def seeded():
    clock = Clock(SEED_NOW)
    with KalturaEmulator(partner_id=VENDOR, admin_secret=SECRET, clock=clock) as emu:
        emu.create_event(
            summary="test townhall 3",
            start=1727265600,
            end=1727269200,
            entry_id="1_0k5j8ixt",
            partner_id=5831172,
            tasks=[{"feature": 8, "source_language": "English"}],
        )
        yield emu


def test_get_jobs_matches_the_seed(seeded):
    ks = vendor_ks(seeded)
    got = post(
        seeded, "reach_entryvendortask", "getJobs", {"ks": ks, "filter[objectType]": "KalturaEntryVendorTaskFilter"}
    )
    same_shape(got, SEED_GET_JOBS, varying=("accessKey",))
    assert KS_SHAPE.match(got["objects"][0]["accessKey"])


def test_get_with_reach_vendor_profile_matches_the_seed(seeded):
    ks = vendor_ks(seeded)
    key = post(seeded, "reach_entryvendortask", "getJobs", {"ks": ks})["objects"][0]["accessKey"]
    got = post(
        seeded,
        "reach_entryvendortask",
        "get",
        {"ks": key, "id": "464420602", "responseProfile[systemName]": "reach_vendor"},
    )
    same_shape(got, SEED_GET_REACH_VENDOR, varying=("accessKey",))
    assert got["accessKey"] == key


def test_cancelled_task_matches_the_seed_error(seeded):
    ks = vendor_ks(seeded)
    key = post(seeded, "reach_entryvendortask", "getJobs", {"ks": ks})["objects"][0]["accessKey"]
    got = post(seeded, "reach_entryvendortask", "get", {"ks": key, "id": "468571812"})
    assert got == SEED_NOT_FOUND and list(got) == list(SEED_NOT_FOUND)
    seeded.delete("464420602")
    got = post(seeded, "reach_entryvendortask", "get", {"ks": key, "id": "464420602"})
    assert got["code"] == "ENTRY_VENDOR_TASK_NOT_FOUND" and got["args"] == {"ID": "464420602"}


def test_catalog_item_matches_the_seed(seeded):
    got = post(seeded, "reach_vendorcatalogitem", "get", {"ks": vendor_ks(seeded), "id": "33962"})
    same_shape(got, SEED_CATALOG_ITEM, varying=("name", "systemName", "createdAt", "updatedAt"))


def test_schedule_event_matches_the_seed(seeded):
    key = post(seeded, "reach_entryvendortask", "getJobs", {"ks": vendor_ks(seeded)})["objects"][0]["accessKey"]
    got = post(seeded, "schedule_scheduleevent", "get", {"ks": key, "scheduleEventId": "58812112"})
    same_shape(got, SEED_EVENT, varying=("sequence", "createdAt"))


def test_update_live_feature_then_scheduled_matches_the_seed(seeded):
    ks = vendor_ks(seeded)
    key = post(seeded, "reach_entryvendortask", "getJobs", {"ks": ks})["objects"][0]["accessKey"]
    # The seed's curl sends these values as they are written (already percent-encoded).
    sent = {
        "captionToken": "qfdfsqfdfsfdsfqfdfs",
        "captionUrl": "http%3A%2F%2Ftest.test.com%3A43251",
        "mediaKey": "iouzralkdsfqmjldsq",
        "mediaUrl": "http%3A%2F%2Fstream.stream.com%3A32090",
    }
    fields = [("ks", key), ("scheduledEventId", "58812112"), ("featureName", "LiveCaptionFeature-reach-464420602"),
              ("liveFeature[objectType]", "KalturaLiveCaptionFeature")]  # fmt: skip
    fields += [(f"liveFeature[{k}]", v) for k, v in sent.items()]
    got = post(seeded, "schedule_scheduleevent", "updateLiveFeature", fields)
    same_shape(
        {k: v for k, v in got.items() if k != "liveFeatures"},
        {k: v for k, v in SEED_EVENT.items() if k != "liveFeatures"},
        varying=("sequence", "createdAt"),
    )
    (feature,) = got["liveFeatures"]
    assert list(feature) == SEED_UPDATED_FEATURE_KEYS
    assert {k: feature[k] for k in sent} == sent
    assert feature["language"] == "eng" and feature["systemName"] == "LiveCaptionFeature-reach-464420602"

    job = post(
        seeded,
        "reach_entryvendortask",
        "updateJob",
        {
            "ks": ks,
            "id": "464420602",
            "entryVendorTask[status]": "9",
            "entryVendorTask[objectType]": "KalturaEntryVendorTask",
        },
    )
    assert list(job) == [*SEED_UPDATE_JOB_KEYS, "objectType"]
    assert job["status"] == 9 and job["accessKey"] == key

    scheduled = post(
        seeded,
        "reach_entryvendortask",
        "getJobs",
        {"ks": ks, "filter[objectType]": "KalturaEntryVendorTaskFilter", "filter[statusEqual]": "9"},
    )
    assert [t["id"] for t in scheduled["objects"]] == ["464420602"] and scheduled["objects"][0]["status"] == 9
    pending = post(seeded, "reach_entryvendortask", "getJobs", {"ks": ks})
    assert pending["totalCount"] == 0 and pending["objects"] == []


def test_three_parameter_encodings_agree(seeded):
    ks = vendor_ks(seeded)
    brackets = post(
        seeded,
        "reach_entryvendortask",
        "getJobs",
        {
            "ks": ks,
            "filter[objectType]": "KalturaEntryVendorTaskFilter",
            "filter[statusIn]": "1,9",
            "pager[pageSize]": "1",
            "pager[pageIndex]": "1",
        },
    )
    colons = post(
        seeded,
        "reach_entryvendortask",
        "getJobs",
        {
            "ks": ks,
            "filter:objectType": "KalturaEntryVendorTaskFilter",
            "filter:statusIn": "1,9",
            "pager:pageSize": "1",
            "pager:pageIndex": "1",
        },
    )
    body = post(
        seeded,
        "reach_entryvendortask",
        "getJobs",
        None,
        json_body={
            "ks": ks,
            "filter": {"objectType": "KalturaEntryVendorTaskFilter", "statusIn": "1,9"},
            "pager": {"pageSize": 1, "pageIndex": 1},
        },
    )
    assert brackets == colons == body
    assert brackets["totalCount"] == 1


def test_xml_is_the_default_and_matches_json(seeded):
    ks = vendor_ks(seeded)
    as_json = post(seeded, "reach_entryvendortask", "getJobs", {"ks": ks})
    raw = post(seeded, "reach_entryvendortask", "getJobs", {"ks": ks}, fmt=None)
    root = etree.fromstring(raw)
    assert root.tag == "xml" and root.find("executionTime") is not None
    result = root.find("result")
    assert result[0].tag == "objectType" and result[0].text == "KalturaEntryVendorTaskListResponse"
    assert result.findtext("totalCount") == "1"
    item = result.find("objects/item")
    task = as_json["objects"][0]
    for key, value in task.items():
        if key == "taskJobData":
            assert item.findtext("taskJobData/scheduledEventId") == str(value["scheduledEventId"])
        else:
            assert item.findtext(key) == str(value), key
    as_format_2 = post(seeded, "reach_entryvendortask", "getJobs", {"ks": ks}, fmt=2)
    no_time = re.compile(rb"<executionTime>[^<]*</executionTime>")
    assert no_time.sub(b"", raw) == no_time.sub(b"", as_format_2)


def test_xml_error_envelope(seeded):
    raw = post(seeded, "reach_entryvendortask", "getJobs", {"ks": "djJ8bogus"}, fmt=2)
    error = etree.fromstring(raw).find("result/error")
    assert [child.tag for child in error] == ["code", "message", "objectType", "args"]
    assert error.findtext("code") == "INVALID_KS" and error.findtext("objectType") == "KalturaAPIException"
    args = {i.findtext("name"): i.findtext("value") for i in error.find("args")}
    assert args == {"KSID": "djJ8bogus", "ERR_CODE": "-1", "ERR_DESC": "INVALID_STR"}
    assert error.find("args/item/objectType").text == "KalturaApiExceptionArg"


def test_null_suffix_clears_a_field(seeded):
    ks = vendor_ks(seeded)
    post(
        seeded,
        "reach_entryvendortask",
        "updateJob",
        {"ks": ks, "id": "464420602", "entryVendorTask[externalTaskId]": "abc"},
    )
    assert seeded.task("464420602")["externalTaskId"] == "abc"
    got = post(
        seeded,
        "reach_entryvendortask",
        "updateJob",
        {"ks": ks, "id": "464420602", "entryVendorTask[externalTaskId__null]": ""},
    )
    assert "externalTaskId" not in got and "externalTaskId" not in seeded.task("464420602")
