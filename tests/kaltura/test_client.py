"""The facade (over the official KalturaApiClient) against the Kaltura emulator: both sides must
agree with the seed's requests and responses, and every failure comes back typed."""

from __future__ import annotations

import time
from typing import Any

import pytest

from shared.kaltura import KalturaFacade, errors
from shared.kaltura.errors import KalturaError, KalturaPermanentError, KalturaRetryableError
from shared.kaltura.models import LIVE_CAPTION, LIVE_TRANSLATION, PENDING, PROCESSING, SCHEDULED, feature_name
from tests.kaltura.support import (
    CAPTION,
    CUSTOMER_PARTNER,
    VENDOR_PARTNER,
    Admin,
    event_spec,
    running_emulator,
    settings_for,
    translation,
)


def make(url: str, **kw: Any) -> tuple[KalturaFacade, list[tuple[str, str, str | None]]]:
    seen: list[tuple[str, str, str | None]] = []
    facade = KalturaFacade(settings_for(url, **kw), observe=lambda s, a, _t, code: seen.append((s, a, code)))
    return facade, seen


def test_session_start_and_get_jobs(emulator: Any, admin: Admin) -> None:
    made = admin.create_event(**event_spec(CAPTION, translation("French")))
    facade, seen = make(emulator.url)
    jobs = facade.get_jobs()
    assert sorted(j.id for j in jobs) == sorted(made["task_ids"])
    job = next(j for j in jobs if j.id == made["task_ids"][0])
    # The seed's getJobs object: status, partner, schedule data in taskJobData, the accessKey.
    assert job.status == PENDING and job.partner_id == CUSTOMER_PARTNER
    assert job.scheduled_event_id == made["event_id"] and job.end - job.start == 3600
    assert job.service_feature == LIVE_CAPTION and job.access_key
    assert ("session", "start", None) in seen
    start = admin.calls_of("session", "start")[0]
    assert start["params"].get("type") in ("2", 2)  # an ADMIN session
    assert admin.calls_of("reach_entryvendortask", "getJobs")[0]["ks_kind"] == "vendor"


def test_app_token_session(emulator: Any, admin: Admin) -> None:
    admin.create_event(**event_spec(CAPTION))
    facade, _ = make(emulator.url, app_token=True)
    assert len(facade.get_jobs()) == 1
    actions = [(c["service"], c["action"]) for c in admin.calls()]
    assert actions[:2] == [("session", "startWidgetSession"), ("apptoken", "startSession")]
    assert ("session", "start") not in actions
    assert admin.calls_of("reach_entryvendortask", "getJobs")[0]["ks_kind"] == "vendor"


def test_get_jobs_pages(emulator: Any, admin: Admin) -> None:
    ids = []
    for _ in range(3):
        ids += admin.create_event(**event_spec(CAPTION, translation("German")))["task_ids"]
    facade, _ = make(emulator.url)
    assert sorted(j.id for j in facade.iter_jobs(page_size=4)) == sorted(ids)
    assert len(admin.calls_of("reach_entryvendortask", "getJobs")) == 2
    assert facade.find_job(ids[3]).id == ids[3]


def test_get_with_reach_vendor_profile_then_without(emulator: Any, admin: Admin) -> None:
    made = admin.create_event(**event_spec(translation("French (Canada)")))
    facade, _ = make(emulator.url)
    job = facade.get_jobs()[0]
    details = facade.get_task(job.id, job.access_key)
    # The seed's related objects: the catalog item (feature, languages, durationLimit) and the profile.
    assert details.catalog_item is not None and details.reach_profile is not None
    assert details.catalog_item.service_feature == LIVE_TRANSLATION
    assert details.catalog_item.source_language == "English"
    assert details.catalog_item.target_language == "French (Canada)"
    assert details.catalog_item.duration_limit == 480
    assert details.reach_profile.max_chars == 26 and details.reach_profile.profanity_removal
    assert details.task.id == job.id
    gets = admin.calls_of("reach_entryvendortask", "get")
    assert gets[0]["ks_kind"] == "access_key"
    # The next call carries neither the profile nor the accessKey (the client would keep both).
    event = facade.get_schedule_event(made["event_id"], job.access_key, job.id)
    ev_call = admin.calls_of("schedule_scheduleevent", "get")[0]
    assert "responseProfile" not in str(ev_call["params"])
    assert event.feature(job.id) is not None and event.feature(job.id).language in ("fra", "fre")
    facade.get_jobs()
    assert admin.calls_of("reach_entryvendortask", "getJobs")[-1]["ks_kind"] == "vendor"


def test_update_live_feature_and_status_flow(emulator: Any, admin: Admin) -> None:
    made = admin.create_event(**event_spec(CAPTION))
    facade, _ = make(emulator.url)
    job = facade.get_jobs()[0]
    event = facade.update_live_feature(
        made["event_id"],
        job.id,
        job.access_key,
        media_url="rtmp://ingest.example.com:1935/live",
        media_key="mk-0123456789",
        caption_url="wss://captions.example.com/v1/captions",
        caption_token="ct-0123456789",
    )
    feat = event.feature(job.id)
    assert (feat.media_url, feat.media_key) == ("rtmp://ingest.example.com:1935/live", "mk-0123456789")
    assert (feat.caption_url, feat.caption_token) == ("wss://captions.example.com/v1/captions", "ct-0123456789")
    assert feat.language == "eng" and feat.system_name == feature_name(job.id)
    call = admin.calls_of("schedule_scheduleevent", "updateLiveFeature")[0]
    # The seed's request: featureName, objectType and only the four fields.
    assert call["params"]["featureName"] == feature_name(job.id)
    assert set(call["params"]["liveFeature"]) == {"objectType", "mediaUrl", "mediaKey", "captionUrl", "captionToken"}
    assert call["params"]["liveFeature"]["objectType"] == "KalturaLiveCaptionFeature"
    done = facade.update_job(job.id, SCHEDULED, external_task_id="reachlive:1:2")
    assert done.status == SCHEDULED and done.external_task_id == "reachlive:1:2"
    assert admin.task(job.id)["status"] == SCHEDULED
    extended = facade.extend_access_key(job.id)
    assert extended.access_key
    assert facade.update_job(job.id, PROCESSING).status == PROCESSING


def test_not_found_and_final_state_errors(emulator: Any, admin: Admin) -> None:
    made = admin.create_event(**event_spec(CAPTION, CAPTION | {"source_language": "English"}))
    facade, seen = make(emulator.url)
    jobs = facade.get_jobs()
    gone, aborted = jobs[0], jobs[1]
    admin.delete(gone.id)
    with pytest.raises(KalturaPermanentError) as info:
        facade.update_job(gone.id, SCHEDULED)
    assert info.value.code == errors.ENTRY_VENDOR_TASK_NOT_FOUND
    admin.abort(aborted.id)
    with pytest.raises(KalturaPermanentError) as info:
        facade.update_job(aborted.id, SCHEDULED)
    assert info.value.code == errors.CANNOT_UPDATE_STATUS_OF_TASK_WHICH_IS_IN_FINAL_STATE
    with pytest.raises(KalturaPermanentError) as info:
        facade.extend_access_key(aborted.id)
    assert info.value.code == errors.CANNOT_EXTEND_ACCESS_KEY
    # facts.md: the server rethrows FEATURE_NAME_NOT_FOUND inside its lock as the retryable code.
    with pytest.raises(KalturaError) as info:
        facade.update_live_feature(
            made["event_id"],
            aborted.id,
            aborted.access_key,
            media_url="rtmp://x/live",
            media_key="k" * 12,
            caption_url="wss://x/c",
            caption_token="t" * 12,
        )
    assert info.value.code in (errors.FEATURE_NAME_NOT_FOUND, errors.CANNOT_UPDATE_SCHEDULE_EVENT_FEATURE)
    assert "k" * 12 not in str(info.value) and "t" * 12 not in str(info.value)
    assert ("reach_entryvendortask", "updateJob", errors.ENTRY_VENDOR_TASK_NOT_FOUND) in seen


def test_expired_vendor_ks_renews_once_and_retries() -> None:
    # Kaltura's expiry is whole seconds (the emulator's too): a 1 s KS renewed late in a second
    # can expire before the retry, so 2 s, which leaves every renewed KS at least 1 s.
    with running_emulator(ks_expiry_seconds=2) as emu:
        admin = Admin(emu.url)
        admin.create_event(**event_spec(CAPTION))
        facade, seen = make(emu.url)
        assert len(facade.get_jobs()) == 1
        time.sleep(2.1)
        assert len(facade.get_jobs()) == 1  # INVALID_KS EXPIRED → session.start → retried
        assert ("reach_entryvendortask", "getJobs", errors.INVALID_KS) in seen
        assert len(admin.calls_of("session", "start")) == 2
        assert facade.session.renewals == 2


def test_invalid_access_key_is_permanent_and_redacted(emulator: Any, admin: Admin) -> None:
    admin.create_event(**event_spec(CAPTION))
    facade, _ = make(emulator.url)
    job = facade.get_jobs()[0]
    bogus = "djJ8" + "A" * 90
    with pytest.raises(KalturaPermanentError) as info:
        facade.get_task(job.id, bogus)
    assert info.value.code == errors.INVALID_KS and bogus not in str(info.value)


@pytest.mark.parametrize(
    ("kind", "code", "expected"),
    [
        ("http500", "", errors.HTTP_ERROR),
        ("error", errors.INTERNAL_SERVERL_ERROR, errors.INTERNAL_SERVERL_ERROR),
        ("error", errors.CANNOT_UPDATE_SCHEDULE_EVENT_FEATURE, errors.CANNOT_UPDATE_SCHEDULE_EVENT_FEATURE),
        ("delay", "", errors.NETWORK),
    ],
)
def test_transient_faults_are_retryable(emulator: Any, admin: Admin, kind: str, code: str, expected: str) -> None:
    made = admin.create_event(**event_spec(CAPTION))
    facade = KalturaFacade(settings_for(emulator.url, request_timeout_seconds=0.5))
    job = facade.get_jobs()[0]
    admin.fault("schedule_scheduleevent", "updateLiveFeature", kind, code=code, delay=2.0, count=1)
    with pytest.raises(KalturaRetryableError) as info:
        facade.update_live_feature(
            made["event_id"],
            job.id,
            job.access_key,
            media_url="rtmp://x/live",
            media_key="m" * 16,
            caption_url="wss://x/c",
            caption_token="c" * 16,
        )
    assert info.value.code == expected
    time.sleep(2.0 if kind == "delay" else 0)
    facade.update_live_feature(
        made["event_id"],
        job.id,
        job.access_key,
        media_url="rtmp://x/live",
        media_key="m" * 16,
        caption_url="wss://x/c",
        caption_token="c" * 16,
    )


def test_client_tag_names_vendor_and_task(emulator: Any, admin: Admin) -> None:
    admin.create_event(**event_spec(CAPTION))
    facade, _ = make(emulator.url)
    job = facade.get_jobs()[0]
    facade.update_job(job.id, SCHEDULED)
    params = admin.calls_of("reach_entryvendortask", "updateJob")[0]["params"]
    # facts.md: <default>_vendorName-<vendorPartnerId>[-<taskId>]
    assert params["clientTag"].endswith(f"_reachlive-{VENDOR_PARTNER}-{job.id}")
