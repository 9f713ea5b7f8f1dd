"""One accepted publish: decodes its audio and, as the event's primary, writes 16 kHz PCM
chunks on the event's timeline; as a hot standby, holds recent audio to continue from where
the primary stopped (DESIGN sections 2 and 3).

All methods run in the connection's task, one at a time (no locking needed).
"""

from __future__ import annotations

import logging
import uuid

from services.ingest import metrics
from services.ingest.coordinator import RATE, Coordinator, Timeline
from services.ingest.decoder import BATCH_SECONDS, AudioDecoder, DecodeError
from services.ingest.track import Track
from shared import streams
from shared.rtmp.errors import ProtocolError
from shared.rtmp.flv import TimestampUnwrapper, parse_audio_tag

log = logging.getLogger(__name__)

# A standby that holds the primary's last source pts uses it to continue exactly there when
# the same media reached it within this many seconds of the primary; otherwise it continues
# with audio that arrived after the primary's last.
ALIGN_TOLERANCE_SECONDS = 3.0
RESAMPLER_DELAY_SECONDS = 0.003


class Publisher:
    def __init__(
        self, coord: Coordinator, event_id: str, task_id: str, *, chunk_ms: int, standby_seconds: float
    ) -> None:
        self.coord = coord
        self.event_id = event_id
        self.task_id = task_id
        self.id = uuid.uuid4().hex
        self.role = "standby"
        self.ended = False  # the event's end-of-stream was written: nothing more to do
        self.chunk_samples = chunk_ms * RATE // 1000
        self.standby_samples = int(standby_seconds * RATE)
        self.track = Track()
        self.decoder = AudioDecoder()
        self.unwrap = TimestampUnwrapper()
        self.expected = 0  # timeline position (samples) of our next write, when primary
        self._align: Timeline | None = None
        self._last_pts = 0.0
        self._last_epoch = 0.0
        self._decode_errors = 0
        self._wrote_since_beat = False  # a write renewed the lease since the last heartbeat
        metrics.PUBLISHERS.labels(self.role).inc()

    def _set_role(self, role: str) -> None:
        if role != self.role:
            metrics.PUBLISHERS.labels(self.role).dec()
            metrics.PUBLISHERS.labels(role).inc()
            self.role = role

    # --- media ------------------------------------------------------------------------------
    async def on_audio(self, payload: bytes, timestamp: int, epoch: float) -> None:
        pts = self.unwrap(timestamp) / 1000.0
        try:
            tag = parse_audio_tag(payload)
            if tag is None:
                return
            if self.role == "primary":
                # Resample as soon as the chunk being filled can be completed (plus the
                # resampler's own delay of about a millisecond), not only per batch.
                missing = max(0, self.chunk_samples - self.track.available)
                self.decoder.horizon = missing / RATE + RESAMPLER_DELAY_SECONDS
            else:
                self.decoder.horizon = BATCH_SECONDS
            segments = self.decoder.decode(tag, pts, epoch)
        except (DecodeError, ProtocolError) as exc:
            codec = getattr(exc, "codec", "aac")
            metrics.DECODE_ERRORS.labels(codec).inc()
            self._decode_errors += 1
            if self._decode_errors in (1, 10, 100) or self._decode_errors % 1000 == 0:
                log.warning("audio decode error (%d so far): %s", self._decode_errors, exc)
            return
        self._last_pts, self._last_epoch = pts, epoch
        for pcm, seg_pts, seg_epoch in segments:
            self.track.append(pcm, seg_pts, seg_epoch)
        if self._align is not None and self.track.available:
            self._apply_alignment(self._align)
            self._align = None
        if self.role == "primary":
            await self._write_ready(final=False)
        else:
            self.track.keep_last(self.standby_samples)

    def seconds_to_chunk(self) -> float | None:
        """Audio still missing from the chunk being filled (a real-time publisher sends it in
        about as many seconds); None when this publisher writes no chunks (a standby)."""
        if self.role != "primary":
            return None
        missing = max(0, self.chunk_samples - self.track.available) / RATE
        return max(0.0, missing - self.decoder.pending_seconds)

    def receiving(self, now: float, within: float) -> bool:
        """The event's writer, with audio read in the last ``within`` seconds (so its heartbeat
        keeps refreshing the writer lease)."""
        return self.role == "primary" and not self.ended and now - self._last_epoch < within

    async def _write_ready(self, *, final: bool) -> None:
        while self.role == "primary" and (
            self.track.available >= self.chunk_samples or (final and self.track.available)
        ):
            # Dropped from the track only once written: a write that finds the lease lost (our
            # heartbeat starved past its TTL) leaves the chunk here, where the timeline's pts_end
            # points, so whoever writes next (this publisher again, or a standby) continues with
            # it. Taking it first lost one chunk per lapse (seen at 150+ publishers on 2 cores).
            pcm, pts, epoch = self.track.peek(self.chunk_samples)
            n = len(pcm) // 2
            epoch_end = self.track.at(self.track.head + n)[1] if self.track.available > n else self._last_epoch
            chunk = streams.AudioChunk(media_time=self.expected / RATE, pts=pts, epoch=epoch, pcm=pcm)
            res = await self.coord.write(self.event_id, self.id, self.expected, chunk, epoch_end)
            if res == 1:
                self.track.drop(n)
                self.expected += n
                self._wrote_since_beat = True
            elif res == -2:
                self.ended = True
                self._set_role("standby")
            else:
                # Lost the lease (we stalled and a standby took over): the new writer continues
                # from the last pts written, which is before this chunk.
                log.info("lost the writer lease; now a standby")
                self._set_role("standby")

    def _apply_alignment(self, timeline: Timeline) -> None:
        if timeline.pts_end is None:
            return
        pos = self.track.find_pts(timeline.pts_end, timeline.epoch_end or 0.0, ALIGN_TOLERANCE_SECONDS)
        if pos is None:
            pos = self.track.first_after_epoch(timeline.epoch_end or 0.0)
        self.track.drop(pos - self.track.head)

    # --- lease ------------------------------------------------------------------------------
    async def heartbeat(self, receiving: bool) -> None:
        """Called every few hundred ms by the connection; ``receiving`` is False when the
        publisher has sent nothing lately (stalled or half-open): then the lease lapses."""
        if self.ended:
            return
        if self.role == "primary":
            if self._wrote_since_beat:
                # The write renewed the lease (TTL 5 s, beats every second) and ``alive``: a
                # refresh would be a third Redis round trip per stream per second for nothing.
                self._wrote_since_beat = False
                return
            if receiving and not await self.coord.refresh(self.event_id, self.id):
                log.info("writer lease lost; now a standby")
                self._set_role("standby")
        elif receiving:
            await self.try_acquire()

    async def try_acquire(self) -> None:
        res = await self.coord.acquire(self.event_id, self.id)
        if res is False:
            self.ended = True
            return
        if res is None or res is True:
            return
        self.expected = res.samples
        if self.track.available:
            self._apply_alignment(res)
        else:
            self._align = res
        if res.samples:
            metrics.TAKEOVERS.inc()
            log.info("publisher took over the event's audio at %.3f s", res.media_time)
        else:
            log.info("publisher is the event's writer")
        self._set_role("primary")
        await self._write_ready(final=False)

    async def close(self) -> None:
        """The publish ended: write what is left (decoder tail too) and hand the lease over."""
        try:
            if self.role == "primary":
                for pcm, seg_pts, seg_epoch in self.decoder.flush():
                    self.track.append(pcm, seg_pts, seg_epoch)
                await self._write_ready(final=True)
                await self.coord.release(self.event_id, self.id)
        finally:
            metrics.PUBLISHERS.labels(self.role).dec()
            self.role = "closed"
