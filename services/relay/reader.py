"""One audio reader for every session of a relay process (issue 22; docs/services.md, relay).

A session used to hold a connection of its own in ``XREAD BLOCK`` on its event's audio stream:
two reads a second per live event (an entry every 500 ms), each a Redis command and a redis-py
round trip (~185 µs of client CPU on the development VM). Now one task per process issues one
``XREAD COUNT … BLOCK …`` over the audio streams of every :class:`Subscription` (a KWIKmotion
connection, or a session waiting for the audio to return after a pause), each at its own
position, on a connection of its own, and hands each subscription its entries. Under load a
read returns as soon as any stream has an entry, so the reads are spaced by ``GATHER_SECONDS``:
what arrived meanwhile on every stream comes in one read.

- **Positions.** A subscription starts at the id it is given (the persisted cursor of a
  connection that replays, the last entry read of a paused session) and moves past each entry
  it is handed; entries come in stream order, none skipped, whatever was trimmed before the
  position (XREAD returns what follows it). Two subscriptions of one stream (a session taken
  over in this very process while the old one stops) are read together from the earlier position.
- **Back-pressure.** Each subscription holds at most ``QUEUE_ENTRIES`` entries. A stream is left
  out of the read while its queue has no room for a whole ``READ_COUNT`` more (the session is not
  taking them: its chunks wait for KWIKmotion, or its commits for Redis), and comes back once the
  session takes what is queued: nothing is dropped, and nothing is read ahead of a slow session
  beyond its queue. A full queue holds ``QUEUE_ENTRIES`` × 500 ms of audio, far more than a read
  blocks, so the session never starves waiting for the reader to notice it took its entries.
- **New subscriptions** must not wait for a blocked read to expire (a reconnect replays from the
  cursor at once). The reader also reads a wake stream of its own (``keys.relay_wake``) and a
  subscription added while a read is blocked XADDs to it. A stream entry, not ``CLIENT UNBLOCK``:
  an UNBLOCK that reaches Redis just before the XREAD it aims at is lost and that read then blocks
  its whole time, while an entry added before the XREAD arrives makes it return at once (it reads
  after the last wake entry it saw). A short block would do too, at the price of a read every
  block while the sessions are paused and of that much delay for every new connection.
- **Redis outages** end nothing: a read that fails for want of Redis is retried after a short
  capped backoff (``outage.Retry``) from the same positions, and the process's ``RedisHealth``
  says it once (one line lost, one back); the sessions simply get no audio meanwhile, as during a
  media pause. Any other error of a read is handed to the subscriptions whose key is not a stream
  (``TYPE``), or to every one if none is found: their connections end and retry, as a failed
  per-session read made them do.

This is a multi-key command over events of different hash tags: it needs the non-cluster Redis
the deployment requires (docs/operating.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

import redis.asyncio as aioredis

from services.relay import metrics
from services.relay.outage import COMMAND_SECONDS, Retry
from shared import keys, redis_health
from shared.aio import TaskSet, check_cancelled
from shared.redis_client import text
from shared.redis_health import RedisHealth, is_outage
from shared.streams import StreamId

log = logging.getLogger(__name__)

Entry = tuple[str, dict[Any, Any]]  # (stream id, raw fields)

# XREAD COUNT: entries per stream per read. A live stream has one or two new entries per read; a
# replay (a reconnect from the cursor) takes a few reads. It also bounds a read's reply (COUNT ×
# 16 kB of PCM per stream).
READ_COUNT = 8
# Entries queued per subscription (8 s of 500 ms entries): the memory a slow session can hold.
QUEUE_ENTRIES = 2 * READ_COUNT
# How long a read blocks when no stream has anything (subscriptions added meanwhile wake it).
BLOCK_MS = 1000
# Reads start at least this far apart while audio flows: the entries of every stream that arrive
# meanwhile are read together (one read per gather period, not one per entry), for at most this
# much more delay of an entry (a chunk is 2 s or more of audio).
GATHER_SECONDS = 0.02
# The wake stream keeps its last entry only; it goes this long after the last wake.
WAKE_TTL_SECONDS = 3600


class Subscription:
    """One reader of one audio stream, from a position on: a bounded queue of its entries."""

    def __init__(self, reader: AudioReader, event_id: str, after: str) -> None:
        self.reader = reader
        self.event_id = event_id
        self.key = keys.audio(event_id)
        self.position = after  # the last entry handed over (or the start)
        self.after = StreamId.parse(after)
        self.queue: deque[Entry] = deque()
        self.ready = asyncio.Event()  # entries queued, or an error
        self.error: BaseException | None = None
        self.closed = False

    @property
    def room(self) -> bool:
        """A whole read fits: the stream is in the next XREAD."""
        return len(self.queue) + READ_COUNT <= QUEUE_ENTRIES

    async def get(self, timeout: float) -> list[Entry]:
        """Every entry queued, oldest first, waiting up to ``timeout`` s for one ([] if none
        came); raises the read error handed to this subscription, once."""
        if not self.queue and self.error is None:
            self.ready.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self.ready.wait()
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        entries = list(self.queue)
        self.queue.clear()
        if entries:
            self.reader.changed.set()  # room again: back in the reads (the reader may be idle)
        return entries

    def close(self) -> None:
        self.closed = True
        self.reader.remove(self)

    def _push(self, entry_id: str, sid: StreamId, fields: dict[Any, Any]) -> None:
        self.queue.append((entry_id, fields))
        self.position, self.after = entry_id, sid
        self.ready.set()

    def _fail(self, exc: BaseException) -> None:
        self.error = exc
        self.ready.set()


class AudioReader:
    """The process's shared reader of the sessions' audio streams (see the module doc)."""

    def __init__(
        self,
        reader: aioredis.Redis,
        client: aioredis.Redis,
        consumer: str,
        health: RedisHealth | None = None,
        block_ms: int = BLOCK_MS,
        gather_seconds: float = GATHER_SECONDS,
    ) -> None:
        """``reader``: a client only this reader uses (its connection sits in XREAD BLOCK);
        ``client``: the command client (the wake-ups); ``consumer``: the replica's name."""
        self.redis = reader
        self.client = client
        self.wake_key = keys.relay_wake(consumer)
        self.wake_after = "0-0"
        self.health = health or redis_health.get("relay")
        self.block_ms = block_ms
        self.gather_seconds = gather_seconds
        self.subs: set[Subscription] = set()
        self.changed = asyncio.Event()  # a subscription was added, or took its entries
        self.reading = False  # an XREAD is out: a new subscription wakes it
        self.tasks = TaskSet("relay-audio-reader")
        self._waking = False
        self._warned = False

    def subscribe(self, event_id: str, after: str) -> Subscription:
        """The event's audio entries after ``after`` (close the subscription when done)."""
        sub = Subscription(self, event_id, after)
        self.subs.add(sub)
        metrics.AUDIO_SUBSCRIPTIONS.set(len(self.subs))
        self.changed.set()
        if self.reading and not self._waking:
            self._waking = True
            self.tasks.spawn(self._wake(), "wake")
        return sub

    def remove(self, sub: Subscription) -> None:
        # Nothing to wake: entries the blocked read returns for it are dropped.
        self.subs.discard(sub)
        metrics.AUDIO_SUBSCRIPTIONS.set(len(self.subs))

    async def _wake(self) -> None:
        """End the blocked read now (see the module doc), so it is issued again with the new
        stream. Best effort: if Redis does not take it, the read ends at its block time anyway."""
        try:
            async with asyncio.timeout(COMMAND_SECONDS):
                async with self.client.pipeline(transaction=False) as pipe:
                    pipe.xadd(self.wake_key, {"w": "1"}, maxlen=1, approximate=False)
                    pipe.expire(self.wake_key, WAKE_TTL_SECONDS)
                    await pipe.execute()
            metrics.AUDIO_READER_WAKES.inc()
        except Exception as exc:
            if not is_outage(exc):
                log.warning("waking the audio reader failed: %s", exc)
        finally:
            self._waking = False

    async def run(self) -> None:
        """Read until cancelled."""
        loop = asyncio.get_running_loop()
        retry = Retry()
        try:
            while True:
                check_cancelled()  # redis-py may swallow a cancellation (shared.aio)
                groups = self._groups()
                if not groups:
                    # No subscription, or none with room: nothing to read until one changes.
                    self.changed.clear()
                    await self.changed.wait()
                    continue
                streams = {key: str(min(s.after for s in subs)) for key, subs in groups.items()}
                streams[self.wake_key] = self.wake_after
                started = loop.time()
                self.reading = True  # set with no await since ``groups``: no subscription slips by
                try:
                    async with asyncio.timeout(self.block_ms / 1000 + COMMAND_SECONDS):
                        reply = await self.redis.xread(streams, count=READ_COUNT, block=self.block_ms)
                except Exception as exc:
                    check_cancelled()
                    if is_outage(exc):
                        self.health.lost(exc)
                        log.debug("audio reader: redis unreachable (%r), retrying in %.2fs", exc, retry.delay)
                    else:
                        await self._failed(exc, groups)
                    await retry.wait()
                    continue
                finally:
                    self.reading = False
                self.health.back()
                retry.reset()
                self._warned = False
                metrics.AUDIO_READS.inc()
                metrics.AUDIO_READ_STREAMS.observe(len(groups))
                if self._deliver(reply, groups) and self.gather_seconds > 0:
                    left = started + self.gather_seconds - loop.time()
                    if left > 0:
                        await asyncio.sleep(left)
        finally:
            await self.tasks.close(timeout=2)

    def _groups(self) -> dict[str, list[Subscription]]:
        """The subscriptions with room, by stream."""
        groups: dict[str, list[Subscription]] = {}
        held = 0
        for sub in self.subs:
            if sub.room:
                groups.setdefault(sub.key, []).append(sub)
            else:
                held += 1
        if held:
            metrics.AUDIO_READS_HELD.inc(held)
        return groups

    def _deliver(self, reply: Any, groups: dict[str, list[Subscription]]) -> int:
        """Hand each entry to the subscriptions (of this read, still open) it follows."""
        delivered = 0
        for raw_key, entries in reply or ():
            key = text(raw_key)
            if key == self.wake_key:
                if entries:
                    self.wake_after = text(entries[-1][0])
                continue
            subs = [s for s in groups.get(key, ()) if not s.closed]
            for raw_id, fields in entries:
                entry_id = text(raw_id)
                sid = StreamId.parse(entry_id)
                for sub in subs:
                    if sid > sub.after:
                        sub._push(entry_id, sid, fields)
                        delivered += 1
        if delivered:
            metrics.AUDIO_READ_ENTRIES.inc(delivered)
        return delivered

    async def _failed(self, exc: BaseException, groups: dict[str, list[Subscription]]) -> None:
        """A read failed, not for want of Redis (a key that is not a stream: WRONGTYPE): hand
        the error to the subscriptions of the keys at fault, or to all if none is found."""
        if not self._warned:
            self._warned = True
            log.warning("audio read failed: %s", exc)
        at_fault = set(groups)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(COMMAND_SECONDS):
                async with self.client.pipeline(transaction=False) as pipe:
                    for key in groups:
                        pipe.type(key)
                    types = await pipe.execute()
            found = {key for key, kind in zip(groups, types, strict=True) if text(kind) not in ("stream", "none")}
            at_fault = found or at_fault
        for key in at_fault:
            for sub in groups[key]:
                sub._fail(exc)
