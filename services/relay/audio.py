"""From the event's audio stream to KWIKmotion chunks (sans-I/O).

Ingest writes PCM entries (``INGEST_CHUNK_MS``, 2000 ms by default: one per default chunk); KWIKmotion wants
chunks of 2-10 s (seed: "Audio Chunk Sizes"). A chunk is made of *whole* stream entries, so that
"this chunk is transcribed" moves the persisted cursor to a stream id, and a replay from that id
rebuilds the same chunks (the grouping is a pure function of the entries after the cursor).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.streams import AudioChunk, StreamId

BYTES_PER_SECOND = AudioChunk.BYTES_PER_SECOND


def parse_id(entry_id: str) -> StreamId:
    """``"1700000000000-3"`` → ``(1700000000000, 3)``: stream ids compare as pairs, not text."""
    return StreamId.parse(entry_id)


def id_le(a: str, b: str) -> bool:
    return parse_id(a) <= parse_id(b)


@dataclass(slots=True)
class Chunk:
    """One KWIKmotion audio chunk: whole audio entries ``first_id``..``last_id``.

    ``kwik_t0`` is where the chunk starts on the KWIKmotion session's own clock (the audio sent
    on this connection before it); KWIKmotion's ``start_time``/``end_time`` are on that clock, and
    ``media_t0`` maps them back to the event's media time.
    """

    first_id: str
    last_id: str
    media_t0: float
    pts0: float
    epoch0: float
    pcm: bytes
    seq: int = -1  # KWIKmotion seq_no once sent (0-based on the connection)
    kwik_t0: float = 0.0
    sent_at: float = 0.0
    acked: bool = False
    pending: set[str] = field(default_factory=set)  # results still due: "transcript", target codes

    @property
    def duration(self) -> float:
        return len(self.pcm) / BYTES_PER_SECOND

    @property
    def media_t1(self) -> float:
        return self.media_t0 + self.duration


class Chunker:
    """Groups audio entries into chunks of at least ``chunk_seconds`` (the last one may be shorter).

    ``add`` returns the chunks completed by an entry; ``flush`` the partial chunk (at the end of
    the stream, or during a pause). Entry ids must arrive in stream order.

    ``breaks``: entry ids a chunk must end at. A chunk flushed during a pause ends early; if it
    was not fully answered before a reconnect, some tasks already have its results (their
    ``done`` position is its last entry). The replay ends a chunk there again, so each task's
    results start exactly after what it already has.
    """

    def __init__(self, chunk_seconds: float, breaks: frozenset[str] = frozenset()) -> None:
        self.chunk_bytes = round(chunk_seconds * AudioChunk.SAMPLE_RATE) * 2  # whole s16le samples
        self.breaks = breaks
        self._parts: list[bytes] = []
        self._size = 0
        self._first: tuple[str, AudioChunk] | None = None
        self._last_id = ""

    def add(self, entry_id: str, audio: AudioChunk) -> list[Chunk]:
        if not audio.pcm:
            return []
        if self._first is None:
            self._first = (entry_id, audio)
        self._parts.append(audio.pcm)
        self._size += len(audio.pcm)
        self._last_id = entry_id
        if self._size >= self.chunk_bytes or entry_id in self.breaks:
            return [self._take()]
        return []

    def flush(self) -> list[Chunk]:
        return [self._take()] if self._first is not None else []

    @property
    def buffered_seconds(self) -> float:
        return self._size / BYTES_PER_SECOND

    def _take(self) -> Chunk:
        assert self._first is not None
        first_id, first = self._first
        chunk = Chunk(
            first_id=first_id,
            last_id=self._last_id,
            media_t0=first.media_time,
            pts0=first.pts,
            epoch0=first.epoch,
            pcm=b"".join(self._parts),
        )
        self._parts, self._size, self._first = [], 0, None
        return chunk
