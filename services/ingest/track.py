"""A publisher's decoded audio: 16 kHz mono s16le samples with their source pts and arrival
epoch, from which the writer cuts chunks and a hot standby finds where the primary stopped.

Sample positions are absolute within the track (``head`` is the position of the first sample
not yet consumed), so marks stay valid as the head advances. Up to ``retain`` samples before the
head are kept too (``rewind``): the writer's last seconds, to write again what a Redis failover
lost after acknowledging it (issue 18).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque

RATE = 16000
BYTES_PER_SAMPLE = 2
REANCHOR_SECONDS = 0.05


class Track:
    def __init__(self, retain: int = 0) -> None:
        self._pcm = bytearray()
        self.retain = retain  # samples kept before the head (see ``rewind``)
        self.base = 0  # absolute position of _pcm[0] (the oldest sample kept)
        self.head = 0  # absolute position of the first sample not consumed
        # (absolute position, pts seconds, arrival epoch) where a message's samples start.
        self._marks: deque[tuple[int, float, float]] = deque()
        self._anchor: tuple[int, float] | None = None  # (position, pts) the sample count runs from

    @property
    def end(self) -> int:
        return self.base + len(self._pcm) // BYTES_PER_SAMPLE

    @property
    def available(self) -> int:
        return self.end - self.head

    def append(self, pcm: bytes, pts: float, epoch: float) -> None:
        if not pcm:
            return
        # RTMP timestamps are whole milliseconds (an AAC frame lasts 23.2 ms), so a message's pts
        # is off by up to 0.5 ms. Counting samples from an anchor is exact; re-anchor only on a
        # real discontinuity in the source timestamps.
        if self._anchor is not None:
            expected = self._anchor[1] + (self.end - self._anchor[0]) / RATE
            if abs(pts - expected) <= REANCHOR_SECONDS:
                pts = expected
            else:
                self._anchor = (self.end, pts)
        else:
            self._anchor = (self.end, pts)
        self._marks.append((self.end, pts, epoch))
        self._pcm += pcm

    def at(self, pos: int) -> tuple[float, float]:
        """(pts, epoch) of the sample at absolute position ``pos`` (extrapolated from its mark)."""
        if not self._marks:
            return 0.0, 0.0
        starts = [m[0] for m in self._marks]
        i = max(bisect_right(starts, pos) - 1, 0)
        start, pts, epoch = self._marks[i]
        return pts + (pos - start) / RATE, epoch

    def peek(self, n: int) -> tuple[bytes, float, float]:
        """Up to ``n`` samples from the head with the head's (pts, epoch), left in place."""
        n = min(n, self.available)
        pts, epoch = self.at(self.head)
        start = (self.head - self.base) * BYTES_PER_SAMPLE
        return bytes(self._pcm[start : start + n * BYTES_PER_SAMPLE]), pts, epoch

    def drop(self, n: int) -> None:
        """Consume ``n`` samples from the head (the last ``retain`` consumed are still kept)."""
        self.head += min(max(n, 0), self.available)
        cut = self.head - self.retain - self.base
        if cut > self.retain // 4:  # in steps: each cut moves what is kept
            del self._pcm[: cut * BYTES_PER_SAMPLE]
            self.base += cut
        # Keep the mark that covers the oldest sample kept; forget older ones.
        while len(self._marks) > 1 and self._marks[1][0] <= self.base:
            self._marks.popleft()

    def rewind(self, pos: int) -> bool:
        """Move the head back to ``pos`` if still kept (True)."""
        if not self.base <= pos <= self.head:
            return False
        self.head = pos
        return True

    def keep_last(self, n: int) -> None:
        """A standby holds only the recent past (enough to cover a primary's lease)."""
        if self.available > n:
            self.drop(self.available - n)

    def find_pts(self, pts: float, epoch: float, tolerance: float) -> int | None:
        """Position of source time ``pts`` if held and it arrived within ``tolerance`` s of
        ``epoch`` (the same media reached both publishers), else None."""
        if not self._marks or self.available == 0:
            return None
        for start, mpts, mepoch in reversed(self._marks):
            if mpts <= pts + 1e-9:
                pos = start + round((pts - mpts) * RATE)
                if pos > self.end + RATE // 10 or abs(mepoch - epoch) > tolerance:
                    return None
                return max(pos, self.head)
        return None

    def first_after_epoch(self, epoch: float) -> int:
        """Position of the first message that arrived after ``epoch`` (end if none)."""
        for start, _pts, mepoch in self._marks:
            if mepoch > epoch:
                return max(start, self.head)
        return self.end
