"""Resume per connection lineage (docs/design.md section 5; issue 19).

Every caption connection has its own cursor: the captions stream id its pongs (or the client's
answer to our close frame) proved delivered. Cursors belong to connections, not to the task: a
second connection of a task (a backup reader, or the same reader reconnecting while its old
socket lingers) never moves another's cursor. A new connection takes over the cursor of the
most recently closed connection of its token that nobody has resumed yet, and otherwise starts
at the beginning of the task's retained captions. So a connection only ever continues one closed
connection (its lineage), and skips nothing that lineage was not proven to receive; what a
closed connection wrote after its last proof comes again, with the same ids.

Redis: one hash per task, ``keys.lineage`` (format there), written by three scripts — OPEN at
the start of a connection (replaces the one cursor read there was), SAVE at a pong that moves
the cursor (replaces the one cursor write there was, coalesced the same way) and a close mark
(SAVE with ``closed``) when the connection ends. It expires with the task's captions stream and
holds at most ``keys.LINEAGE_MAX_RECORDS`` records.

Expiry: the hash's TTL is copied from the captions stream (PTTL + PEXPIRE; the fallback
``keys.LINEAGE_TTL_SECONDS`` while the stream has none, or does not exist yet) by OPEN, by every
close mark, and by the first SAVE that moves a record's cursor off ``0-0`` (a connection opened
before any captions existed got the fallback; its first real cursor means the stream exists
now) — not by the other SAVEs, a pong's every ~2 s per connection (issue 22: that was two of the
gateway's ~3.3 Redis commands per connection per second). That is enough: the lineage only has
to live as long as the captions it points into, whose expiry the relay sets to the event's end +
retention, far beyond any connection; each OPEN and close re-syncs it (so a later end of the
event reaches it with the next connection or close). And a lineage that expired early costs no
caption: a later connection finds no record and starts at the beginning of the retained
captions, which repeats, never skips.

Closed: a connection that ends on a running gateway marks its record closed with its last
proven cursor, queued with no await after the closing handshake (so it reaches Redis before the
client's reconnect does); a mark that meets a Redis outage is retried until it lands. A gateway
that dies (SIGKILL, OOM, a lost host) marks nothing: each gateway process bumps a counter
(``keys.gateway_instance``) every ``BEAT_SECONDS``. A new connection that finds no closed record
but open ones of other gateways watches their counters: one that moves is alive (its
connections are open or lingering: the new connection starts at the beginning); one that has
not moved for ``DEAD_AFTER_SECONDS`` of our own watching, while we read Redis, is dead, and its
open records count as closed as of then. Watching ourselves (rather than trusting a TTL or a
timestamp) keeps a Redis outage, which stops every counter, from making live gateways look dead.
A gateway found dead stays so while its counter stands still (one read per later connection).
The one case this misjudges: a live gateway cut off from Redis (a partition, or a loop stalled)
for that long while others reach Redis; a connection opened then may take over one of its
connections' cursors, which skips only if it is another reader's.
The open records of this process are known locally (``live``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.gateway import metrics
from services.gateway.delivery import ZERO, StreamId
from shared import keys, redis_health
from shared.aio import TaskSet, check_cancelled

log = logging.getLogger(__name__)

# Short commands give up after this: a frozen Redis (SIGSTOP) would hold them until it thaws.
COMMAND_DEADLINE_SECONDS = 5.0
BEAT_SECONDS = 1.0
# A gateway whose counter did not move for this long while we watched it is dead. Five beats: a
# live gateway's loop never stalls that long; a client reconnecting after a gateway died waits
# this long once (its lineage is then taken over, not restarted from the beginning).
DEAD_AFTER_SECONDS = 5.0
WATCH_STEP_SECONDS = 0.25
RETRY_MAX_SECONDS = 2.0
MAX_DEAD_REMEMBERED = 256
HOST = f"{socket.gethostname()}-{os.getpid()}"  # how the console names this process

_LUA_COMMON = """
local SEQ = 'SEQ_FIELD'
local function parse(v)
  local seq, st, cur, inst = string.match(v, '^(%d+) (%a) (%d+%-%d+) (%S+)$')
  return tonumber(seq), st, cur, inst
end
local function newer(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am > bm or (am == bm and as > bs)
end
-- The lineage lives as long as the captions it points into (KEYS[2]).
local function expire(fallback)
  local ttl = redis.call('PTTL', KEYS[2])
  if ttl > 0 then
    redis.call('PEXPIRE', KEYS[1], ttl)
  else
    redis.call('EXPIRE', KEYS[1], fallback)
  end
end
""".replace("SEQ_FIELD", keys.LINEAGE_SEQ)

# KEYS: lineage hash, captions stream. ARGV: new connection id, its instance, fallback TTL, max
# records, "ask" | "take", then ids of open records found dead (closed as of now).
# "ask": with no closed record but open ones, returns {"ask", id1, instance1, ...} and creates
# nothing (the caller finds out which of them are dead and calls again with "take").
# Else creates the new record, taking over (deleting) the closed one of highest seq:
# {"taken", cursor} or {"fresh", ""}.
OPEN_SCRIPT = (
    _LUA_COMMON
    + """
local dead = {}
for i = 6, #ARGV do
  local v = redis.call('HGET', KEYS[1], ARGV[i])
  if v then
    local seq, st, cur, inst = parse(v)
    if st == 'o' then table.insert(dead, {seq, ARGV[i], cur, inst}) end
  end
end
table.sort(dead, function(a, b) return a[1] < b[1] end)
for _, d in ipairs(dead) do
  local n = redis.call('HINCRBY', KEYS[1], SEQ, 1)
  redis.call('HSET', KEYS[1], d[2], n .. ' c ' .. d[3] .. ' ' .. d[4])
end
local all = redis.call('HGETALL', KEYS[1])
local records, open = {}, {}
local best, bestseq, bestcur = nil, -1, nil
for i = 1, #all, 2 do
  local f = all[i]
  if f ~= SEQ then
    local seq, st, cur, inst = parse(all[i + 1])
    if seq then
      if st == 'c' and seq > bestseq then best, bestseq, bestcur = f, seq, cur end
      if st == 'o' then table.insert(open, f); table.insert(open, inst) end
      table.insert(records, {seq, f})
    end
  end
end
if best == nil and ARGV[5] == 'ask' and #open > 0 then
  table.insert(open, 1, 'ask')
  return open
end
if best then redis.call('HDEL', KEYS[1], best) end
local n = redis.call('HINCRBY', KEYS[1], SEQ, 1)
redis.call('HSET', KEYS[1], ARGV[1], n .. ' o ' .. (bestcur or '0-0') .. ' ' .. ARGV[2])
-- Bounded: past the cap, the oldest records go (their connections' lineages end: a later
-- connection starts at the beginning, which repeats and never skips).
local excess = #records - (best and 1 or 0) + 1 - tonumber(ARGV[4])
if excess > 0 then
  table.sort(records, function(a, b) return a[1] < b[1] end)
  for _, r in ipairs(records) do
    if excess <= 0 then break end
    if r[2] ~= best then
      redis.call('HDEL', KEYS[1], r[2])
      excess = excess - 1
    end
  end
end
expire(ARGV[3])
if best then return {'taken', bestcur} end
return {'fresh', ''}
"""
)

# KEYS: lineage hash, captions stream. ARGV: connection id, proven cursor, "1" to mark it
# closed, fallback TTL. Never moves a cursor back, never reopens; a record that is gone (taken
# over, dropped past the cap, expired) stays gone: 0.
SAVE_SCRIPT = (
    _LUA_COMMON
    + """
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local seq, st, cur, inst = parse(v)
if not seq then return 0 end
local changed = false
-- Expiry re-synced with the captions only at a close mark and at the first cursor off 0-0 (a
-- record opened before the stream existed got the fallback TTL): not at every save (module
-- docstring, "Expiry").
local sync = ARGV[3] == '1'
if newer(ARGV[2], cur) then
  if cur == '0-0' then sync = true end
  cur = ARGV[2]
  changed = true
end
if ARGV[3] == '1' and st == 'o' then
  seq = redis.call('HINCRBY', KEYS[1], SEQ, 1)
  st = 'c'
  changed = true
end
if changed then redis.call('HSET', KEYS[1], ARGV[1], seq .. ' ' .. st .. ' ' .. cur .. ' ' .. inst) end
if sync then expire(ARGV[4]) end
if changed then return 1 end
return 0
"""
)


def dead_records(
    candidates: Iterable[tuple[str, str]], instance: str, live: set[str], dead_instances: set[str]
) -> list[str]:
    """Which open records (connection id, instance) belong to connections that are gone: ours
    that this process no longer serves, and every one of a dead gateway."""
    return [conn for conn, inst in candidates if (conn not in live if inst == instance else inst in dead_instances)]


@dataclass(slots=True)
class _Pending:
    stream: str
    position: StreamId
    closed: bool


class Lineage:
    """One connection's record: what its driver (``connection.py``) reports to it."""

    __slots__ = ("conn", "key", "store", "stream")

    def __init__(self, store: LineageStore, key: str, stream: str, conn: str) -> None:
        self.store = store
        self.key = key
        self.stream = stream
        self.conn = conn

    def save(self, proven: StreamId) -> None:
        """A pong (or the answer to our close frame) proved ``proven``: saved in the background."""
        self.store.write(self, proven, closed=False)

    def close(self, proven: StreamId | None) -> None:
        """The connection ended: mark it closed (retried through a Redis outage)."""
        self.store.write(self, proven or ZERO, closed=True)


class LineageStore:
    """This process's side of the lineages: OPEN, coalesced SAVEs and close marks, the
    heartbeat, and the watch of other gateways' heartbeats."""

    def __init__(self, client: aioredis.Redis, tasks: TaskSet, health: redis_health.RedisHealth) -> None:
        self.redis = client
        self.tasks = tasks
        self.health = health
        self.instance = secrets.token_hex(6)
        self.live: set[str] = set()  # ids of this process's connections whose record is not closed
        self._open = client.register_script(OPEN_SCRIPT)
        self._save = client.register_script(SAVE_SCRIPT)
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._writers: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._watches: dict[str, asyncio.Future[bool]] = {}
        # Gateways found dead, with their counter then: a later connection checks that it still
        # stands there (one read) instead of watching for DEAD_AFTER_SECONDS again.
        self._dead: dict[str, bytes | None] = {}
        self._beating = False
        # This process's open caption connections per (event, task), for the console: set by the hub.
        self.connections: Callable[[], dict[tuple[str, str], int]] = dict

    # --- open ------------------------------------------------------------------------------
    async def open(self, event_id: str, task_id: str) -> tuple[Lineage, StreamId | None]:
        """A new connection's record and the cursor it starts from (None: the beginning)."""
        self._start_beating()
        conn = secrets.token_hex(8)
        key, stream = keys.lineage(event_id, task_id), keys.captions(event_id, task_id)
        # Live before the record exists: another connection of this process opening meanwhile
        # must not take it for a dead one of ours.
        self.live.add(conn)
        try:
            reply = await self._run_open(key, stream, conn, "ask", ())
            if reply[0] == "ask":
                pairs = list(zip(reply[1::2], reply[2::2], strict=True))
                others = sorted({inst for _conn, inst in pairs if inst != self.instance})
                alive = await asyncio.gather(*(self._alive(inst) for inst in others))
                dead = {inst for inst, ok in zip(others, alive, strict=True) if not ok}
                gone = dead_records(pairs, self.instance, self.live, dead)
                reply = await self._run_open(key, stream, conn, "take", gone)
        except BaseException:
            self.live.discard(conn)
            raise
        cursor = StreamId.parse(reply[1]) if reply[0] == "taken" else None
        return Lineage(self, key, stream, conn), (cursor if cursor else None)

    async def _run_open(self, key: str, stream: str, conn: str, mode: str, dead: Iterable[str]) -> list[str]:
        args = [conn, self.instance, keys.LINEAGE_TTL_SECONDS, keys.LINEAGE_MAX_RECORDS, mode, *dead]
        async with asyncio.timeout(COMMAND_DEADLINE_SECONDS):
            reply = await self._open(keys=[key, stream], args=args)
        return [v.decode() if isinstance(v, bytes) else str(v) for v in reply]

    # --- saves and close marks -------------------------------------------------------------
    def write(self, lineage: Lineage, position: StreamId, *, closed: bool) -> None:
        """Queue a save (or a close mark) of one record; saves of one record coalesce."""
        if closed:
            self.live.discard(lineage.conn)
        slot = (lineage.key, lineage.conn)
        pending = self._pending.get(slot)
        if pending is None:
            self._pending[slot] = _Pending(lineage.stream, position, closed)
        else:
            pending.position = max(pending.position, position)
            pending.closed = pending.closed or closed
        if slot not in self._writers:
            self._writers[slot] = self.tasks.spawn(self._write(slot), "lineage")

    async def _write(self, slot: tuple[str, str]) -> None:
        key, conn = slot
        backoff = 0.1
        try:
            while (pending := self._pending.pop(slot, None)) is not None:
                try:
                    async with asyncio.timeout(COMMAND_DEADLINE_SECONDS):
                        await self._save(
                            keys=[key, pending.stream],
                            args=[conn, str(pending.position), int(pending.closed), keys.LINEAGE_TTL_SECONDS],
                        )
                    metrics.CURSOR_SAVES.inc()
                    backoff = 0.1
                except (RedisError, TimeoutError) as exc:
                    check_cancelled()
                    if redis_health.is_outage(exc):
                        self.health.lost(exc)
                    else:
                        log.warning("could not save a connection's cursor: %s", exc)
                    if not pending.closed:
                        continue  # the next pong saves a later position; the close mark all of it
                    # A close mark must land: until it does, this lineage cannot be resumed.
                    later = self._pending.get(slot)
                    if later is not None:
                        pending.position = max(pending.position, later.position)
                    self._pending[slot] = pending
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, RETRY_MAX_SECONDS)
        finally:
            self._writers.pop(slot, None)

    async def flush(self, timeout: float) -> None:
        writers = list(self._writers.values())
        if writers:
            await asyncio.wait(writers, timeout=timeout)

    # --- liveness --------------------------------------------------------------------------
    def _start_beating(self) -> None:
        if not self._beating:
            self._beating = True
            self.tasks.spawn(self._beat(), "lineage-heartbeat")

    async def _beat(self) -> None:
        """Bump this process's counter every ``BEAT_SECONDS`` (its records are alive meanwhile).
        The same round trip tells the operator's console (issue 20) this process's open
        connections per task: rewritten when they change, their expiry renewed at every beat."""
        key = keys.gateway_instance(self.instance)
        conns = keys.gateway_connections(self.instance)
        count = 0
        written: dict[str, int] | None = None
        while True:
            count += 1
            now = time.time()
            current = {f"{e} {t}": n for (e, t), n in self.connections().items() if n}
            try:
                async with asyncio.timeout(COMMAND_DEADLINE_SECONDS):
                    pipe = self.redis.pipeline(transaction=False)
                    pipe.set(key, count, ex=keys.GATEWAY_INSTANCE_TTL_SECONDS)
                    pipe.zadd(keys.GATEWAY_INSTANCES, {self.instance: now})
                    pipe.zremrangebyscore(keys.GATEWAY_INSTANCES, "-inf", now - keys.GATEWAY_INSTANCE_TTL_SECONDS)
                    if current != written:
                        pipe.delete(conns)
                        pipe.hset(conns, mapping={keys.GATEWAY_CONNECTIONS_HOST: HOST, **current})
                    pipe.expire(conns, keys.GATEWAY_CONNECTIONS_TTL_SECONDS)
                    written = None  # unknown until the pipeline is answered
                    await pipe.execute()
                    written = current
            except (RedisError, TimeoutError) as exc:
                check_cancelled()
                if redis_health.is_outage(exc):
                    self.health.lost(exc)
                else:
                    log.warning("could not write the gateway heartbeat: %s", exc)
            await asyncio.sleep(BEAT_SECONDS)

    async def _alive(self, instance: str) -> bool:
        """Whether another gateway process is alive; concurrent askers share one watch."""
        if instance in self._dead:
            async with asyncio.timeout(COMMAND_DEADLINE_SECONDS):
                value = await self.redis.get(keys.gateway_instance(instance))
            if value is None or value == self._dead[instance]:  # None: its key expired since
                return False
            del self._dead[instance]  # it moved after all (it was cut off from Redis): watch again
        watch = self._watches.get(instance)
        if watch is None:
            watch = self._watches[instance] = asyncio.get_running_loop().create_future()
            self.tasks.spawn(self._watch(instance, watch), "lineage-watch")
        return await asyncio.shield(watch)

    async def _watch(self, instance: str, result: asyncio.Future[bool]) -> None:
        key = keys.gateway_instance(instance)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(COMMAND_DEADLINE_SECONDS):
                first = value = await self.redis.get(key)
            deadline = loop.time() + DEAD_AFTER_SECONDS
            alive = False
            while not alive and loop.time() < deadline:
                await asyncio.sleep(WATCH_STEP_SECONDS)
                async with asyncio.timeout(COMMAND_DEADLINE_SECONDS):
                    value = await self.redis.get(key)
                alive = value is not None and value != first
            if not alive:
                log.info("gateway %s is gone: its connections count as closed", instance)
                if len(self._dead) >= MAX_DEAD_REMEMBERED:
                    del self._dead[next(iter(self._dead))]
                self._dead[instance] = value
            result.set_result(alive)
        except Exception as exc:  # a Redis error: the askers cannot tell, and fail with it
            result.set_exception(exc)
            result.exception()  # retrieved: an asker may have gone away meanwhile
        finally:
            self._watches.pop(instance, None)
            if not result.done():
                result.cancel()
