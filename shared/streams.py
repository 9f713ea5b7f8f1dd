"""Versioned payloads of the Redis streams that connect the services (docs/design.md section 8).

Fields are flat strings or raw bytes (never pickle). Readers reject an unknown version with
``PayloadError`` instead of guessing. ``redis`` returns bytes keys/values unless
``decode_responses`` is set; the decoders accept both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

VERSION = "1"


class PayloadError(ValueError):
    """A stream entry that does not follow the contract."""


class StreamId(NamedTuple):
    """A Redis stream id ``<ms>-<seq>``, ordered as Redis orders it."""

    ms: int
    seq: int

    @classmethod
    def parse(cls, value: str | bytes) -> StreamId:
        text = value.decode() if isinstance(value, bytes) else value
        ms, _, seq = text.partition("-")
        return cls(int(ms), int(seq or 0))

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}"


def _s(fields: dict[Any, Any], name: str) -> str:
    value = fields.get(name, fields.get(name.encode()))
    if value is None:
        raise PayloadError(f"missing field {name!r}")
    return value.decode() if isinstance(value, bytes) else str(value)


def _b(fields: dict[Any, Any], name: str) -> bytes:
    value = fields.get(name, fields.get(name.encode()))
    if value is None:
        raise PayloadError(f"missing field {name!r}")
    return value if isinstance(value, bytes) else str(value).encode()


def _check_version(fields: dict[Any, Any]) -> None:
    if _s(fields, "v") != VERSION:
        raise PayloadError(f"unsupported payload version {_s(fields, 'v')!r}")


@dataclass(frozen=True, slots=True)
class SessionEntry:
    """``keys.SESSIONS_STREAM``: a live event whose media started; a relay claims it."""

    event_id: str

    def fields(self) -> dict[str, str]:
        return {"v": VERSION, "event": self.event_id}

    @classmethod
    def parse(cls, fields: dict[Any, Any]) -> SessionEntry:
        _check_version(fields)
        return cls(event_id=_s(fields, "event"))


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """``keys.audio``: a chunk of 16 kHz mono s16le PCM.

    ``media_time`` is the start of the chunk in seconds since the start of the event's media,
    continuous across publisher reconnects; ``pts`` is the source pts (seconds) of its first
    sample; ``epoch`` the wall-clock time its source data arrived at ingest.
    """

    media_time: float
    pts: float
    epoch: float
    pcm: bytes

    SAMPLE_RATE = 16000
    BYTES_PER_SECOND = 32000

    @property
    def duration(self) -> float:
        return len(self.pcm) / self.BYTES_PER_SECOND

    def fields(self) -> dict[str, str | bytes]:
        return {
            "v": VERSION,
            "type": "audio",
            "t": repr(self.media_time),
            "pts": repr(self.pts),
            "epoch": repr(self.epoch),
            "pcm": self.pcm,
        }


@dataclass(frozen=True, slots=True)
class EndOfStream:
    """``keys.audio``: the media of the event ended (grace period over, or window over)."""

    media_time: float
    reason: str

    def fields(self) -> dict[str, str]:
        return {"v": VERSION, "type": "eos", "t": repr(self.media_time), "reason": self.reason}


def parse_audio(fields: dict[Any, Any]) -> AudioChunk | EndOfStream:
    _check_version(fields)
    kind = _s(fields, "type")
    try:
        if kind == "audio":
            return AudioChunk(
                media_time=float(_s(fields, "t")),
                pts=float(_s(fields, "pts")),
                epoch=float(_s(fields, "epoch")),
                pcm=_b(fields, "pcm"),
            )
        if kind == "eos":
            return EndOfStream(media_time=float(_s(fields, "t")), reason=_s(fields, "reason"))
    except ValueError as exc:
        raise PayloadError(f"bad audio entry: {exc}") from None
    raise PayloadError(f"unknown audio entry type {kind!r}")


@dataclass(frozen=True, slots=True)
class CaptionEntry:
    """``keys.captions``: one Kaltura WebSocket response, serialized and ready to send.

    ``kind`` is the response ``type`` (transcript | captions) so a reader can filter without
    parsing the JSON; ``eos`` marks the ``is_end_of_stream`` response; ``created`` is the
    epoch at which it was written (for the gateway's delivery-lag metric).
    """

    json: str
    kind: str
    eos: bool
    created: float

    def fields(self) -> dict[str, str]:
        return {
            "v": VERSION,
            "json": self.json,
            "kind": self.kind,
            "eos": "1" if self.eos else "0",
            "created": repr(self.created),
        }

    @classmethod
    def parse(cls, fields: dict[Any, Any]) -> CaptionEntry:
        _check_version(fields)
        try:
            return cls(
                json=_s(fields, "json"),
                kind=_s(fields, "kind"),
                eos=_s(fields, "eos") == "1",
                created=float(_s(fields, "created")),
            )
        except ValueError as exc:
            raise PayloadError(f"bad caption entry: {exc}") from None
