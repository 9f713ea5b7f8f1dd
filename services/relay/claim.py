"""Session claiming across relay replicas (docs/design.md section 4, "Session claiming").

One entry per live event on ``keys.SESSIONS_STREAM``; the relays form the consumer group
``keys.RELAY_GROUP``. An entry stays in the group's pending list (PEL) for as long as a relay
works on it:

- new sessions are read with ``XREADGROUP ... >`` only while the replica is below capacity;
- the owner keeps each entry's idle time near zero with ``XCLAIM <id> 0 JUSTID`` heartbeats;
- any replica ``XAUTOCLAIM``\\s entries idle past the failover timeout (a dead owner);
- the entry is ``XACK``\\ed (and deleted) only when the session is finished.

``XCLAIM`` with a min-idle-time of 0 would also take an entry that another replica now owns, so
the heartbeat runs as a Lua script that first checks the owner (``XPENDING`` of that id) and
only then claims: a replica whose entry was taken over learns it at its next heartbeat, and
never steals the entry back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from shared import keys
from shared.redis_client import text
from shared.streams import PayloadError, SessionEntry

log = logging.getLogger(__name__)

# Heartbeat: keep owned entries alive; return the ids this consumer no longer owns.
_HEARTBEAT = """
local lost = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
"""

# Hand-over on SIGTERM: mark our entries as idle past the failover timeout (XCLAIM's IDLE
# option), so another replica's next XAUTOCLAIM scan takes them without waiting the timeout.
_RELEASE = """
local n = 0
for i = 4, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'IDLE', ARGV[3], 'JUSTID')
    n = n + 1
  end
end
return n
"""


@dataclass(frozen=True, slots=True)
class Claimed:
    entry_id: str
    event_id: str | None  # None: the entry's payload is gone or unreadable (ack it and move on)
    failover: bool  # taken over from another replica by XAUTOCLAIM


class Claimer:
    """The Redis side of claiming, for one consumer (one relay replica)."""

    def __init__(self, client: aioredis.Redis, consumer: str, failover_seconds: float) -> None:
        self.client = client
        self.consumer = consumer
        self.failover_ms = max(1, int(failover_seconds * 1000))
        self.stream = keys.SESSIONS_STREAM
        self.group = keys.RELAY_GROUP
        self._heartbeat = client.register_script(_HEARTBEAT)
        self._release = client.register_script(_RELEASE)
        self._autoclaim_start = "0-0"

    async def ensure_group(self) -> None:
        try:
            await self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def prune_consumers(self, idle_seconds: float = 86400.0) -> int:
        """Forget consumers (old pods) idle that long and owning nothing: each pod has its own
        name, so the group would otherwise grow by one consumer per restart. A consumer with
        pending entries is never deleted (that would drop its entries from the PEL)."""
        removed = 0
        for c in await self.client.xinfo_consumers(self.stream, self.group):
            name = text(c["name"])
            if name != self.consumer and int(c["pending"]) == 0 and int(c["idle"]) > idle_seconds * 1000:
                await self.client.xgroup_delconsumer(self.stream, self.group, name)
                removed += 1
        return removed

    def _parse(self, entry_id: Any, fields: Any, failover: bool) -> Claimed:
        eid = text(entry_id)
        if not fields:
            return Claimed(eid, None, failover)
        try:
            return Claimed(eid, SessionEntry.parse(fields).event_id, failover)
        except PayloadError as exc:
            log.error("unreadable session entry %s: %s", eid, exc)
            return Claimed(eid, None, failover)

    async def read_new(self, count: int, block_ms: int) -> list[Claimed]:
        """New sessions (never delivered to any relay), at most ``count``."""
        if count <= 0:
            return []
        reply = await self.client.xreadgroup(self.group, self.consumer, {self.stream: ">"}, count=count, block=block_ms)
        out = []
        for _stream, entries in reply or []:
            out.extend(self._parse(eid, fields, False) for eid, fields in entries)
        return out

    async def autoclaim(self, count: int) -> list[Claimed]:
        """Entries whose owner stopped heartbeating for the failover timeout, at most ``count``.

        Redis 6.2 answers ``[next_id, entries]`` (7.0 adds deleted ids as a third element).
        The scan position is kept between calls and wraps to 0-0 when Redis says so.
        """
        if count <= 0:
            return []
        reply = await self.client.execute_command(
            "XAUTOCLAIM",
            self.stream,
            self.group,
            self.consumer,
            self.failover_ms,
            self._autoclaim_start,
            "COUNT",
            count,
        )
        next_id, entries = reply[0], reply[1]
        self._autoclaim_start = text(next_id)
        out = []
        for item in entries or []:
            if item is None or item[0] is None:  # 6.2: nil for an entry deleted from the stream
                continue
            eid, fields = item[0], item[1]
            if isinstance(fields, list):  # raw reply: flat [k, v, k, v]
                fields = dict(zip(fields[::2], fields[1::2], strict=False))
            out.append(self._parse(eid, fields, True))
        return out

    async def heartbeat(self, entry_ids: list[str]) -> set[str]:
        """Renew our entries; return those another replica owns now (or that were acked)."""
        if not entry_ids:
            return set()
        lost = await self._heartbeat(keys=[self.stream], args=[self.group, self.consumer, *entry_ids])
        return {text(x) for x in lost}

    async def release(self, entry_ids: list[str]) -> int:
        """Hand entries over without acking them: they look idle past the failover timeout."""
        if not entry_ids:
            return 0
        idle = self.failover_ms + 1000
        return int(await self._release(keys=[self.stream], args=[self.group, self.consumer, idle, *entry_ids]))

    async def ack(self, entry_id: str) -> None:
        """The session is finished: acknowledge it and drop the entry (nothing reads it again)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.xack(self.stream, self.group, entry_id)
        pipe.xdel(self.stream, entry_id)
        await pipe.execute()
