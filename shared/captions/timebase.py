"""Where a media time sits in the source stream (pts) and on the wall clock (epoch).

Kaltura seed, field descriptions: ``start_pts`` is "the pts value corresponding to the start of
the response, as received from the input media stream" (equal to ``start`` when the stream has
no pts), and ``start_epoch`` "the epoch timestamp at which the media corresponding to the start
of the response was received". Ingest stamps every audio chunk with its media time, source pts
and arrival epoch (``shared.streams.AudioChunk``); the relay turns those into a time base and the
caption builder asks it about the start of each response.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import Protocol

from shared.streams import AudioChunk


class TimeBase(Protocol):
    def pts(self, media_time: float) -> float: ...

    def epoch(self, media_time: float) -> float: ...


@dataclass(frozen=True, slots=True)
class AnchoredTimeBase:
    """One anchor (media time, pts, epoch) and linear time after (and before) it."""

    media_time: float
    pts_at: float
    epoch_at: float

    @classmethod
    def from_chunk(cls, chunk: AudioChunk) -> AnchoredTimeBase:
        return cls(chunk.media_time, chunk.pts, chunk.epoch)

    @classmethod
    def no_pts(cls, media_time: float, epoch: float) -> AnchoredTimeBase:
        """A stream without pts: start_pts equals start (seed note)."""
        return cls(media_time, media_time, epoch)

    def pts(self, media_time: float) -> float:
        return self.pts_at + (media_time - self.media_time)

    def epoch(self, media_time: float) -> float:
        return self.epoch_at + (media_time - self.media_time)


class ChunkTimeBase:
    """Many anchors, e.g. one per audio chunk sent: a time maps through the last anchor at or
    before it (the first anchor for earlier times). pts can jump between chunks (a publisher
    reconnect restarts its timestamps while media time stays continuous), so one anchor is not
    enough for a result that spans several ingest chunks.

    ``prune(media_time)`` drops anchors no longer needed (keeps the one covering ``media_time``),
    and ``limit`` bounds memory if the caller never prunes.
    """

    __slots__ = ("_anchors", "_keys", "limit")

    def __init__(self, anchors: list[AnchoredTimeBase] | None = None, limit: int = 4096) -> None:
        self._anchors: list[AnchoredTimeBase] = []
        self._keys: list[float] = []
        self.limit = limit
        for a in anchors or ():
            self.add(a)

    def __len__(self) -> int:
        return len(self._anchors)

    def add(self, anchor: AnchoredTimeBase | AudioChunk) -> None:
        if isinstance(anchor, AudioChunk):
            anchor = AnchoredTimeBase.from_chunk(anchor)
        i = bisect_right(self._keys, anchor.media_time)
        if i and self._keys[i - 1] == anchor.media_time:
            self._anchors[i - 1] = anchor  # same media time re-sent (replay): latest wins
        else:
            self._keys.insert(i, anchor.media_time)
            self._anchors.insert(i, anchor)
        if len(self._anchors) > self.limit:
            del self._keys[0], self._anchors[0]

    def prune(self, media_time: float) -> None:
        i = bisect_right(self._keys, media_time) - 1
        if i > 0:
            del self._keys[:i], self._anchors[:i]

    def _at(self, media_time: float) -> AnchoredTimeBase:
        if not self._anchors:
            raise LookupError("time base has no anchor yet")
        i = bisect_right(self._keys, media_time) - 1
        return self._anchors[max(i, 0)]

    def pts(self, media_time: float) -> float:
        return self._at(media_time).pts(media_time)

    def epoch(self, media_time: float) -> float:
        return self._at(media_time).epoch(media_time)
