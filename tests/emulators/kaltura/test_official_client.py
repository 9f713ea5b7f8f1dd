"""The official KalturaApiClient (XML, format=2, JSON bodies) against the emulator, for every call
the REACH live lifecycle needs (issue 3: "the official client itself is exercised against the
emulator")."""

from __future__ import annotations

import hashlib

import pytest
from KalturaClient.exceptions import KalturaException
from KalturaClient.Plugins.Core import KalturaFilterPager, KalturaResponseProfileHolder, KalturaSessionType
from KalturaClient.Plugins.Reach import (
    KalturaEntryVendorTask,
    KalturaEntryVendorTaskFilter,
    KalturaEntryVendorTaskStatus,
    KalturaReachProfile,
    KalturaReachProfileListResponse,
    KalturaScheduledVendorTaskData,
    KalturaVendorCatalogItemListResponse,
    KalturaVendorLiveCaptionCatalogItem,
    KalturaVendorLiveTranslationCatalogItem,
)
from KalturaClient.Plugins.Schedule import KalturaLiveCaptionFeature, KalturaLiveStreamScheduleEvent

from tests.emulators.kaltura.conftest import SECRET, VENDOR, client, order

EN_FR = [
    {"feature": 8, "source_language": "English"},
    {"feature": 11, "source_language": "English", "target_language": "French"},
    {"feature": 11, "source_language": "English", "target_language": "Spanish"},
]


def vendor_client(emu):
    c = client(emu)
    ks = c.session.start(SECRET, "", KalturaSessionType.ADMIN, VENDOR)
    c.setKs(ks)
    return c, ks


def test_session_start_and_paged_get_jobs(emu, clock):
    created = order(emu, clock, tasks=EN_FR)
    c, ks = vendor_client(emu)
    assert ks.startswith("djJ8")  # base64url("v2|") like Kaltura's KS v2
    seen = []
    for index in (1, 2):
        flt = KalturaEntryVendorTaskFilter(statusIn="1,9")
        page = c.reach.entryVendorTask.getJobs(flt, KalturaFilterPager(pageSize=2, pageIndex=index))
        assert page.totalCount == 3
        seen += page.objects
    assert [t.id for t in seen] == [int(t) for t in created["task_ids"]]
    first = seen[0]
    assert isinstance(first, KalturaEntryVendorTask)
    assert first.status.getValue() == KalturaEntryVendorTaskStatus.PENDING
    assert first.serviceFeature.getValue() == 8 and seen[1].serviceFeature.getValue() == 11
    assert isinstance(first.taskJobData, KalturaScheduledVendorTaskData)
    assert first.taskJobData.scheduledEventId == created["event_id"]
    assert first.taskJobData.endDate - first.taskJobData.startDate == 3600
    assert first.accessKey and first.accessKey != ks
    assert first.turnAroundTime.getValue() == -1 and first.serviceType.getValue() == 2


def test_app_token_session(emu, clock):
    """appToken.startSession with a widget KS and tokenHash = sha256(widget KS + token)."""
    order(emu, clock)
    c = client(emu)
    widget = c.session.startWidgetSession(f"_{VENDOR}")
    c.setKs(widget.ks)
    with pytest.raises(KalturaException) as bad:
        c.appToken.startSession("0_tok", hashlib.sha256(b"wrong").hexdigest())
    assert bad.value.code == "INVALID_APP_TOKEN_HASH"
    with pytest.raises(KalturaException) as unknown:
        c.appToken.startSession("0_nope", "x")
    assert unknown.value.code == "APP_TOKEN_ID_NOT_FOUND"
    info = c.appToken.startSession("0_tok", hashlib.sha256((widget.ks + "apptokenvalue").encode()).hexdigest())
    assert info.sessionType.getValue() == 2 and info.partnerId == VENDOR and info.expiry > clock.now
    c.setKs(info.ks)
    assert c.reach.entryVendorTask.getJobs().totalCount == 1
    # The widget KS itself cannot read jobs.
    c.setKs(widget.ks)
    with pytest.raises(KalturaException) as forbidden:
        c.reach.entryVendorTask.getJobs()
    assert forbidden.value.code == "SERVICE_FORBIDDEN"


def test_locally_generated_v1_ks_is_accepted(emu, clock):
    """KalturaClient.generateSession signs a KS v1 with the admin secret: Kaltura accepts it."""
    order(emu, clock)
    c = client(emu)
    c.setKs(c.generateSession(SECRET, "", 2, VENDOR).decode())
    assert c.reach.entryVendorTask.getJobs().totalCount == 1
    c.setKs(c.generateSession("not-the-secret", "", 2, VENDOR).decode())
    with pytest.raises(KalturaException) as exc:
        c.reach.entryVendorTask.getJobs()
    assert exc.value.code == "INVALID_KS"


def test_full_lifecycle_with_the_official_client(emu, clock):
    created = order(emu, clock, tasks=EN_FR, reach_profile={"maxCharactersPerCaptionLine": 32})
    c, ks = vendor_client(emu)
    tasks = c.reach.entryVendorTask.getJobs(KalturaEntryVendorTaskFilter(statusEqual=1)).objects
    translation = tasks[1]

    # get with the reach_vendor profile, using the task's accessKey: relatedObjects deserialise
    # into typed list responses keyed by name.
    c.setKs(translation.accessKey)
    c.setResponseProfile(KalturaResponseProfileHolder(systemName="reach_vendor"))
    got = c.reach.entryVendorTask.get(translation.id)
    related = got.relatedObjects
    assert set(related) == {"reach_vendor_catalog_item", "reach_vendor_profile"}
    assert isinstance(related["reach_vendor_catalog_item"], KalturaVendorCatalogItemListResponse)
    assert isinstance(related["reach_vendor_profile"], KalturaReachProfileListResponse)
    item = related["reach_vendor_catalog_item"].objects[0]
    assert isinstance(item, KalturaVendorLiveTranslationCatalogItem)
    assert item.sourceLanguage.getValue() == "English" and item.targetLanguage.getValue() == "French"
    assert item.serviceFeature.getValue() == 11 and item.durationLimit == 480
    profile = related["reach_vendor_profile"].objects[0]
    assert isinstance(profile, KalturaReachProfile)
    assert profile.maxCharactersPerCaptionLine == 32 and profile.enableProfanityRemoval.getValue() == 1
    # The trimmed task of the seed: taskJobData carries only its objectType, no serviceFeature.
    assert isinstance(got.taskJobData, KalturaScheduledVendorTaskData)
    assert got.taskJobData.scheduledEventId is NotImplemented
    assert got.serviceFeature is NotImplemented

    # Without the profile (the client keeps it until reset: facts.md), the full task.
    c.setResponseProfile(None)
    assert c.reach.entryVendorTask.get(translation.id).serviceFeature.getValue() == 11

    event = c.schedule.scheduleEvent.get(created["event_id"])
    assert isinstance(event, KalturaLiveStreamScheduleEvent)
    names = {f.systemName: f for f in event.liveFeatures}
    feature = names[f"LiveCaptionFeature-reach-{translation.id}"]
    assert isinstance(feature, KalturaLiveCaptionFeature) and feature.language == "fra"
    assert names[f"LiveCaptionFeature-reach-{tasks[0].id}"].language == "eng"

    update = KalturaLiveCaptionFeature(
        mediaUrl="rtmp://ingest.example.com:1935/live",
        mediaKey="mk",
        captionUrl="wss://c.example.com/v1",
        captionToken="ct",
    )
    after = c.schedule.scheduleEvent.updateLiveFeature(event.id, feature.systemName, update)
    updated = {f.systemName: f for f in after.liveFeatures}
    assert updated[feature.systemName].mediaKey == "mk" and updated[feature.systemName].captionToken == "ct"
    assert updated[feature.systemName].language == "fra"  # merged, not replaced
    assert updated[f"LiveCaptionFeature-reach-{tasks[0].id}"].mediaKey is NotImplemented

    c.setKs(ks)
    scheduled = c.reach.entryVendorTask.updateJob(
        translation.id, KalturaEntryVendorTask(status=KalturaEntryVendorTaskStatus.SCHEDULED, externalTaskId="rl-1")
    )
    assert scheduled.status.getValue() == 9 and scheduled.externalTaskId == "rl-1"
    extended = c.reach.entryVendorTask.extendAccessKey(translation.id)
    assert extended.accessKey != translation.accessKey
    jobs = c.reach.entryVendorTask.getJobs(KalturaEntryVendorTaskFilter(statusEqual=9))
    assert [t.id for t in jobs.objects] == [translation.id]
    processing = c.reach.entryVendorTask.updateJob(translation.id, KalturaEntryVendorTask(status=3))
    assert processing.status.getValue() == 3
    ready = c.reach.entryVendorTask.updateJob(translation.id, KalturaEntryVendorTask(status=2, accuracy=93))
    assert ready.status.getValue() == 2 and ready.accuracy == 93 and ready.finishTime

    # Final state, and the accessKey is invalid after READY.
    with pytest.raises(KalturaException) as final:
        c.reach.entryVendorTask.updateJob(translation.id, KalturaEntryVendorTask(status=6))
    assert final.value.code == "CANNOT_UPDATE_STATUS_OF_TASK_WHICH_IS_IN_FINAL_STATE"
    c.setKs(extended.accessKey)
    with pytest.raises(KalturaException) as revoked:
        c.reach.entryVendorTask.get(translation.id)
    assert revoked.value.code == "INVALID_KS"


def test_sticky_response_profile_trims_get_jobs(emu, clock):
    """The trap facts.md warns about: a profile left on the client also trims getJobs' tasks."""
    order(emu, clock)
    c, _ = vendor_client(emu)
    c.setResponseProfile(KalturaResponseProfileHolder(systemName="reach_vendor"))
    task = c.reach.entryVendorTask.getJobs().objects[0]
    assert task.serviceFeature is NotImplemented and task.taskJobData.scheduledEventId is NotImplemented
    assert task.relatedObjects["reach_vendor_catalog_item"].objects[0].serviceFeature.getValue() == 8


def test_errors_reach_the_client_as_kaltura_exceptions(emu, clock):
    created = order(emu, clock)
    task_id = created["task_ids"][0]
    c, _ = vendor_client(emu)
    with pytest.raises(KalturaException) as forbidden:
        c.reach.entryVendorTask.get(task_id)  # vendor KS where the accessKey is needed
    assert forbidden.value.code == "SERVICE_FORBIDDEN"
    emu.delete(task_id)
    with pytest.raises(KalturaException) as gone:
        c.reach.entryVendorTask.updateJob(task_id, KalturaEntryVendorTask(status=9))
    assert gone.value.code == "ENTRY_VENDOR_TASK_NOT_FOUND"
    assert f"[{task_id}]" in str(gone.value)
    c.setKs(None)
    with pytest.raises(KalturaException) as missing:
        c.reach.entryVendorTask.getJobs()
    assert missing.value.code == "MISSING_KS"


def test_expired_vendor_ks(emu, clock):
    order(emu, clock)
    c, _ = vendor_client(emu)
    clock.advance(86400 + 1)
    with pytest.raises(KalturaException) as exc:
        c.reach.entryVendorTask.getJobs()
    assert exc.value.code == "INVALID_KS" and "EXPIRED" in str(exc.value)


def test_multirequest_through_the_client(emu, clock):
    created = order(emu, clock)
    c, _ = vendor_client(emu)
    c.startMultiRequest()
    c.reach.entryVendorTask.getJobs()
    c.reach.entryVendorTask.extendAccessKey(created["task_ids"][0])  # PENDING: refused
    c.reach.vendorCatalogItem.get(33962)
    jobs, refused, item = c.doMultiRequest()
    assert jobs.totalCount == 1
    assert isinstance(refused, KalturaException) and refused.code == "CANNOT_EXTEND_ACCESS_KEY"
    assert isinstance(item, KalturaVendorLiveCaptionCatalogItem) and item.id == 33962
