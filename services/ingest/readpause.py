"""Read coalescing for real-time publishers (docs/design.md section 3): how long a connection leaves its
bytes in the socket between reads, and the timer that resumes it.

A real-time publisher writes each media packet on its own (~40 small segments/s for audio alone,
~100/s at 3 Mbps A/V, ffmpeg a message's header and body apart). Letting the kernel gather them
for a moment turns that into ~10 reads/s: most of the ingest's CPU per stream is per wakeup
(~0.1 ms of CPU per read, BENCHMARKS.md "Ingest profile (issue 22)").
"""

from __future__ import annotations

import asyncio
import math

# The longest pause between reads of a real-time publisher (see coalesce_pause). With 500 ms
# chunks (the default before 2000), 250 ms made two pauses per chunk before its guard: 100 ms made five, ~6 more reads a
# second per stream, 0.07 % of a core per stream (issue 22). It never delays a chunk (the pause
# ends before the chunk's end is due); what it delays is the arrival stamp of audio in the middle
# of a chunk, and a stall is noticed after STALL_SECONDS (1 s) as before. A 3 Mbps publisher
# leaves ~94 kB in the socket meanwhile: within the kernel's receive buffer, which it grows for
# a reader that takes that much at once.
COALESCE_SECONDS = 0.25
MIN_PAUSE_SECONDS = 0.005  # a shorter pause costs a timer wakeup and saves no read
# The message that completes a chunk arrives up to one codec frame (AAC 23 ms, MP3 26 ms)
# sooner than the missing audio suggests: the last message read arrived up to a frame before
# the read, and messages come whole. Waking this much early, then reading each message as it
# comes, cut the ingest's arrival → XADD p99 from 48 to 32 ms (10 publishers) and from 53 to
# 39 ms (100), for ~2 more reads per chunk (BENCHMARKS.md).
FRAME_GUARD_SECONDS = 0.027
# Pauses end on this grid of the loop's clock (rounded down, so never later than asked): the
# connections whose pauses end within one step resume in one loop iteration, and their sockets
# are then read in one epoll wakeup, instead of a wakeup (an epoll_wait, ~15 % of the ingest's
# CPU at 100 publishers) per connection and pause.
WAKE_GRID_SECONDS = 0.01


def coalesce_pause(seconds_to_chunk: float | None) -> float:
    """How long to leave a live publisher's bytes in the socket before the next read: up to
    COALESCE_SECONDS, but never past the moment the chunk being filled completes, so that the
    bytes ending a chunk are read (and stamped, and written) as they arrive. Waiting the full
    period there would add up to COALESCE_SECONDS to every chunk's latency. 0 means read now."""
    if seconds_to_chunk is None:
        return COALESCE_SECONDS  # a standby writes nothing: no chunk to hold back
    pause = min(COALESCE_SECONDS, seconds_to_chunk - FRAME_GUARD_SECONDS)
    return pause if pause >= MIN_PAUSE_SECONDS else 0.0


def wake_at(now: float, pause: float) -> float | None:
    """The loop time at which a pause of ``pause`` seconds from ``now`` ends: ``now + pause``
    rounded down to WAKE_GRID_SECONDS. None when that leaves no pause worth a timer."""
    # The epsilon: 10.1 / 0.01 is 1009.999… in floats, which would lose a whole step.
    at = math.floor((now + pause) / WAKE_GRID_SECONDS + 1e-6) * WAKE_GRID_SECONDS
    return at if at - now >= MIN_PAUSE_SECONDS else None


class ReadPause:
    """A transport's reading paused until a loop time. The timer resumes the transport itself:
    resuming from a sleeping task took one loop iteration more (the timer wakes the task, the
    task resumes reading, the next iteration polls the socket), and under load every iteration
    runs most of the other connections' work before it gets to this one's."""

    def __init__(self, transport: asyncio.BaseTransport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._timer: asyncio.TimerHandle | None = None

    @property
    def active(self) -> bool:
        return self._timer is not None

    def until(self, at: float) -> None:
        """Stop reading until loop time ``at`` (a no-op while a pause is already running)."""
        if self._timer is not None:
            return
        self._transport.pause_reading()  # type: ignore[attr-defined]
        self._timer = self._loop.call_at(at, self._resume)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _resume(self) -> None:
        self._timer = None
        if not self._transport.is_closing():
            self._transport.resume_reading()  # type: ignore[attr-defined]
