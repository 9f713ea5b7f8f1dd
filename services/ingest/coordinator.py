"""Redis side of the ingest (docs/design.md section 3): who writes an event's audio, the continuous
media timeline, the media session and the end-of-stream entry.

- ``keys.ingest_primary(E)``: the writer's publisher id, SET NX with a short TTL and refreshed
  by the writer's heartbeat while its publisher delivers bytes. A hot standby takes it when
  it lapses (primary dropped or stalled) or is released (primary unpublished).
- ``keys.ingest_state(E)``: ``samples`` (16 kHz samples written: media time is samples/16000,
  so the timeline is exact across writers), ``pts_end``/``epoch_end`` (source pts and
  arrival epoch just past the last sample written, so a standby knows where to continue),
  ``alive`` (last heartbeat or write of a writer: how long the event has been paused), ``eos``
  (the end-of-stream entry was written: only once the event is over, never for a pause),
  ``writer`` (publisher id of the last write: after a Redis outage it tells a writer whether
  the write it was waiting on when Redis went away landed).
- Every audio write checks, atomically, that the writer still holds the lease and that the
  timeline did not move under it (compare-and-set on ``samples``), so two writers can never
  interleave.
- A Redis failover may lose writes the old master acknowledged (asynchronous replication): the
  new master's timeline ends before the writer's. A write (or a resume after the outage) that
  finds fewer ``samples`` than it expects, while the lease is the writer's or free, takes the
  lease and answers where the timeline ends; the writer, which keeps its last seconds of audio,
  writes again from there (``Publisher``). The timeline only grows otherwise, so a shorter one
  means lost writes, never another writer's.
Scripts touch only keys of one event (one hash tag), as a Redis Cluster requires.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from services.ingest import metrics
from shared import keys, streams
from shared.redis_client import text
from shared.settings import CommonSettings

RATE = 16000

_ACQUIRE = """
if redis.call('HGET', KEYS[2], 'eos') == '1' then return {-1} end
-- a receiving standby is a publisher too: the event is not paused while it waits
redis.call('HSET', KEYS[2], 'alive', ARGV[3])
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, redis.call('HGET', KEYS[2], 'samples') or '0',
          redis.call('HGET', KEYS[2], 'pts_end') or '', redis.call('HGET', KEYS[2], 'epoch_end') or ''}
end
return {0}
"""

# Heartbeat of a writer: keep the lease and say the event has a live publisher.
_REFRESH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[2], 'alive', ARGV[3])
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'alive', ARGV[2])
  return 1
end
return 0
"""

# KEYS: primary, state, audio. ARGV: me, ttl ms, expected samples, new samples, pts_end,
# epoch_end, maxlen, now, rewind (the earliest timeline position the writer can write again),
# then the entry's field/value pairs. A write is also the heartbeat (lease and ``alive``), so a
# writer that wrote since its last beat skips the refresh. Returns {code} or {3, samples}.
# The state's fields come in one HMGET (every call inside a script is a command Redis counts:
# the write is the ingest's most frequent one, issue 22).
_WRITE = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return {-1} end
local state = redis.call('HMGET', KEYS[2], 'eos', 'samples', 'writer')
if state[1] == '1' then return {-2} end
local samples = state[2] or '0'
if samples ~= ARGV[3] or not holder then
  -- this very write landed already (sent again after a Redis outage hid its reply)
  if holder and samples == ARGV[4] and state[3] == ARGV[1] then return {2} end
  -- a failover lost writes of ours (the timeline never shrinks otherwise): write them again
  local s = tonumber(samples)
  if s < tonumber(ARGV[3]) and s >= tonumber(ARGV[9]) then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    redis.call('HSET', KEYS[2], 'alive', ARGV[8])
    return {3, samples}
  end
  if not holder then return {-1} end
  return {-3}
end
local entry = {}
for i = 10, #ARGV do entry[#entry + 1] = ARGV[i] end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], '*', unpack(entry))
redis.call('HSET', KEYS[2], 'samples', ARGV[4], 'pts_end', ARGV[5], 'epoch_end', ARGV[6], 'alive', ARGV[8],
           'writer', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1}
"""

# After a Redis outage, the writer that was buffering takes its lease back (it lapsed during an
# outage longer than its TTL) if nobody wrote meanwhile: the timeline still ends where the writer
# stopped, or one chunk further by a write of its own that was in flight when Redis went away
# (it cannot know whether that one landed; ``writer`` and the count tell), or earlier, within
# what the writer can write again, if a failover lost writes of its own.
# When the timeline ends where this writer left it (codes 1 and 2), nobody wrote meanwhile, and a
# lease held by another publisher is a takeover nobody acted on: typically a standby's attempt sent
# into a frozen Redis and run when it thawed, after the lease lapsed, its sender no longer waiting
# for the answer (it holds the lease and writes nothing). The writer with the backlog takes the
# lease; a standby that really was taking over finds it lost at its first write and stays a
# standby, and the compare-and-set on ``samples`` keeps the audio on the timeline once.
# KEYS: primary, state. ARGV: me, ttl ms, expected samples, expected + in-doubt chunk ('' if
# none), now, rewind. Returns {1} (continue at expected), {2} (the chunk in doubt landed),
# {3, samples} (write again from samples), {0} (another writer holds the lease or wrote: be a
# standby), {-2} (end of stream written).
_RESUME = """
if redis.call('HGET', KEYS[2], 'eos') == '1' then return {-2} end
local holder = redis.call('GET', KEYS[1])
local samples = redis.call('HGET', KEYS[2], 'samples') or '0'
local code = 1
if samples ~= ARGV[3] then
  if ARGV[4] ~= '' and samples == ARGV[4] and redis.call('HGET', KEYS[2], 'writer') == ARGV[1] then
    code = 2
  elseif holder and holder ~= ARGV[1] then
    return {0}
  elseif tonumber(samples) < tonumber(ARGV[3]) and tonumber(samples) >= tonumber(ARGV[6]) then
    code = 3
  else
    return {0}
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[2], 'alive', ARGV[5])
return {code, samples}
"""

# KEYS: primary, state, audio, the ingest's active set. ARGV: expected samples, retention s,
# state ttl s, event id, then the entry's field/value pairs. Only ever called when the event is
# over (window ended, every task cancelled, event gone): a publisher that went away pauses the
# event, it never ends it.
_EOS = """
if redis.call('HGET', KEYS[2], 'eos') == '1' then
  redis.call('SREM', KEYS[4], ARGV[4])
  return -1
end
if (redis.call('HGET', KEYS[2], 'samples') or '0') ~= ARGV[1] then return -3 end
local entry = {}
for i = 5, #ARGV do entry[#entry + 1] = ARGV[i] end
redis.call('XADD', KEYS[3], '*', unpack(entry))
redis.call('HSET', KEYS[2], 'eos', '1')
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[4], ARGV[4])
redis.call('EXPIRE', KEYS[3], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
"""


_OPEN = """
if redis.call('HGET', KEYS[1], 'session') == '1' then return 0 end
redis.call('HSET', KEYS[1], 'session', '1', 'status', 'live')
return 1
"""


@dataclass(frozen=True, slots=True)
class Timeline:
    """Where the event's audio stands: samples written and the source position just after."""

    samples: int
    pts_end: float | None
    epoch_end: float | None

    @property
    def media_time(self) -> float:
        return self.samples / RATE


def _code(reply: list[object]) -> tuple[int, int]:
    """A script's ``{code}`` or ``{code, samples}``."""
    return int(text(reply[0])), int(text(reply[1])) if len(reply) > 1 else 0


class Coordinator:
    def __init__(
        self, client: aioredis.Redis, *, chunk_ms: int, retention_seconds: float, state_ttl_seconds: int | None = None
    ) -> None:
        """``retention_seconds``: audio kept per stream while live (``MAXLEN ~``);
        ``state_ttl_seconds``: how long the event's ingest state (its media time, read by the
        usage records and the console) outlives the end of stream, REACHLIVE_RETENTION_DAYS by
        default. The audio itself goes ``keys.AUDIO_RETENTION_AFTER_END_SECONDS`` after it."""
        self.client = client
        self.ttl_ms = keys.INGEST_PRIMARY_TTL_SECONDS * 1000
        self.maxlen = max(int(retention_seconds * 1000 / chunk_ms), 10)
        self.state_ttl = state_ttl_seconds if state_ttl_seconds is not None else CommonSettings().retention_seconds
        self._acquire = client.register_script(_ACQUIRE)
        self._refresh = client.register_script(_REFRESH)
        self._release = client.register_script(_RELEASE)
        self._write = client.register_script(_WRITE)
        self._resume = client.register_script(_RESUME)
        self._eos = client.register_script(_EOS)
        self._open = client.register_script(_OPEN)

    def _keys(self, event_id: str) -> list[str]:
        return [keys.ingest_primary(event_id), keys.ingest_state(event_id), keys.audio(event_id)]

    async def acquire(self, event_id: str, me: str) -> Timeline | bool | None:
        """Become the writer: the timeline to continue; None if another holds it; False after EOS."""
        res = await self._acquire(keys=self._keys(event_id)[:2], args=[me, self.ttl_ms, repr(time.time())])
        code = int(res[0])
        if code == -1:
            return False
        if code == 0:
            return None
        pts, epoch = text(res[2]), text(res[3])
        return Timeline(int(text(res[1])), float(pts) if pts else None, float(epoch) if epoch else None)

    async def refresh(self, event_id: str, me: str) -> bool:
        return bool(await self._refresh(keys=self._keys(event_id)[:2], args=[me, self.ttl_ms, repr(time.time())]))

    async def release(self, event_id: str, me: str) -> None:
        await self._release(keys=self._keys(event_id)[:2], args=[me, repr(time.time())])

    async def resume(self, event_id: str, me: str, expected: int, in_doubt: int, rewind: int) -> tuple[int, int]:
        """Take the lease back after an outage (see _RESUME): (1, _), (2, _) (the ``in_doubt``
        samples written last landed), (3, samples) (a failover lost our writes after
        ``samples``, which is not before ``rewind``: write again from there), (0, _) (someone
        else writes now), (-2, _) (ended)."""
        landed = str(expected + in_doubt) if in_doubt else ""
        args = [me, self.ttl_ms, str(expected), landed, repr(time.time()), str(rewind)]
        return _code(await self._resume(keys=self._keys(event_id)[:2], args=args))

    async def write(
        self, event_id: str, me: str, expected: int, chunk: streams.AudioChunk, epoch_end: float, rewind: int
    ) -> tuple[int, int]:
        """XADD one chunk if still the writer at ``expected`` samples: (1, _), (2, _) (this chunk
        was written already: its first reply was lost to an outage), (3, samples) (a failover
        lost our writes after ``samples``, not before ``rewind``: the lease is ours, write again
        from there), or (-1, _) lost lease, (-2, _) after end of stream, (-3, _) timeline moved."""
        n = len(chunk.pcm) // 2
        flat: list[str | bytes] = []
        for k, v in chunk.fields().items():
            flat += [k, v]
        args = [
            me,
            self.ttl_ms,
            str(expected),
            str(expected + n),
            repr(chunk.pts + n / RATE),
            repr(epoch_end),
            self.maxlen,
            repr(time.time()),
            str(rewind),
            *flat,
        ]
        started = time.perf_counter()
        res = _code(await self._write(keys=self._keys(event_id), args=args))
        metrics.REDIS_WRITE.observe(time.perf_counter() - started)
        if res[0] == 1:
            metrics.AUDIO_SECONDS.inc(n / RATE)
            metrics.AUDIO_BYTES.inc(len(chunk.pcm))
        return res

    async def mark_seen(self, event_id: str) -> None:
        """A publish was accepted: the grace period counts from now even before any audio."""
        await self.client.hset(keys.ingest_state(event_id), "alive", repr(time.time()))

    async def ended(self, event_id: str) -> bool:
        return text(await self.client.hget(keys.ingest_state(event_id), "eos") or b"") == "1"

    async def open_session(self, event_id: str) -> bool:
        """The first accepted publish of an event opens its media session (docs/design.md section 3)."""
        await self.client.sadd(keys.INGEST_ACTIVE, event_id)
        # An HSETNX in spirit: the registry writes session="0" up front, so "not yet 1" is
        # the condition, checked and set atomically.
        if not await self._open(keys=[keys.event(event_id)]):
            return False
        await self.client.xadd(keys.SESSIONS_STREAM, streams.SessionEntry(event_id).fields())
        metrics.SESSIONS_OPENED.inc()
        return True

    async def last_alive(self, event_ids: list[str]) -> list[float]:
        """When each event last had a publisher (write, heartbeat, release or accepted publish),
        in one round trip; 0 if never. The sweeper counts paused events with it."""
        async with self.client.pipeline(transaction=False) as pipe:
            for event_id in event_ids:
                pipe.hget(keys.ingest_state(event_id), "alive")
            raw = await pipe.execute()
        return [float(text(v)) if v else 0.0 for v in raw]

    async def end_of_stream(self, event_id: str, reason: str) -> bool:
        """Write the event's one end-of-stream entry (the event is over); True if written now."""
        for _ in range(3):
            raw = await self.client.hget(keys.ingest_state(event_id), "samples")
            samples = int(text(raw)) if raw else 0
            entry = streams.EndOfStream(samples / RATE, reason).fields()
            flat: list[str] = []
            for k, v in entry.items():
                flat += [k, v]
            res = int(
                await self._eos(
                    keys=[*self._keys(event_id), keys.INGEST_ACTIVE],
                    args=[
                        str(samples),
                        keys.AUDIO_RETENTION_AFTER_END_SECONDS,
                        self.state_ttl,
                        event_id,
                        *flat,
                    ],
                )
            )
            if res == -3:
                continue  # a chunk landed meanwhile: recompute the end time
            # The script took the event out of the sweep's set with the end itself: a reader
            # that sees the end of stream never sees the event still open.
            if res == 1:
                metrics.END_OF_STREAM.labels(reason).inc()
                return True
            return False
        return False
