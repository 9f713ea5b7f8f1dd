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
# much more delay of an entry, and only under load (a read that waited for its entry is not
# delayed). bench/relay.py at 200 sessions: 20 ms halves the reads again (0.23 XREAD/s per session
# instead of 0.44) for 0.016 % of a core per session less, but delays the audio 12.8 ms at the
# median instead of 6.9 (0 ms: an XREAD per entry, dearer than one per session): the latency is
# worth more here (the pipeline's overhead target), the commands and CPU are small either way.
GATHER_SECONDS = 0.01
# The wake stream keeps its last entry only; it goes this long after the last wake.
WAKE_TTL_SECONDS = 3600


def _bulk(value: bytes) -> bytes:
    """One RESP bulk string (a command argument)."""
    return b"$%d\r\n%s\r\n" % (len(value), value)


class Subscription:
    """One reader of one audio stream, from a position on: a bounded queue of its entries."""

    def __init__(self, reader: AudioReader, event_id: str, after: str) -> None:
        self.reader = reader
        self.event_id = event_id
        self.key = keys.audio(event_id)
        self.key_arg = _bulk(self.key.encode())
        self.position = after  # the last entry handed over (or the start)
        self.after = StreamId.parse(after)
        self.after_arg = _bulk(str(self.after).encode())
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

    def _moved(self) -> None:
        """After a read that handed it entries: its next read starts after the last."""
        self.after_arg = _bulk(str(self.after).encode())

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
        self.wake_arg = _bulk(self.wake_key.encode())
        self.wake_after = "0-0"
        self.health = health or redis_health.get("relay")
        self.block_ms = block_ms
        self.gather_seconds = gather_seconds
        self.subs: dict[str, list[Subscription]] = {}  # by stream key
        self.count = 0
        self.changed = asyncio.Event()  # a subscription was added, or took its entries
        self.reading = False  # an XREAD is out: a new subscription wakes it
        self.tasks = TaskSet("relay-audio-reader")
        self._waking = False
        self._warned = False

    def subscribe(self, event_id: str, after: str) -> Subscription:
        """The event's audio entries after ``after`` (close the subscription when done)."""
        sub = Subscription(self, event_id, after)
        self.subs.setdefault(sub.key, []).append(sub)
        self.count += 1
        metrics.AUDIO_SUBSCRIPTIONS.set(self.count)
        self.changed.set()
        if self.reading and not self._waking:
            self._waking = True
            self.tasks.spawn(self._wake(), "wake")
        return sub

    def remove(self, sub: Subscription) -> None:
        # Nothing to wake: entries the blocked read returns for it are dropped.
        subs = self.subs.get(sub.key, [])
        if sub in subs:
            subs.remove(sub)
            self.count -= 1
            if not subs:
                del self.subs[sub.key]
        metrics.AUDIO_SUBSCRIPTIONS.set(self.count)

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
                groups, command = self._command()
                if not groups:
                    # No subscription, or none with room: nothing to read until one changes.
                    self.changed.clear()
                    await self.changed.wait()
                    continue
                started = loop.time()
                self.reading = True  # set with no await since ``_command``: no subscription slips by
                try:
                    async with asyncio.timeout(self.block_ms / 1000 + COMMAND_SECONDS):
                        reply = await self._xread(command)
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

    def _command(self) -> tuple[dict[str, list[Subscription]], bytes]:
        """The subscriptions with room, by stream, and the XREAD for them, in RESP.

        Packed here, from arguments each subscription keeps encoded: redis-py packs a command
        argument by argument in Python, which for hundreds of streams cost the reader as much
        as the reads it saves (bench/relay.py, py-spy)."""
        groups: dict[str, list[Subscription]] = {}
        key_args: list[bytes] = []
        id_args: list[bytes] = []
        held = 0
        for key, subs in self.subs.items():
            if len(subs) == 1:  # the rule: one session per event
                sub = subs[0]
                if not sub.room:
                    held += 1
                    continue
                ready = subs
            else:
                ready = [s for s in subs if s.room]
                held += len(subs) - len(ready)
                if not ready:
                    continue
                sub = min(ready, key=lambda s: s.after)
            groups[key] = ready
            key_args.append(sub.key_arg)
            id_args.append(sub.after_arg)
        if held:
            metrics.AUDIO_READS_HELD.inc(held)
        key_args.append(self.wake_arg)
        id_args.append(_bulk(self.wake_after.encode()))
        head = b"*%d\r\n$5\r\nXREAD\r\n$5\r\nCOUNT\r\n%s$5\r\nBLOCK\r\n%s$7\r\nSTREAMS\r\n" % (
            6 + 2 * len(key_args),
            _bulk(b"%d" % READ_COUNT),
            _bulk(b"%d" % self.block_ms),
        )
        return groups, b"".join([head, *key_args, *id_args])

    async def _xread(self, command: bytes) -> Any:
        """Send the packed XREAD on a connection of the reader's pool and read its reply (raw:
        ``{key: [[id, [field, value, ...]], ...]}``, or pairs in RESP2, or None). redis-py drops the
        connection on an error or a cancellation during the read (``disconnect_on_error``)."""
        pool = self.redis.connection_pool
        conn = await pool.get_connection()
        try:
            await conn.send_packed_command(command)
            return await conn.read_response()
        finally:
            await pool.release(conn)

    def _deliver(self, reply: Any, groups: dict[str, list[Subscription]]) -> int:
        """Hand each entry to the subscriptions (of this read, still open) it follows."""
        delivered = 0
        # A map in RESP3 (redis-py 8's default protocol), a list of pairs in RESP2.
        for raw_key, entries in reply.items() if isinstance(reply, dict) else reply or ():
            key = text(raw_key)
            if key == self.wake_key:
                if entries:
                    self.wake_after = text(entries[-1][0])
                continue
            subs = [s for s in groups.get(key, ()) if not s.closed]
            for raw_id, flat in entries:
                entry_id = text(raw_id)
                sid = StreamId.parse(entry_id)
                fields = dict(zip(flat[::2], flat[1::2], strict=True))
                for sub in subs:
                    if sid > sub.after:
                        sub._push(entry_id, sid, fields)
                        delivered += 1
            for sub in subs:
                sub._moved()
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
