"""FLV-level helpers for RTMP media: aggregate messages, audio tag headers, timestamp unwrap.

RTMP audio/video message bodies are FLV tag bodies (FLV spec v10, annex E.4.2). Aggregate
messages (RTMP 1.0 section 7.1.6) carry FLV tags back to back, each
followed by a 4-byte back pointer; their timestamps are shifted so the first equals the
aggregate's own timestamp.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from shared.rtmp.errors import ProtocolError

MAX_SUBMESSAGES = 4096

# SoundFormat (FLV spec E.4.2.1)
LPCM_BE, ADPCM, MP3, LPCM_LE = 0, 1, 2, 3
NELLYMOSER_16K, NELLYMOSER_8K, NELLYMOSER, G711_ALAW, G711_MULAW = 4, 5, 6, 7, 8
AAC, SPEEX, MP3_8K = 10, 11, 14
CODEC_NAMES = {MP3: "mp3", MP3_8K: "mp3", AAC: "aac", SPEEX: "speex", G711_ALAW: "alaw", G711_MULAW: "mulaw"}
AAC_SEQUENCE_HEADER, AAC_RAW = 0, 1


def split_aggregate(
    payload: bytes, timestamp: int, types: Collection[int] | None = None
) -> list[tuple[int, int, bytes]]:
    """(type id, 32-bit timestamp, body) of each message inside an aggregate message; only those
    of ``types`` when given (the others are checked, not copied)."""
    out: list[tuple[int, int, bytes]] = []
    pos, n = 0, len(payload)
    offset: int | None = None
    seen = 0  # sub-messages left out (types)
    while pos < n:
        if n - pos < 11:
            raise ProtocolError("aggregate", "truncated sub-message header")
        if len(out) + seen >= MAX_SUBMESSAGES:
            raise ProtocolError("aggregate", "too many sub-messages")
        type_id = payload[pos]
        size = int.from_bytes(payload[pos + 1 : pos + 4], "big")
        ts = int.from_bytes(payload[pos + 4 : pos + 7], "big") | (payload[pos + 7] << 24)
        body_start = pos + 11
        if size > n - body_start:
            raise ProtocolError("aggregate", f"sub-message of {size} bytes past the end")
        if offset is None:
            offset = timestamp - ts
        if types is None or type_id in types:
            out.append((type_id, (ts + offset) & 0xFFFFFFFF, bytes(payload[body_start : body_start + size])))
        else:
            seen += 1
        pos = body_start + size
        # The back pointer (previous tag size) is optional at the very end of the body.
        if n - pos >= 4:
            pos += 4
        elif pos != n:
            raise ProtocolError("aggregate", "truncated back pointer")
    return out


@dataclass(frozen=True, slots=True)
class AudioTag:
    sound_format: int
    sound_rate: int  # 0..3 → 5.5, 11, 22, 44 kHz (AAC always says 3)
    sound_size: int  # 0 = 8-bit, 1 = 16-bit
    stereo: bool
    aac_packet_type: int | None  # AAC only: 0 sequence header, 1 raw
    data: bytes

    @property
    def codec(self) -> str:
        return CODEC_NAMES.get(self.sound_format, f"format{self.sound_format}")


def parse_audio_tag(payload: bytes) -> AudioTag | None:
    """The FLV AUDIODATA header of an RTMP audio message; None for an empty message."""
    if not payload:
        return None
    b0 = payload[0]
    fmt = b0 >> 4
    if fmt == AAC:
        if len(payload) < 2:
            raise ProtocolError("audio", "AAC audio message without a packet type")
        return AudioTag(fmt, (b0 >> 2) & 3, (b0 >> 1) & 1, bool(b0 & 1), payload[1], bytes(payload[2:]))
    return AudioTag(fmt, (b0 >> 2) & 3, (b0 >> 1) & 1, bool(b0 & 1), None, bytes(payload[1:]))


class TimestampUnwrapper:
    """32-bit RTMP millisecond timestamps → a monotonic-ish 64-bit count (they wrap after ~49.7
    days; a jump back by more than half the range is a wrap, a small one is jitter)."""

    def __init__(self) -> None:
        self._last: int | None = None
        self._base = 0

    def __call__(self, ts: int) -> int:
        ts &= 0xFFFFFFFF
        if self._last is not None:
            diff = ts - self._last
            if diff < -(1 << 31):
                self._base += 1 << 32
            elif diff > (1 << 31) and self._base:
                self._base -= 1 << 32
        self._last = ts
        return self._base + ts
