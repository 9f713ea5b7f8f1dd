"""Caps on the ingest's connections (issue 19), sans-I/O (times are passed in): all of this
process's connections together, and per client address the connections with no accepted
publish yet.

Accepted publishers do not count against their address: Kaltura restreams every event from a few
addresses, and a publisher holds a valid media key (its task's publishers are capped apart,
``slots``). What the per-address cap bounds is what anyone can hold without a key. IPv6 clients
are counted per /64 (one host usually has a whole /64 to pick addresses from).

A refused peer is told nothing (RTMP has no refusal before its handshake): the driver aborts the
connection. Refusals are counted by the driver's metrics; a log line says so at most once per
``log_seconds`` per address (an attacker retrying in a loop must not fill the logs).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

LOG_SECONDS = 60.0
MAX_TRACKED = 4096  # addresses remembered for the log's rate limit (older ones are forgotten)


def address_key(host: str) -> str:
    """The unit an address cap counts: the IPv4 address, or the /64 of an IPv6 one."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host  # not an IP (a Unix socket's path, or nothing): counted as it is
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass(slots=True)
class _Refusals:
    logged_at: float
    since: int = 0  # refused since the last line


@dataclass(slots=True)
class Slot:
    """One admitted connection; the driver calls ``published`` once its publish is accepted and
    ``release`` when it closes (both idempotent)."""

    caps: ConnectionCaps
    key: str
    pending: bool = True
    released: bool = False

    def published(self) -> None:
        if self.pending and not self.released:
            self.pending = False
            self.caps._unpend(self.key)

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        if self.pending:
            self.pending = False
            self.caps._unpend(self.key)
        self.caps.total -= 1


@dataclass(slots=True)
class Refusal:
    """A refused connection: which cap (a metric label), and the log line due now, if any."""

    cap: str  # "total" | "per_address"
    log: str | None


@dataclass
class ConnectionCaps:
    max_total: int
    max_pending_per_address: int
    log_seconds: float = LOG_SECONDS
    total: int = 0
    pending: dict[str, int] = field(default_factory=dict)
    _refusals: dict[str, _Refusals] = field(default_factory=dict)

    def open(self, host: str, now: float) -> Slot | Refusal:
        """A new connection from ``host``: its slot, or why it is refused."""
        key = address_key(host)
        if self.total >= self.max_total:
            return Refusal("total", self._due("", now, f"{self.total} connections open (the cap)"))
        held = self.pending.get(key, 0)
        if held >= self.max_pending_per_address:
            what = f"{held} connections from {key} not publishing (the cap)"
            return Refusal("per_address", self._due(key, now, what))
        self.total += 1
        self.pending[key] = held + 1
        return Slot(self, key)

    def _unpend(self, key: str) -> None:
        left = self.pending.get(key, 0) - 1
        if left > 0:
            self.pending[key] = left
        else:
            self.pending.pop(key, None)

    def _due(self, key: str, now: float, what: str) -> str | None:
        """The log line for a refusal, if none was logged for ``key`` in the last interval."""
        entry = self._refusals.get(key)
        if entry is not None and now - entry.logged_at < self.log_seconds:
            entry.since += 1
            return None
        earlier = entry.since if entry is not None else 0
        if len(self._refusals) >= MAX_TRACKED:
            self._forget(now)
        self._refusals[key] = _Refusals(now)
        line = f"refusing connections: {what}"
        if earlier:
            line += f"; {earlier} more refused since the last such line"
        return line

    def _forget(self, now: float) -> None:
        self._refusals = {k: v for k, v in self._refusals.items() if now - v.logged_at < self.log_seconds}
        if len(self._refusals) >= MAX_TRACKED:  # that many addresses within one interval
            self._refusals.clear()
