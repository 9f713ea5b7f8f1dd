"""The delivery state of one caption connection, sans-I/O (docs/design.md sections 5 and 8).

Fed caption entries, "sent" notices, pings and pongs with the time passed in; it answers which
frames to write, when to ping, which cursor a pong proves, and when and how to close. The asyncio
driver (``connection.py``) owns the socket and the timers.

Resume (docs/design.md section 5): a WebSocket pong proves that every frame written before its ping
arrived, because TCP keeps order. So the cursor a pong proves is the stream position the
connection had reached when the ping was written. ``position`` also moves over entries that the
type filter skipped: there was nothing to deliver for them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple

from shared.streams import StreamId

# Close codes and reasons (RFC 6455 section 7.4; 4000-4999 are ours). The reason is what an
# operator reads in Kaltura's client logs, so it says what happened and what to do.
NORMAL = 1000  # after the is_end_of_stream response (Kaltura seed, docs/design.md section 5)
GOING_AWAY = 1001  # 2-hour limit and drain: the client reconnects and resumes (seed)
POLICY = 1008  # inbound flood / bad request
INTERNAL = 1011  # keepalive timeout (as websockets' own keepalive)
TRY_AGAIN = 1013  # slow subscriber: reconnect and resume
UNAUTHORIZED = 4001  # missing, unknown or revoked token: nothing was sent
REVOKED = 4003  # the task was cancelled while connected

REASON_EOS = "end of stream"
REASON_TIME_LIMIT = "connection time limit reached, reconnect to resume"
REASON_DRAIN = "server shutting down, reconnect to resume"
REASON_SLOW = "client too slow, reconnect to resume"
REASON_PING_TIMEOUT = "keepalive ping timeout"
REASON_REVOKED = "task cancelled, token revoked"
REASON_UNAVAILABLE = "temporarily unavailable, reconnect to resume"
REASON_REDIS_DOWN = "storage unavailable, try again later"  # a new connection during a Redis outage


ZERO = StreamId(0, 0)


@dataclass(slots=True, frozen=True)
class Item:
    """One entry of a task's captions stream, decoded once and shared by every subscriber."""

    id: StreamId
    data: bytes  # the Kaltura response JSON, UTF-8, sent as one text frame
    kind: str  # transcript | captions
    eos: bool
    created: float  # epoch of the XADD (delivery-lag metric)


class Close(NamedTuple):
    code: int
    reason: str


@functools.lru_cache(maxsize=64)  # few distinct values; connections share the frozensets
def parse_types(query_value: str | None, deployment: str) -> frozenset[str] | None:
    """The response types a connection receives: the deployment's list narrowed by ``types``.

    Returns None for a ``types`` value naming nothing we send (the caller closes with a reason).
    """
    allowed = frozenset(t for t in deployment.split(",") if t)
    if query_value is None:
        return allowed
    wanted = frozenset(t.strip() for t in query_value.split(",") if t.strip())
    if not wanted or not wanted <= {"transcript", "captions"}:
        return None
    return (wanted & allowed) or None


class Delivery:
    """What one connection has sent, proven and still owes. All times are monotonic seconds."""

    # Wait this long for a matching end-of-stream response after one of a filtered-out type,
    # then send the one we have: the client needs a final response to stop reconnecting.
    EOS_GRACE = 2.0

    def __init__(
        self,
        types: frozenset[str],
        cursor: StreamId | None,
        now: float,
        *,
        max_seconds: float,
        ping_interval: float,
        ack_interval: float,
        pong_timeout: float,
    ) -> None:
        self.types = types
        self.position = cursor or ZERO  # last entry handled (sent or skipped)
        self.proven = self.position  # last position a pong (or a close handshake) proved
        self.deadline = now + max_seconds
        self.ping_interval = ping_interval
        self.ack_interval = ack_interval
        self.pong_timeout = pong_timeout
        self._last_ping = now
        self._ping_position = self.position
        self._outstanding: tuple[int, float, StreamId] | None = None  # (ref, sent at, position)
        self._refs = 0
        self._held_eos: tuple[Item, float] | None = None
        self.finished = False  # the end-of-stream response was written

    # --- entries ---------------------------------------------------------------------------
    def offer(self, item: Item, now: float) -> Item | None:
        """The frame to write for a stream entry, or None (already handled, or filtered out)."""
        if self.finished or item.id <= self.position:
            return None
        self.position = item.id
        if item.kind in self.types:
            self._held_eos = None
            return item
        if item.eos:
            self._held_eos = (item, now)
        return None

    def sent(self, item: Item) -> None:
        """The frame was written to the transport (ordered before any later ping)."""
        if item.eos:
            self.finished = True

    # --- keepalive and cursor --------------------------------------------------------------
    def ping_due(self, now: float) -> bool:
        if self._outstanding is not None or self.finished:
            return False
        if self.position > self._ping_position:  # something new to prove
            return now >= self._last_ping + self.ack_interval
        return now >= self._last_ping + self.ping_interval

    def ping_sent(self, now: float) -> int:
        """Record a ping written now; returns the reference to pass to ``pong``."""
        self._refs += 1
        self._outstanding = (self._refs, now, self.position)
        self._last_ping = now
        self._ping_position = self.position
        return self._refs

    def pong(self, ref: int) -> StreamId | None:
        """A pong arrived for ping ``ref``: the new proven cursor, or None if it did not move."""
        if self._outstanding is None or self._outstanding[0] != ref:
            return None
        position = self._outstanding[2]
        self._outstanding = None
        if position <= self.proven:
            return None
        self.proven = position
        return position

    def close_acknowledged(self) -> StreamId | None:
        """The client answered our close frame: everything written before it arrived."""
        if self.position <= self.proven:
            return None
        self.proven = self.position
        return self.position

    # --- timers ----------------------------------------------------------------------------
    def poll(self, now: float) -> Close | Item | None:
        """A close to perform or a held end-of-stream frame to write now, if any."""
        if self.finished:
            return Close(NORMAL, REASON_EOS)
        if self._outstanding is not None and now - self._outstanding[1] >= self.pong_timeout:
            return Close(INTERNAL, REASON_PING_TIMEOUT)
        if now >= self.deadline:
            return Close(GOING_AWAY, REASON_TIME_LIMIT)
        if self._held_eos is not None and now - self._held_eos[1] >= self.EOS_GRACE:
            item, _ = self._held_eos
            self._held_eos = None
            return item
        return None

    def next_wakeup(self, now: float) -> float:
        """Seconds until ``poll`` or ``ping_due`` may have something to do."""
        times = [self.deadline]
        if self._outstanding is not None:
            times.append(self._outstanding[1] + self.pong_timeout)
        elif self.position > self._ping_position:
            times.append(self._last_ping + self.ack_interval)
        else:
            times.append(self._last_ping + self.ping_interval)
        if self._held_eos is not None:
            times.append(self._held_eos[1] + self.EOS_GRACE)
        return max(0.0, min(times) - now)
