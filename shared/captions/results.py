"""Validated models of KWIKmotion's result messages (KWIKmotion seed, "Server → Client Messages").

``AddTranscript`` carries ``metadata.{transcript, start_time, end_time, language, chunk_index,
word_count}``; ``AddTranslation`` carries ``metadata.{translation, target_language, start_time,
end_time}``, one per target language per transcript. Times are seconds of the KWIKmotion
session's audio. A message is either accepted whole or rejected with :class:`InvalidResult`
naming every bad field: never half-converted. Types are strict (``"1.5"`` is not a time, ``true``
is not an index); unknown extra fields are ignored so a newer server version does not break us.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class InvalidResult(ValueError):
    """A KWIKmotion result that does not follow the seed's message format.

    ``reason`` names the offending fields and never quotes their values (a transcript can be
    long, and an error message is no place for content).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_STRICT = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False, frozen=True)


class _Timed(BaseModel):
    model_config = _STRICT

    start_time: float = Field(ge=0)
    end_time: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> _Timed:
        if self.end_time < self.start_time:
            raise ValueError("end_time is before start_time")
        return self


class Transcript(_Timed):
    """``AddTranscript.metadata``: a final transcript of one audio chunk."""

    kind: Literal["transcript"] = Field(default="transcript", exclude=True)
    transcript: str
    language: str
    chunk_index: int = Field(ge=0)
    word_count: int = Field(ge=0)

    @property
    def text(self) -> str:
        return self.transcript


class Translation(_Timed):
    """``AddTranslation.metadata``: one target language's translation of a transcript."""

    kind: Literal["translation"] = Field(default="translation", exclude=True)
    translation: str
    target_language: str = Field(min_length=1)

    @property
    def text(self) -> str:
        return self.translation


Result = Transcript | Translation

_MODELS: dict[str, type[Transcript] | type[Translation]] = {
    "AddTranscript": Transcript,
    "AddTranslation": Translation,
}


def _reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"]) or "metadata"
        parts.append(f"metadata.{loc}: {err['msg']}")
    return "; ".join(parts)


def parse_result(msg: dict[str, Any] | str | bytes) -> Transcript | Translation:
    """Validate one ``AddTranscript`` / ``AddTranslation`` message (a dict or its JSON).

    Raises :class:`InvalidResult` for anything else: not JSON, not an object, another message
    type, missing ``metadata``, a missing or wrong-typed field, a negative or non-finite time,
    ``end_time`` before ``start_time``.
    """
    if isinstance(msg, str | bytes | bytearray):
        try:
            msg = json.loads(msg)
        except (ValueError, UnicodeDecodeError):
            raise InvalidResult("not JSON") from None
    if not isinstance(msg, dict):
        raise InvalidResult("not a JSON object")
    name = msg.get("message")
    model = _MODELS.get(name) if isinstance(name, str) else None
    if model is None:
        raise InvalidResult("message is not AddTranscript or AddTranslation")
    meta = msg.get("metadata")
    if not isinstance(meta, dict):
        raise InvalidResult("metadata: missing or not an object")
    meta = {k: v for k, v in meta.items() if k != "kind"}  # `kind` is ours, never theirs
    try:
        return model.model_validate(meta)
    except ValidationError as exc:
        raise InvalidResult(_reason(exc)) from None
