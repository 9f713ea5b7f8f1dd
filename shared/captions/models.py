"""Models of Kaltura's caption WebSocket response (Kaltura seed, "Websocket response - schema").

Every field of the schema, with the schema's types, in the schema's order (pydantic serialises
in declaration order, so the JSON reads like the seed). ``start_epoch`` is spelled as the schema
says, not as one Kaltura example's ``start_epoque`` (facts.md). Parsing is strict: an unknown or
missing field, a non-UUID id or a non-finite time is rejected, so these models double as the
contract check for anything that reads ``captions:{task}`` (the gateway, the tests). Scalars are
strict (``"yes"`` is not a boolean, ``"1.5"`` not a float); ids are UUIDs given as strings.
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, StrictBool, StrictFloat, StrictStr

ResponseType = Literal["transcript", "captions"]
ServiceType = Literal["transcription", "translation"]
ItemKind = Literal["text", "punct"]

_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class Item(BaseModel):
    """``alternatives[].items[]``: one word (``text``) or punctuation mark (``punct``)."""

    model_config = _CONFIG

    start: StrictFloat
    end: StrictFloat
    kind: ItemKind
    value: StrictStr
    speaker_id: UUID


class Speaker(BaseModel):
    """``speakers[]``: KWIKmotion has no diarization, so one speaker per event, label null."""

    model_config = _CONFIG

    id: UUID
    label: StrictStr | None


class Alternative(BaseModel):
    """``alternatives[]``: start/end/start_pts/start_epoch are the response's own (seed)."""

    model_config = _CONFIG

    transcript: StrictStr
    start: StrictFloat
    end: StrictFloat
    start_pts: StrictFloat
    start_epoch: StrictFloat
    items: list[Item]


class Response(BaseModel):
    """``response``: one transcript or captions response."""

    model_config = _CONFIG

    id: UUID
    type: ResponseType
    service_type: ServiceType
    language_code: StrictStr
    start: StrictFloat
    end: StrictFloat
    start_pts: StrictFloat
    start_epoch: StrictFloat
    is_final: StrictBool
    is_end_of_stream: StrictBool
    speakers: list[Speaker]
    alternatives: list[Alternative]


class Envelope(BaseModel):
    """The message on the wire: ``{"response": {...}}``."""

    model_config = _CONFIG

    response: Response
