"""The cap on accepted publishers per task, across replicas (issue 19: 30 publishes with one
valid key were all accepted, each decoding audio).

A task normally has one publisher (an event's other features, each on its own key, are its hot
standbys, docs/design.md section 2), but a few are legitimate: a failover restream (Kaltura's backup),
and an encoder that restarted while its old connection lingers (half-open until the idle
timeout). Each accepted publish holds a slot in
``keys.ingest_publishers(E, T)``, a sorted set of publish ids scored by when they lapse; the
connection renews its slot while bytes arrive and gives it back when it closes. A connection that
stopped sending (the lingering one) stops renewing, so its slot lapses after ``TTL_SECONDS`` even
while its socket is still open, and a crashed replica's slots lapse the same way.

Only a new publish is refused at the cap (``NetStream.Publish.BadName``): a renewal never is, so
an accepted publisher is never cut for it (after a Redis outage the set may briefly hold more).
"""

from __future__ import annotations

import redis.asyncio as aioredis

from shared import keys

# Renewed every few seconds (VALIDATE_SECONDS) while the publisher sends: three renewals missed.
TTL_SECONDS = 15.0

# Times are the Redis server's (TIME): replicas' clocks may differ, the lapse must not.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: the set. ARGV: me, ttl ms, cap. 1 = slot taken (or already ours), 0 = the task is full.
_TAKE = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
)

# KEYS: the set. ARGV: me, ttl ms. Renewing never refuses. The set lives as long as its latest
# slot (every slot lapses within ttl of its last renewal).
_RENEW = (
    _NOW
    + """
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
)


class PublisherSlots:
    def __init__(self, client: aioredis.Redis, cap: int, ttl_seconds: float = TTL_SECONDS) -> None:
        self.client = client
        self.cap = cap
        self.ttl_ms = int(ttl_seconds * 1000)
        self._take = client.register_script(_TAKE)
        self._renew = client.register_script(_RENEW)

    async def take(self, event_id: str, task_id: str, me: str) -> bool:
        """A slot for publish ``me`` of the task; False when the task has ``cap`` live publishers."""
        args = [me, self.ttl_ms, self.cap]
        return bool(await self._take(keys=[keys.ingest_publishers(event_id, task_id)], args=args))

    async def renew(self, event_id: str, task_id: str, me: str) -> None:
        """Keep the slot of a publisher that is sending (taken again if it had lapsed)."""
        await self._renew(keys=[keys.ingest_publishers(event_id, task_id)], args=[me, self.ttl_ms])

    async def release(self, event_id: str, task_id: str, me: str) -> None:
        await self.client.zrem(keys.ingest_publishers(event_id, task_id), me)
