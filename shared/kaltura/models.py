"""Plain, typed views of the Kaltura objects the REACH lifecycle reads (seed; facts.md "Objects").

Built from the official client's objects (whose unset attributes are ``NotImplemented`` and whose
enums are wrapper objects), so the poller never touches the client's types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# EntryVendorTaskStatus (facts.md "Enums").
PENDING, READY, PROCESSING, PENDING_MODERATION, REJECTED, ERROR, ABORTED, PENDING_ENTRY_READY, SCHEDULED = (
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
)
FINAL_STATUSES = frozenset({READY, ERROR, ABORTED, REJECTED})
# VendorServiceFeature: the two live ones.
LIVE_CAPTION, LIVE_TRANSLATION = 8, 11
LIVE_FEATURES = frozenset({LIVE_CAPTION, LIVE_TRANSLATION})

FEATURE_PREFIX = "LiveCaptionFeature-reach-"


def feature_name(task_id: str | int) -> str:
    """The live feature Kaltura adds per task (facts.md): ``LiveCaptionFeature-reach-<taskId>``."""
    return f"{FEATURE_PREFIX}{task_id}"


def val(obj: Any, name: str, default: Any = None) -> Any:
    """An attribute of a client object: None/default when unset, enum wrappers unwrapped."""
    value = getattr(obj, name, NotImplemented) if obj is not None else NotImplemented
    if value is NotImplemented or value is None:
        return default
    if hasattr(value, "getValue"):
        return value.getValue()
    return value


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


@dataclass(slots=True)
class VendorTask:
    """An entryVendorTask as getJobs / updateJob return it (the seed's first example)."""

    id: str
    partner_id: int = 0
    entry_id: str = ""
    status: int = 0
    catalog_item_id: int = 0
    reach_profile_id: int = 0
    service_feature: int = 0  # absent from the trimmed reach_vendor `get` (facts.md)
    access_key: str = field(default="", repr=False)
    external_task_id: str = ""
    err_description: str = ""
    start: int = 0  # taskJobData.startDate
    end: int = 0  # taskJobData.endDate
    scheduled_event_id: int = 0  # taskJobData.scheduledEventId
    entry_duration_ms: int = 0

    @classmethod
    def from_client(cls, obj: Any) -> VendorTask:
        data = val(obj, "taskJobData")
        return cls(
            id=str(val(obj, "id", "")),
            partner_id=_int(val(obj, "partnerId")),
            entry_id=str(val(obj, "entryId", "")),
            status=_int(val(obj, "status")),
            catalog_item_id=_int(val(obj, "catalogItemId")),
            reach_profile_id=_int(val(obj, "reachProfileId")),
            service_feature=_int(val(obj, "serviceFeature")),
            access_key=str(val(obj, "accessKey", "")),
            external_task_id=str(val(obj, "externalTaskId", "")),
            err_description=str(val(obj, "errDescription", "")),
            start=_int(val(data, "startDate")),
            end=_int(val(data, "endDate")),
            scheduled_event_id=_int(val(data, "scheduledEventId")),
            entry_duration_ms=_int(val(data, "entryDuration")),
        )

    def public(self) -> dict[str, Any]:
        """The fields safe to log or to pass around without the accessKey."""
        return {
            "id": self.id,
            "partner_id": self.partner_id,
            "status": self.status,
            "service_feature": self.service_feature,
            "start": self.start,
            "end": self.end,
            "scheduled_event_id": self.scheduled_event_id,
            "external_task_id": self.external_task_id,
        }


@dataclass(slots=True)
class CatalogItem:
    id: int = 0
    service_feature: int = 0
    service_type: int = 0
    source_language: str = ""
    target_language: str = ""  # KalturaVendorLiveTranslationCatalogItem only
    duration_limit: int = 0  # minutes (facts.md); 0 = no limit given
    object_type: str = ""

    @classmethod
    def from_client(cls, obj: Any) -> CatalogItem:
        return cls(
            id=_int(val(obj, "id")),
            service_feature=_int(val(obj, "serviceFeature")),
            service_type=_int(val(obj, "serviceType")),
            source_language=str(val(obj, "sourceLanguage", "")),
            target_language=str(val(obj, "targetLanguage", "")),
            duration_limit=_int(val(obj, "durationLimit")),
            object_type=type(obj).__name__ if obj is not None else "",
        )


@dataclass(slots=True)
class ReachProfile:
    id: int = 0
    max_chars: int = 0  # maxCharactersPerCaptionLine; 0 = not given
    profanity_removal: bool = False

    @classmethod
    def from_client(cls, obj: Any) -> ReachProfile:
        return cls(
            id=_int(val(obj, "id")),
            max_chars=_int(val(obj, "maxCharactersPerCaptionLine")),
            profanity_removal=bool(val(obj, "enableProfanityRemoval", False)),
        )


@dataclass(slots=True)
class TaskDetails:
    """``entryVendorTask.get`` with ``responseProfile[systemName]=reach_vendor`` (the seed's second
    example): the trimmed task plus its related catalog item and reach profile."""

    task: VendorTask
    catalog_item: CatalogItem | None
    reach_profile: ReachProfile | None


@dataclass(slots=True)
class LiveFeature:
    system_name: str
    pre_start: int = 0
    post_end: int = 0
    language: str = ""
    media_url: str = ""
    media_key: str = field(default="", repr=False)
    caption_url: str = ""
    caption_token: str = field(default="", repr=False)
    object_type: str = ""

    @classmethod
    def from_client(cls, obj: Any) -> LiveFeature:
        return cls(
            system_name=str(val(obj, "systemName", "")),
            pre_start=_int(val(obj, "preStartTime")),
            post_end=_int(val(obj, "postEndTime")),
            language=str(val(obj, "language", "")),
            media_url=str(val(obj, "mediaUrl", "")),
            media_key=str(val(obj, "mediaKey", "")),
            caption_url=str(val(obj, "captionUrl", "")),
            caption_token=str(val(obj, "captionToken", "")),
            object_type=type(obj).__name__ if obj is not None else "",
        )


@dataclass(slots=True)
class ScheduleEvent:
    id: int
    partner_id: int = 0
    start: int = 0
    end: int = 0
    pre_start: int = 0
    post_end: int = 0
    status: int = 0
    features: list[LiveFeature] = field(default_factory=list)

    def feature(self, task_id: str | int) -> LiveFeature | None:
        name = feature_name(task_id)
        return next((f for f in self.features if f.system_name == name), None)

    @classmethod
    def from_client(cls, obj: Any) -> ScheduleEvent:
        return cls(
            id=_int(val(obj, "id")),
            partner_id=_int(val(obj, "partnerId")),
            start=_int(val(obj, "startDate")),
            end=_int(val(obj, "endDate")),
            pre_start=_int(val(obj, "preStartTime")),
            post_end=_int(val(obj, "postEndTime")),
            status=_int(val(obj, "status")),
            features=[LiveFeature.from_client(f) for f in (val(obj, "liveFeatures") or []) if f is not None],
        )
