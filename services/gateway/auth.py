"""Caption-token authentication (docs/design.md section 5; facts.md "The caption WebSocket (unknowns)").

How Kaltura's client presents ``captionToken`` is not documented, so three transports are
accepted: ``Authorization: Bearer <token>``, a ``token`` query parameter, and a first JSON text
message ``{"token": "..."}``. The token maps to (event, task) through the SHA-256 index the poller
writes; the task's stored hash is compared in constant time as well, and a cancelled task fails.

The limiters are sans-I/O: time is passed in.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict, deque
from dataclasses import dataclass
from urllib.parse import parse_qs

import redis.asyncio as aioredis

from shared import registry
from shared.hashing import same_secret

MAX_TOKEN_CHARS = 512  # ours are 32 chars; anything much longer is not a token


@dataclass(frozen=True, slots=True)
class TaskRef:
    event_id: str
    task_id: str


def split_target(target: str) -> tuple[str, str]:
    """The path and the query of a request target (origin-form, RFC 9112 section 3.2.1). Not
    ``urlsplit``: it reads a target starting with "//" as an authority, and raises on "//[" (an
    "Invalid IPv6 URL"), which any client can send."""
    path, _, query = target.partition("?")
    return path, query.partition("#")[0]


def query_params(path: str) -> dict[str, list[str]]:
    return parse_qs(split_target(path)[1], keep_blank_values=True)


def token_from_request(authorization: str | None, path: str) -> str | None:
    """The token of the opening handshake (header first, then query), or None."""
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    values = query_params(path).get("token")
    if values and values[0]:
        return values[0]
    return None


def token_from_message(message: str | bytes) -> str | None:
    """The token of a first message ``{"token": "..."}``, or None for anything else."""
    try:
        doc = json.loads(message)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(doc, dict) and isinstance(doc.get("token"), str) and doc["token"]:
        return doc["token"]
    return None


async def resolve(client: aioredis.Redis, token: str) -> TaskRef | None:
    """The task a presented token may read, or None (unknown, revoked, cancelled)."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    ref = await registry.lookup_caption_token(client, token)
    if ref is None:
        return None
    task = await registry.read_task(client, *ref)
    # The index is by hash already; comparing the task's own hash in constant time guards
    # against an index entry left pointing at a task whose token was rotated.
    if task is None or task.cancelled or not same_secret(token, task.caption_token_hash):
        return None
    return TaskRef(*ref)


class FailureLimiter:
    """Failed authentications per client address in a sliding window.

    Past ``limit`` failures in ``window`` seconds the address is refused (HTTP 429) until the
    oldest failure leaves the window. At most ``max_addresses`` are tracked (oldest dropped),
    so a spray of addresses cannot grow memory without bound.
    """

    def __init__(self, limit: int, window: float = 60.0, max_addresses: int = 10000) -> None:
        self.limit = limit
        self.window = window
        self.max_addresses = max_addresses
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _trim(self, address: str, now: float) -> deque[float] | None:
        times = self._failures.get(address)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[address]
            return None
        return times

    def blocked(self, address: str, now: float) -> float:
        """Seconds the address must wait before trying again (0 when allowed)."""
        times = self._trim(address, now)
        if times is None or len(times) < self.limit:
            return 0.0
        return max(0.0, times[0] + self.window - now)

    def failed(self, address: str, now: float) -> None:
        times = self._trim(address, now)
        if times is None:
            times = self._failures[address] = deque(maxlen=self.limit)
            while len(self._failures) > self.max_addresses:
                self._failures.popitem(last=False)
        self._failures.move_to_end(address)
        times.append(now)


class TaskConnections:
    """Open connections per task on this replica, capped: one valid token cannot open unbounded
    connections (issue 19). Kaltura reads a task with one client (a backup reader, or a reconnect
    while the old socket lingers, makes a few): the cap is far above that."""

    __slots__ = ("_open", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[TaskRef, int] = {}

    def admit(self, ref: TaskRef) -> bool:
        """Count one more connection of the task, or False (nothing counted) at the cap."""
        n = self._open.get(ref, 0)
        if n >= self.limit:
            return False
        self._open[ref] = n + 1
        return True

    def release(self, ref: TaskRef) -> None:
        n = self._open.get(ref, 0) - 1
        if n > 0:
            self._open[ref] = n
        else:
            self._open.pop(ref, None)

    def count(self, ref: TaskRef) -> int:
        return self._open.get(ref, 0)


class TokenBucket:
    """Inbound message rate: ``rate`` per second with bursts of ``burst``."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def client_address(remote: object, forwarded_for: str | None, trusted_hops: int) -> str:
    """The address failures are counted against: the TCP peer, or behind ``trusted_hops`` proxies
    that each append the address they saw to X-Forwarded-For, the entry that many from the right
    (the one our outermost proxy wrote). Entries to its left are whatever the client sent: an
    attacker prepending addresses changes nothing. Fewer entries than hops (a proxy bypassed or
    not appending): the leftmost, which a trusted proxy wrote."""
    if trusted_hops > 0 and forwarded_for:
        entries = [e.strip() for e in forwarded_for.split(",")]
        return entries[-min(trusted_hops, len(entries))] or "unknown"
    if isinstance(remote, tuple) and remote:
        return str(remote[0])
    return "unknown"


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
