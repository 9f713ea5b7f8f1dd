"""One accepted publish: decodes its audio and, as the event's primary, writes 16 kHz PCM
chunks on the event's timeline; as a hot standby, holds recent audio to continue from where
the primary stopped (docs/design.md sections 2 and 3).

All methods run in the connection's task, one at a time (no locking needed).

Redis outages (issue 18): a publisher never needs Redis to keep its connection. While Redis is
down (``Link``), the writer keeps its decoded audio in its track, up to ``outage_buffer_seconds``
(past it the oldest is dropped, counted), and writes the backlog in order when Redis is back,
after taking its lease back (``Coordinator.resume``), so the timeline continues exactly where it
stopped. A standby holds as much while Redis is down, and waits a lease TTL after Redis came
back before trying to take over, so that the writer with the backlog goes first; if the writer
is gone, the standby continues from its own buffer, exactly as in a normal takeover. A standby's
attempt sent just before the outage may run when Redis returns, after the lease lapsed, with
nobody waiting for its answer: the writer's resume takes such a lease back (``_RESUME``).

Redis failovers (issue 18): writes the old master acknowledged may be missing on the new one
(asynchronous replication). The writer keeps the last ``REWRITE_SECONDS`` of audio it wrote, and
where each write started; a write or resume that finds the timeline shorter than it left it,
while the lease is its own or free, is answered with where the timeline ends (the script takes
the lease), and the writer writes again from there (counted, one line) instead of stepping down:
the lost audio is on the stream once, and the compare-and-set on ``samples`` with the lease keeps
one writer.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque

from services.ingest import metrics, presence
from services.ingest.coordinator import RATE, Coordinator, Timeline
from services.ingest.decoder import BATCH_SECONDS, AudioDecoder, DecodeError, Segment
from services.ingest.outage import OUTAGE_ERRORS, Link
from services.ingest.track import Track
from shared import journal, keys, redis_health, streams
from shared.rtmp.errors import ProtocolError
from shared.rtmp.flv import TimestampUnwrapper, parse_audio_tag

log = logging.getLogger(__name__)

# A standby that holds the primary's last source pts uses it to continue exactly there when
# the same media reached it within this many seconds of the primary; otherwise it continues
# with audio that arrived after the primary's last.
ALIGN_TOLERANCE_SECONDS = 3.0
RESAMPLER_DELAY_SECONDS = 0.003
# After Redis comes back, a standby leaves the lease this long to the writer that buffered the
# outage's audio (a lapsed lease's TTL: as long as a normal takeover waits for a stalled writer).
WRITER_FIRST_SECONDS = float(keys.INGEST_PRIMARY_TTL_SECONDS)
# A heartbeat skips the lease refresh when a write renewed it this recently: the lease then still
# has half its TTL (2.5 s), and the next beat (a second later) refreshes it if no write came. More
# than the 2 s between writes of a real-time writer, so a beat never refreshes for nothing.
RENEWED_RECENTLY_SECONDS = WRITER_FIRST_SECONDS / 2
# Audio a writer keeps after writing it, to write again what a failover lost: replication lags by
# milliseconds, a failover takes seconds; writes acknowledged before it are what is at stake.
REWRITE_SECONDS = 5.0


class Publisher:
    def __init__(
        self,
        coord: Coordinator,
        event_id: str,
        task_id: str,
        *,
        chunk_ms: int,
        standby_seconds: float,
        outage_buffer_seconds: float = 120.0,
        link: Link | None = None,
    ) -> None:
        self.coord = coord
        self.event_id = event_id
        self.task_id = task_id
        self.id = uuid.uuid4().hex
        self.role = "standby"
        self.ended = False  # the event's end-of-stream was written: nothing more to do
        self.chunk_samples = chunk_ms * RATE // 1000
        self.standby_samples = int(standby_seconds * RATE)
        self.outage_samples = int(outage_buffer_seconds * RATE)
        self.link = link or Link(redis_health.get("ingest"))
        # A writer whose writes stopped because Redis went away: it takes its lease back
        # (Coordinator.resume) before writing again.
        self.suspended = False
        # The write in flight when Redis went away, which may or may not have landed:
        # (track position of its first sample, samples).
        self._in_doubt: tuple[int, int] | None = None
        self._dropped = 0  # samples dropped (oldest first) during the current outage
        self.track = Track(retain=int(REWRITE_SECONDS * RATE))
        # Where our recent writes started: (timeline position, track position), oldest first.
        self._writes: deque[tuple[int, int]] = deque()
        self.decoder = AudioDecoder()
        self.unwrap = TimestampUnwrapper()
        self.expected = 0  # timeline position (samples) of our next write, when primary
        self._align: Timeline | None = None
        self._last_pts = 0.0
        self._last_epoch = 0.0
        self._decode_errors = 0
        self._wrote_at = float("-inf")  # monotonic time of the last write (it renewed the lease)
        metrics.PUBLISHERS.labels(self.role).inc()

    def _set_role(self, role: str) -> None:
        if role != self.role:
            # Writes of an earlier turn as the writer: another may have written after them.
            self._writes.clear()
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
        self._append(segments)
        if self.role == "primary":
            await self._write_ready(final=False)
        else:
            self.track.keep_last(self._standby_keep())

    def _standby_keep(self) -> int:
        """Samples a standby holds: its usual few seconds, or the outage buffer while Redis is
        down and until the writer had its chance to resume (the standby may have to continue
        from where the writer stopped before the outage)."""
        if self.link.down_or_recent(2 * WRITER_FIRST_SECONDS):
            return max(self.standby_samples, self.outage_samples)
        return self.standby_samples

    @property
    def last_audio(self) -> float:
        """Epoch at which its latest audio arrived (0: none yet); the console shows its age."""
        return self._last_epoch

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
        if self.role == "primary" and not self.link.up:
            self.suspended = True
        if self.suspended and not await self._resume():
            self._bound_backlog()
            return
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
            try:
                res, at = await self.coord.write(
                    self.event_id, self.id, self.expected, chunk, epoch_end, self._rewind_from()
                )
            except OUTAGE_ERRORS as exc:
                # Sent or not, landed or not: Coordinator.resume tells once Redis is back.
                self._in_doubt = (self.track.head, n)
                self.link.lost(exc)
                self.suspended = True
                self._bound_backlog()
                return
            if res in (1, 2):
                self._wrote(n)
                self._wrote_at = time.monotonic()
            elif res == 3:
                self._rewrite(at)
            elif res == -2:
                self.ended = True
                self._set_role("standby")
            else:
                # Lost the lease (we stalled and a standby took over): the new writer continues
                # from the last pts written, which is before this chunk.
                log.info("lost the writer lease; now a standby")
                self._set_role("standby")

    async def _resume(self) -> bool:
        """A suspended writer, Redis up: take the lease back and settle the write in doubt.
        True if this publisher writes on (as primary, or not at all if it became a standby)."""
        if not self.link.up:
            return False
        in_doubt = self._in_doubt[1] if self._in_doubt else 0
        try:
            res, at = await self.coord.resume(self.event_id, self.id, self.expected, in_doubt, self._rewind_from())
        except OUTAGE_ERRORS as exc:
            self.link.lost(exc)
            return False
        landed = ""
        if res == 2 and self._in_doubt is not None:
            start, n = self._in_doubt
            # It landed: it is on the stream, whatever the buffer dropped meanwhile.
            self._writes.append((self.expected, start))
            self.track.drop(start + n - self.track.head)
            self.expected += n
            landed = "; the write in flight had landed"
        self.suspended = False
        self._in_doubt = None
        if res == 3:
            self._rewrite(at)
            res = 1 if self.role == "primary" else 0
        held = self.track.available / RATE
        dropped, self._dropped = self._dropped / RATE, 0
        if res in (1, 2):
            log.info(
                "redis is back: writing %.1f s of buffered audio at %.3f s (%.1f s dropped%s)",
                held,
                self.expected / RATE,
                dropped,
                landed,
            )
            return True
        if res == -2:
            self.ended = True
        else:
            log.info("redis is back and another publisher writes the event's audio; now a standby")
        self._set_role("standby")
        return True

    def _wrote(self, n: int) -> None:
        """``n`` samples from the head are on the timeline at ``expected``."""
        self._writes.append((self.expected, self.track.head))
        self.track.drop(n)
        self.expected += n
        while self._writes and self._writes[0][1] < self.track.base:
            self._writes.popleft()  # its audio is no longer kept

    def _rewind_from(self) -> int:
        """The earliest timeline position this writer can write again (``expected``: none)."""
        while self._writes and self._writes[0][1] < self.track.base:
            self._writes.popleft()
        return self._writes[0][0] if self._writes else self.expected

    def _rewrite(self, at: int) -> None:
        """The timeline ends at ``at``, before what we wrote: a failover lost our writes after it.
        The lease is ours (the script took it): write them again, from the audio we kept."""
        start = None
        for timeline, track in reversed(self._writes):
            if timeline <= at:
                start = track + (at - timeline)
                break
        if start is None or not self.track.rewind(start):
            # Not kept (the script checks this too): as before, another writer continues.
            log.warning("the event's timeline is behind what this writer wrote and the audio is gone; now a standby")
            self._set_role("standby")
            return
        lost = self.expected - at
        metrics.REWRITTEN.inc(lost / RATE)
        log.warning(
            "redis lost %.3f s of audio it had acknowledged (a failover to a replica that lagged): "
            "writing it again from %.3f s",
            lost / RATE,
            at / RATE,
        )
        self.expected = at
        while self._writes and self._writes[-1][0] >= at:
            self._writes.pop()

    def _bound_backlog(self) -> None:
        """While Redis is down: keep at most ``outage_samples`` of audio, dropping the oldest."""
        excess = self.track.available - self.outage_samples
        if excess <= 0:
            return
        if not self._dropped:
            log.warning(
                "redis outage longer than the %.0f s audio buffer: dropping the oldest audio",
                self.outage_samples / RATE,
            )
        self.track.drop(excess)
        self._dropped += excess
        metrics.OUTAGE_DROPPED.inc(excess / RATE)

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
        if not self.link.up:
            self.suspended = self.suspended or self.role == "primary"
            return
        try:
            if self.role == "primary":
                if self.suspended:
                    await self._write_ready(final=False)
                    return
                if not receiving and self._quiet_tail():
                    # Gone quiet mid-entry (entries are 2 s): what it sent is written now, so the
                    # last words before a stall are captioned during it (the relay sends a partial
                    # chunk after REACHLIVE_RELAY_FLUSH_AFTER_SECONDS), not when audio resumes.
                    await self._write_ready(final=True)
                if time.monotonic() - self._wrote_at < RENEWED_RECENTLY_SECONDS:
                    # A write renewed the lease (TTL 5 s) and ``alive`` lately: a refresh would be
                    # four more Redis commands for nothing. "Since the last beat" was not enough:
                    # with a write every 1-2 s and a beat every second, many beats found none.
                    return
                if receiving and not await self.coord.refresh(self.event_id, self.id):
                    log.info("writer lease lost; now a standby")
                    self._set_role("standby")
            elif receiving and not self.link.down_or_recent(WRITER_FIRST_SECONDS):
                await self.try_acquire()
                if self.role == "primary":
                    # A standby continues the timeline (the writer stalled or left): the history says so.
                    await journal.arecord(
                        self.coord.client, self.event_id, "failover", task=self.task_id,
                        media_time=self.expected / RATE, replica=presence.REPLICA,
                    )  # fmt: skip
        except OUTAGE_ERRORS as exc:
            self.link.lost(exc)
            self.suspended = self.role == "primary"

    def _append(self, segments: list[Segment]) -> None:
        """Decoded audio onto the track; a pending alignment (a takeover's timeline) applies to the
        first audio that lands there."""
        for pcm, pts, epoch in segments:
            self.track.append(pcm, pts, epoch)
        if self._align is not None and self.track.available:
            self._apply_alignment(self._align)
            self._align = None

    def _quiet_tail(self) -> bool:
        """Move the decoder's pending batch to the track; True if a partial entry is waiting."""
        self._append(self.decoder.drain())
        return self.track.available > 0

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

    async def close(self) -> bool:
        """The publish ended: write what is left (decoder tail too) and hand the lease over.
        True when Redis is down and audio is left: call ``finish`` to write it when Redis is back."""
        try:
            if self.role == "primary":
                for pcm, seg_pts, seg_epoch in self.decoder.flush():
                    self.track.append(pcm, seg_pts, seg_epoch)
            return not await self._finish_now()
        except BaseException:
            self._closed()
            raise

    async def finish(self, wait: float) -> None:
        """Write a closed publisher's backlog once Redis is back, waiting at most ``wait`` s."""
        deadline = time.monotonic() + wait
        try:
            while not await self._finish_now():
                if not await self.link.wait_up(deadline - time.monotonic()):
                    held = self.track.available / RATE
                    log.warning("redis did not come back in time: %.1f s of audio of a closed publish dropped", held)
                    metrics.OUTAGE_DROPPED.inc(held)
                    return
        finally:
            self._closed()

    async def _finish_now(self) -> bool:
        """Flush and release; False if Redis went away first (the audio is still held)."""
        if self.role == "primary":
            await self._write_ready(final=True)
            if self.suspended:
                return False
            if self.role == "primary":
                try:
                    await self.coord.release(self.event_id, self.id)
                except OUTAGE_ERRORS as exc:
                    self.link.lost(exc)  # the lease lapses by itself
        self._closed()
        return True

    def _closed(self) -> None:
        if self.role != "closed":
            metrics.PUBLISHERS.labels(self.role).dec()
            self.role = "closed"
