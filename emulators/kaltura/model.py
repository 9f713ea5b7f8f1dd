"""The Kaltura objects the emulator holds and how Kaltura renders them (seed + facts.md "Objects").

Key orders follow the seed's JSON examples (getJobs, get with ``reach_vendor``, vendorCatalogItem.get,
scheduleEvent.get, updateLiveFeature); optional fields sit where the official client declares them.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field
from typing import Any

from emulators.kaltura.wire import KMap

# EntryVendorTaskStatus (facts.md "Enums")
PENDING, READY, PROCESSING, PENDING_MODERATION, REJECTED, ERROR, ABORTED, PENDING_ENTRY_READY, SCHEDULED = range(1, 10)
FINAL = frozenset({READY, ERROR, ABORTED, REJECTED})
# Moving to PROCESSING or ABORTED is allowed only from these (facts.md "Calls and permissions").
STARTABLE = frozenset({PENDING, PENDING_MODERATION, PENDING_ENTRY_READY, SCHEDULED})
LIVE_CAPTION, LIVE_TRANSLATION = 8, 11

FEATURE_PREFIX = "LiveCaptionFeature-reach-"
FEATURE_ORDER = (
    "systemName", "preStartTime", "postEndTime", "mediaUrl", "mediaKey", "captionUrl", "captionToken",
    "inputDelay", "captionFormat", "language", "objectType",
)  # fmt: skip
# The fields a KalturaLiveCaptionFeature update may carry (KalturaLiveFeature + KalturaLiveCaptionFeature).
FEATURE_UPDATABLE = {
    "preStartTime": int, "postEndTime": int, "mediaUrl": str, "mediaKey": str, "captionUrl": str,
    "captionToken": str, "inputDelay": int, "captionFormat": str, "language": str,
}  # fmt: skip

DEFAULT_REACH_PROFILE: dict[str, Any] = {
    "name": "Default test profile",
    "defaultOutputFormat": 1,
    "enableMetadataExtraction": True,
    "enableSpeakerChangeIndication": False,
    "enableAudioTags": False,
    "enableProfanityRemoval": True,
    "maxCharactersPerCaptionLine": 26,
    "labelAdditionForMachineServiceType": "",
    "labelAdditionForHumanServiceType": "",
    "contentDeletionPolicy": 2,
    "flavorParamsIds": "",
    "vendorTaskProcessingRegion": 1,
}


def entry_id() -> str:
    return "1_" + "".join(random.choices(string.ascii_lowercase + string.digits, k=8))


def ordered(obj: dict[str, Any], order: tuple[str, ...]) -> dict[str, Any]:
    out = {k: obj[k] for k in order if k in obj}
    out.update({k: v for k, v in obj.items() if k not in out})
    return out


@dataclass
class CatalogItem:
    id: int
    vendor_partner_id: int
    service_feature: int
    source_language: str
    target_language: str | None
    created_at: int
    service_type: int = 2
    duration_limit: int = 480  # minutes
    minimal_order_time: int = 30  # minutes
    minimal_refund_time: int = 30
    start_time_buffer: int | None = None  # seconds (KalturaVendorLiveCaptionCatalogItem)
    end_time_buffer: int | None = None
    engine_type: str = "OpenCalaisReachVendor.OPEN_CALAIS"

    @property
    def object_type(self) -> str:
        if self.service_feature == LIVE_TRANSLATION:
            return "KalturaVendorLiveTranslationCatalogItem"
        if self.service_feature == LIVE_CAPTION:
            return "KalturaVendorLiveCaptionCatalogItem"
        return "KalturaVendorCaptionsCatalogItem"

    @property
    def name(self) -> str:
        kind = "translation" if self.service_feature == LIVE_TRANSLATION else "captions"
        langs = self.source_language + (f"-{self.target_language}" if self.target_language else "")
        return f"test-live-{kind}-{langs}".lower().replace(" ", "")

    def _tail(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "serviceType": self.service_type,
            "serviceFeature": self.service_feature,
            "turnAroundTime": -1,
            "engineType": self.engine_type,
            "sourceLanguage": self.source_language,
        }
        if self.target_language is not None:
            out["targetLanguage"] = self.target_language
        out.update({"allowResubmission": False, "stage": 2, "contract": "", "createdBy": "", "notes": ""})
        return out

    def _limits(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "minimalRefundTime": self.minimal_refund_time,
            "minimalOrderTime": self.minimal_order_time,
            "durationLimit": self.duration_limit,
        }
        # Only the caption item declares the buffers; the seed leaves them out when unset.
        if self.object_type == "KalturaVendorLiveCaptionCatalogItem":
            if self.start_time_buffer is not None:
                out["startTimeBuffer"] = self.start_time_buffer
            if self.end_time_buffer is not None:
                out["endTimeBuffer"] = self.end_time_buffer
        return out

    def render(self) -> dict[str, Any]:
        """vendorCatalogItem.get (the seed's full example)."""
        out: dict[str, Any] = {
            "id": self.id,
            "vendorPartnerId": self.vendor_partner_id,
            "name": self.name,
            "systemName": self.name,
            "createdAt": self.created_at,
            "updatedAt": self.created_at,
            "status": 2,
        }
        out.update(self._tail())
        out.update({"enableSpeakerId": False, "fixedPriceAddons": 0})
        out.update(self._limits())
        out["objectType"] = self.object_type
        return out

    def render_related(self) -> dict[str, Any]:
        """The ``reach_vendor_catalog_item`` related object (the seed's trimmed form: no id)."""
        out = self._tail()
        out["enableSpeakerId"] = False
        out.update(self._limits())
        out["objectType"] = self.object_type
        return out


@dataclass
class ReachProfile:
    id: int
    partner_id: int
    fields: dict[str, Any]

    def render_related(self) -> dict[str, Any]:
        return {**self.fields, "objectType": "KalturaReachProfile"}

    def render(self) -> dict[str, Any]:
        return {"id": self.id, "partnerId": self.partner_id, **self.fields, "objectType": "KalturaReachProfile"}


@dataclass
class Task:
    id: str
    partner_id: int
    vendor_partner_id: int
    event_id: int
    entry_id: str
    catalog_item_id: int
    reach_profile_id: int
    service_feature: int
    created_at: int
    start: int  # taskJobData.startDate: the event start minus the pre-start buffer
    end: int
    user_id: str
    access_key: str = ""
    status: int = PENDING
    updated_at: int = 0
    finish_time: int | None = None
    err_description: str | None = None
    accuracy: int | None = None
    output_object_id: str | None = None
    external_task_id: str | None = None
    service_type: int = 2
    version: int = 0

    def job_data(self, trimmed: bool = False) -> dict[str, Any]:
        if trimmed:
            return {"objectType": "KalturaScheduledVendorTaskData"}
        return {
            "entryDuration": (self.end - self.start) * 1000,
            "startDate": self.start,
            "endDate": self.end,
            "scheduledEventId": self.event_id,
            "objectType": "KalturaScheduledVendorTaskData",
        }

    def render(self) -> dict[str, Any]:
        """The full KalturaEntryVendorTask (getJobs, updateJob, extendAccessKey)."""
        out: dict[str, Any] = {
            "id": self.id,
            "partnerId": self.partner_id,
            "vendorPartnerId": self.vendor_partner_id,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at or self.created_at,
            "queueTime": self.created_at,
            "finishTime": self.finish_time,
            "entryId": self.entry_id,
            "status": self.status,
            "reachProfileId": self.reach_profile_id,
            "catalogItemId": self.catalog_item_id,
            "price": 0,
            "userId": self.user_id,
            "errDescription": self.err_description,
            "accessKey": self.access_key,
            "version": self.version,
            "accuracy": self.accuracy,
            "outputObjectId": self.output_object_id,
            "creationMode": 1,
            "taskJobData": self.job_data(),
            "expectedFinishTime": self.created_at + 7 * 86400,
            "serviceType": self.service_type,
            "serviceFeature": self.service_feature,
            "turnAroundTime": -1,
            "externalTaskId": self.external_task_id,
            "objectType": "KalturaEntryVendorTask",
        }
        return {k: v for k, v in out.items() if v is not None}

    def render_reach_vendor(self, catalog: CatalogItem, profile: ReachProfile) -> dict[str, Any]:
        """The ``reach_vendor`` response profile: the seed's trimmed task plus related objects."""
        related = KMap(
            reach_vendor_catalog_item={
                "totalCount": 1,
                "objects": [catalog.render_related()],
                "objectType": "KalturaVendorCatalogItemListResponse",
            },
            reach_vendor_profile={
                "totalCount": 1,
                "objects": [profile.render_related()],
                "objectType": "KalturaReachProfileListResponse",
            },
        )
        return {
            "relatedObjects": related,
            "id": self.id,
            "partnerId": self.partner_id,
            "vendorPartnerId": self.vendor_partner_id,
            "createdAt": self.created_at,
            "entryId": self.entry_id,
            "status": self.status,
            "reachProfileId": self.reach_profile_id,
            "catalogItemId": self.catalog_item_id,
            "accessKey": self.access_key,
            "version": self.version,
            "taskJobData": self.job_data(trimmed=True),
            "objectType": "KalturaEntryVendorTask",
        }


@dataclass
class Event:
    id: int
    partner_id: int
    summary: str
    start: int
    end: int
    entry_id: str
    created_at: int
    pre_start: int = 0
    post_end: int = 0
    updated_at: int = 0
    sequence: int = 1
    description: str = ""
    status: int = 2
    organizer: str = "889800133a387a16d64e5bc83a6d351b8cbfd07ac429035108755612c27493fc"
    owner_id: str = "kmsAdminServiceUser"
    features: list[dict[str, Any]] = field(default_factory=list)

    def feature(self, name: str) -> dict[str, Any] | None:
        return next((f for f in self.features if f.get("systemName") == name), None)

    def render(self) -> dict[str, Any]:
        """The KalturaLiveStreamScheduleEvent of the seed's scheduleEvent.get example."""
        return {
            "id": self.id,
            "partnerId": self.partner_id,
            "summary": self.summary,
            "description": self.description,
            "status": self.status,
            "startDate": self.start,
            "endDate": self.end,
            "classificationType": 1,
            "organizer": self.organizer,
            "ownerId": self.owner_id,
            "sequence": self.sequence,
            "recurrenceType": 0,
            "duration": self.end - self.start,
            "tags": "",
            "createdAt": self.created_at,
            "updatedAt": self.updated_at or self.created_at,
            "templateEntryId": self.entry_id,
            "blackoutConflicts": [],
            "projectedAudience": 0,
            "preStartTime": self.pre_start,
            "postEndTime": self.post_end,
            "liveFeatures": [ordered(dict(f), FEATURE_ORDER) for f in self.features],
            "objectType": "KalturaLiveStreamScheduleEvent",
        }
