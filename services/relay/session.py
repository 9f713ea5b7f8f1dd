"""One live event's speech session: audio stream → KWIKmotion → captions (DESIGN section 4).

``EventSession.run`` owns the event while this replica holds its claim. It loops over KWIKmotion
connections (``Connection``) until the audio's end-of-stream has been transcribed, a permanent
error fails the tasks, or every task is cancelled:

- retryable failures (a drop, 1011, 1008 at capacity, a silent peer, a timeout) reconnect with
  capped exponential backoff + jitter; the new connection replays the audio after the persisted
  cursor (audio not yet transcribed), and maps the new KWIKmotion session's times back to media
  time chunk by chunk, so captions continue the event's timeline;
- authentication errors are a configuration fault: an alert-level log, a metric, a retry every
  ``auth_retry_seconds`` (never a spin);
- 4004 / 4001 invalid_message are permanent: end-of-stream responses, tasks → ERROR with the reason.

Nothing is kept only in memory: every caption write persists, atomically, what was emitted
(``output.CaptionWriter``), so after a failure the state is simply re-read from Redis.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
import websockets
from redis.exceptions import RedisError
from websockets.exceptions import ConnectionClosed as WsClosed
from websockets.exceptions import InvalidHandshake, InvalidStatus

from services.relay import metrics
from services.relay.audio import Chunk, Chunker, id_le
from services.relay.backoff import Backoff, slow
from services.relay.claim import Claimed, Claimer
from services.relay.output import CaptionWriter, Fenced, Pending, caption_maxlen, claim_epoch
from services.relay.outputs import TaskOutput, entry_fields, make_output, targets_of
from shared import commands, keys, registry
from shared.captions import AnchoredTimeBase, ChunkTimeBase, InvalidResult, parse_result
from shared.kwikmotion import (
    AudioAdded,
    ConnectionClosed,
    EndOfTranscript,
    ErrorClass,
    KwikError,
    KwikSession,
    ProtocolViolation,
    RecognitionStarted,
    Timeout,
    TranscriptResult,
    TranslationResult,
)
from shared.logs import log_context
from shared.settings import KwikmotionSettings, RelaySettings
from shared.streams import AudioChunk, PayloadError, parse_audio

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Config:
    relay: RelaySettings
    kwik: KwikmotionSettings
    caption_types: str
    redis_url: str


@dataclass(slots=True)
class Outcome:
    kind: str  # finished | retry | config | permanent | cancelled
    cause: str = ""  # reconnect cause (metrics label)
    code: str = ""
    reason: str = ""


def _str(raw: dict[Any, Any]) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v) for k, v in raw.items()
    }


def _close_cause(code: int, reason: str) -> str:
    if code == 1011 and "keepalive" in reason.lower():
        return "silent"
    return {1006: "drop", 1011: "internal_error", 1008: "capacity", 1000: "closed", 1001: "closed"}.get(code, "other")


def _error_cause(code: int | None) -> str:
    return {1011: "internal_error", 1008: "capacity"}.get(code or 0, "error")


class EventSession:
    def __init__(
        self,
        client: aioredis.Redis,
        claimer: Claimer,
        config: Config,
        claimed: Claimed,
        clock: Any = time.monotonic,
        reader: aioredis.Redis | None = None,
    ) -> None:
        assert claimed.event_id is not None
        self.client = client
        self.reader = reader or client  # for the blocking XREAD of the audio
        self.claimer = claimer
        self.config = config
        self.entry_id = claimed.entry_id
        self.event_id = claimed.event_id
        self.clock = clock
        self.state_key = keys.relay_state(self.event_id)
        self.epoch = 0
        self.sent_high = "0-0"  # highest audio id sent by this replica (replay accounting)

    # --- the session -------------------------------------------------------------------------
    async def run(self) -> None:
        with log_context(event_id=self.event_id):
            backoff = Backoff(self.config.relay.backoff_initial_seconds, self.config.relay.backoff_max_seconds)
            while True:
                try:
                    await self._run()
                    return
                except Fenced:
                    metrics.FENCED.inc()
                    log.warning("another relay owns the session now: stopped")
                    return
                except Exception:
                    # Redis unreachable, a bug: keep the claim (heartbeats go on) and retry; all
                    # progress is in Redis, so the retry resumes where the last commit left off.
                    delay = backoff.next()
                    log.exception("session failed: retrying in %.1fs", delay)
                    await asyncio.sleep(delay)

    async def _run(self) -> None:
        if not self.epoch:
            self.epoch = await claim_epoch(self.client, self.event_id)
        cfg = self.config.relay
        backoff = Backoff(cfg.backoff_initial_seconds, cfg.backoff_max_seconds)
        while True:
            state = _str(await self.client.hgetall(self.state_key))
            event = await registry.read_event(self.client, self.event_id)
            if event is None:
                log.error("session for an unknown event: dropping it")
                await self.claimer.ack(self.entry_id)
                return
            if state.get("finished") == "1":
                await self._finalize(state.get("outcome", "ready"), state.get("reason", ""))
                return
            tasks = [t for t in await registry.event_task_records(self.client, self.event_id) if not t.cancelled]
            if not tasks or event.status == "cancelled":
                log.info("every task of the event is cancelled: session closed")
                metrics.SESSIONS_FINISHED.labels("cancelled").inc()
                await self._close_out()
                return
            cursor = state.get("cursor", "0-0")
            outs = [
                make_output(self.event_id, t, self.config.caption_types, state.get(f"task:{t.id}"), cursor)
                for t in tasks
            ]
            expire_at = int(max(event.end + event.post_end, time.time()) + keys.CAPTIONS_RETENTION_AFTER_END_SECONDS)
            writer = CaptionWriter(
                self.client,
                self.event_id,
                [t.id for t in tasks],
                self.epoch,
                caption_maxlen(event.start - event.pre_start, event.end + event.post_end),
                expire_at,
            )
            conn = Connection(self, event.source_language, targets_of(tasks), outs, writer, cursor)
            outcome = await conn.run()
            if conn.progressed:
                backoff.reset()
            if outcome.kind == "finished":
                await self._end(conn, "ready", "")
                return
            if outcome.kind == "permanent":
                log.error("KWIKmotion refused the session for good: %s", outcome.reason, extra={"code": outcome.code})
                await self._end(conn, "error", f"KWIKmotion error {outcome.code}: {outcome.reason}".strip())
                return
            if outcome.kind == "cancelled":
                continue  # re-read the registry at the top of the loop
            if outcome.kind == "config":
                metrics.AUTH_FAILURES.inc()
                metrics.RECONNECTS.labels("auth").inc()
                # An alert, not a retry storm: the credentials need an operator.
                log.critical(
                    "KWIKmotion authentication failed (check REACHLIVE_KWIKMOTION_TOKEN): %s",
                    outcome.reason,
                    extra={"code": outcome.code, "alert": "kwikmotion_auth"},
                )
                delay = slow(cfg.auth_retry_seconds)
            else:
                metrics.RECONNECTS.labels(outcome.cause or "other").inc()
                delay = backoff.next()
                log.warning(
                    "KWIKmotion session ended (%s %s %s): reconnecting in %.2fs",
                    outcome.cause,
                    outcome.code,
                    outcome.reason,
                    delay,
                )
            await asyncio.sleep(delay)

    async def _end(self, conn: Connection, outcome: str, reason: str) -> None:
        """Write every task's end-of-stream responses with the ``finished`` mark, then finalize."""
        now = time.time()
        pend: list[Pending] = []
        state: dict[str, str] = {"finished": "1", "outcome": outcome, "reason": reason}
        for i, out in enumerate(conn.outs):
            for built in out.builder.end_of_stream(conn.media_end, conn.time_base):
                pend.append(Pending(i, entry_fields(built, now)))
            state[f"task:{out.id}"] = out.dump()
        await conn.writer.commit(pend, state)
        for p in pend:
            metrics.CAPTIONS_WRITTEN.labels(p.fields["kind"]).inc()
        await self._finalize(outcome, reason)

    async def _finalize(self, outcome: str, reason: str) -> None:
        """Ask the poller to close each (not cancelled) task, then ack the session."""
        for task in await registry.event_task_records(self.client, self.event_id):
            if not task.cancelled:
                with log_context(task_id=task.id):
                    await commands.send_async(self.config.redis_url, commands.FINALIZE, task.id, outcome, reason)
                    log.info("task finalized: %s", outcome)
        metrics.SESSIONS_FINISHED.labels(outcome).inc()
        await self._close_out()

    async def _close_out(self) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.expire(keys.audio(self.event_id), keys.AUDIO_RETENTION_AFTER_END_SECONDS)
        pipe.expire(self.state_key, keys.CAPTIONS_RETENTION_AFTER_END_SECONDS)
        await pipe.execute()
        await self.claimer.ack(self.entry_id)


class Connection:
    """One KWIKmotion WebSocket connection of a session, from the persisted cursor on."""

    def __init__(
        self,
        session: EventSession,
        language: str,
        targets: list[str],
        outs: list[TaskOutput],
        writer: CaptionWriter,
        cursor: str,
    ) -> None:
        self.s = session
        cfg = session.config
        self.relay = cfg.relay
        self.kwik_cfg = cfg.kwik
        self.outs = outs
        self.writer = writer
        self.cursor = cursor
        self.kwik = KwikSession(
            language,
            targets,
            start_timeout=self.kwik_cfg.start_timeout_seconds,
            end_timeout=self.kwik_cfg.end_timeout_seconds,
        )
        self.chunker = Chunker(self.relay.chunk_seconds)
        self.time_base = ChunkTimeBase()
        self.queue: deque[Chunk] = deque()  # built, not sent yet
        self.sent: dict[int, Chunk] = {}  # by KWIKmotion seq_no, until complete
        self.kwik_time = 0.0
        self.media_end = 0.0  # media time of the end of the audio read so far
        self.eos = False
        self.eos_sent = False
        self.send_closed = False
        self.progressed = False
        self.last_rx = session.clock()
        self.room = asyncio.Event()
        self.send_lock = asyncio.Lock()
        self.ws: Any = None
        self.result: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        # Chunks held in memory (queued + sent, not complete): bounded so a slow KWIKmotion
        # does not make us read the whole stream ahead.
        self.max_held = self.relay.max_unacked_chunks * 2 + 1

    def _set(self, outcome: Outcome) -> None:
        if not self.result.done():
            self.result.set_result(outcome)

    async def run(self) -> Outcome:
        headers = {"Authorization": f"Bearer {self.kwik_cfg.token.get_secret_value()}"}
        await self._seed_time_base(keys.audio(self.s.event_id))
        metrics.KWIK_CONNECTS.inc()
        try:
            async with websockets.connect(
                self.kwik_cfg.url,
                additional_headers=headers,
                open_timeout=self.kwik_cfg.start_timeout_seconds,
                ping_interval=self.kwik_cfg.ping_interval_seconds,
                ping_timeout=self.kwik_cfg.ping_timeout_seconds,
                close_timeout=1.0,
                max_size=2**22,
                compression=None,
            ) as ws:
                self.ws = ws
                try:
                    await ws.send(self.kwik.start(self.s.clock()))
                except WsClosed:
                    # Refused at once (seed: authentication errors come "immediately after
                    # connection"): the Error message is still to be read, below.
                    self.send_closed = True
                try:
                    async with asyncio.TaskGroup() as tg:
                        tasks = [
                            tg.create_task(self._guard(self._receive())),
                            tg.create_task(self._guard(self._read_audio())),
                            tg.create_task(self._guard(self._watch())),
                        ]
                        outcome = await self.result
                        for t in tasks:
                            t.cancel()
                except asyncio.CancelledError:
                    # SIGTERM or a lost claim: say goodbye properly (1001 Going Away) instead of
                    # the 1011 websockets sends when its block exits with an exception.
                    await ws.close(1001, "relay going away")
                    raise
        except InvalidStatus as exc:
            status = exc.response.status_code
            metrics.ERRORS.labels(str(status) if status in (401, 403) else "other").inc()
            if status in (401, 403):
                return Outcome("config", "auth", str(status), f"HTTP {status} at the handshake")
            return Outcome("retry", "connect", str(status), f"HTTP {status} at the handshake")
        except (OSError, TimeoutError, InvalidHandshake, WsClosed) as exc:
            if self.result.done():
                return self.result.result()
            return Outcome("retry", "connect", "", type(exc).__name__)
        if outcome.kind == "fenced":
            raise Fenced(self.s.event_id)
        return outcome

    async def _guard(self, coro: Any) -> None:
        try:
            await coro
        except Fenced:
            self._set(Outcome("fenced"))
        except RedisError as exc:
            self._set(Outcome("retry", "redis", "", str(exc)))
        except WsClosed:
            self._closed()

    def _closed(self) -> None:
        code = self.ws.close_code if self.ws is not None and self.ws.close_code is not None else 1006
        reason = (self.ws.close_reason if self.ws is not None else "") or ""
        for ev in self.kwik.connection_closed(code, reason):
            self._on_terminal(ev)
        self._set(Outcome("retry", _close_cause(code, reason), str(code), reason))

    # --- receiving -----------------------------------------------------------------------------
    async def _receive(self) -> None:
        async for message in self.ws:
            now = self.s.clock()
            self.last_rx = now
            if isinstance(message, bytes):
                log.warning("KWIKmotion sent a binary message: ignored")
                continue
            for ev in self.kwik.receive(message, now):
                await self._on_event(ev, now)
            if self.result.done():
                return
        self._closed()

    async def _on_event(self, ev: Any, now: float) -> None:
        if isinstance(ev, RecognitionStarted):
            log.info("KWIKmotion session started", extra={"kwik_session": ev.session_id})
            await self._pump()
        elif isinstance(ev, AudioAdded):
            if ev.lag is not None:
                metrics.AUDIO_ADDED_LAG.observe(ev.lag)
            await self._pump()
        elif isinstance(ev, TranscriptResult):
            if ev.rtt is not None:
                metrics.ROUND_TRIP.observe(ev.rtt)
            await self._on_result(ev.raw, ev.chunk_index, now)
        elif isinstance(ev, TranslationResult):
            if ev.chunk_index is None:
                log.warning("AddTranslation owed to no transcript: ignored")
            else:
                await self._on_result(ev.raw, ev.chunk_index, now)
        elif isinstance(ev, EndOfTranscript):
            if self.kwik.completed < self.kwik.sent:
                log.warning("EndOfTranscript with %d chunk(s) without results", self.kwik.sent - self.kwik.completed)
            self._set(Outcome("finished"))
        elif isinstance(ev, ProtocolViolation) and not ev.fatal:
            log.warning("KWIKmotion protocol: %s", ev.reason)
        else:
            self._on_terminal(ev)

    def _on_terminal(self, ev: Any) -> None:
        """An event that ends the connection: decide what the session does next."""
        if isinstance(ev, KwikError):
            code = str(ev.code) if ev.code is not None else "other"
            metrics.ERRORS.labels(code if code in ("4001", "4004", "1008", "1011", "401", "403") else "other").inc()
            kind = {ErrorClass.PERMANENT: "permanent", ErrorClass.CONFIG: "config"}.get(ev.error_class, "retry")
            self._set(Outcome(kind, _error_cause(ev.code), code, ev.reason))
        elif isinstance(ev, ConnectionClosed):
            if ev.code in (1008, 1011, 4001, 4004):
                metrics.ERRORS.labels(str(ev.code)).inc()
            kind = {ErrorClass.PERMANENT: "permanent", ErrorClass.CONFIG: "config"}.get(ev.error_class, "retry")
            self._set(Outcome(kind, _close_cause(ev.code, ev.reason), str(ev.code), ev.reason))
        elif isinstance(ev, ProtocolViolation):
            self._set(Outcome("retry", "protocol", "", ev.reason))
        elif isinstance(ev, Timeout):
            self._set(Outcome("retry", "timeout", "", f"no answer in time ({ev.what})"))

    async def _on_result(self, raw: dict[str, Any], index: int, received: float) -> None:
        try:
            result = parse_result(raw)
        except InvalidResult as exc:
            log.warning("invalid KWIKmotion result dropped: %s", exc.reason)
            return
        chunk = self.sent.get(index)
        if chunk is None:
            return
        offset = chunk.media_t0 - chunk.kwik_t0
        created = time.time()
        pend: list[Pending] = []
        state: dict[str, str] = {}
        for i, out in enumerate(self.outs):
            if not out.builder.accepts(result) or id_le(chunk.last_id, out.done):
                continue  # not this task's language, or emitted before a reconnect/takeover
            pend.extend(Pending(i, entry_fields(b, created)) for b in out.builder.build(result, offset, self.time_base))
            out.done = chunk.last_id
            state[f"task:{out.id}"] = out.dump()
        trim = ""
        last = self.sent.get(self.kwik.completed - 1)
        if last is not None and last.last_id != self.cursor and id_le(self.cursor, last.last_id):
            # Chunks [0, completed) have every result: the cursor moves past their audio.
            self.cursor = trim = state["cursor"] = last.last_id
            self.progressed = True
            self.time_base.prune(last.media_t0)
            for seq in [s for s in self.sent if s < self.kwik.completed - 1]:
                del self.sent[seq]
        if pend or state:
            log.debug("commit chunk %s completed %s cursor %s", index, self.kwik.completed, state.get("cursor"))
            await self.writer.commit(pend, state, trim)
        metrics.ADDED_LATENCY.observe(self.s.clock() - received)
        for p in pend:
            metrics.CAPTIONS_WRITTEN.labels(p.fields["kind"]).inc()
        self.room.set()
        await self._pump()

    # --- sending -------------------------------------------------------------------------------
    def _held(self) -> int:
        return len(self.queue) + self.kwik.sent - self.kwik.completed

    async def _read_audio(self) -> None:
        """Audio entries after the cursor → chunks; never skips, stops at the end-of-stream."""
        client = self.s.reader
        key = keys.audio(self.s.event_id)
        pos = self.cursor
        while not self.eos:
            while self._held() >= self.max_held:
                self.room.clear()
                await self.room.wait()
            reply = await client.xread({key: pos}, count=64, block=1000)
            for _stream, entries in reply or []:
                for raw_id, fields in entries:
                    pos = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
                    try:
                        item = parse_audio(fields)
                    except PayloadError as exc:
                        log.error("unreadable audio entry %s skipped: %s", pos, exc)
                        continue
                    if isinstance(item, AudioChunk):
                        self.time_base.add(item)
                        self.media_end = max(self.media_end, item.media_time + item.duration)
                        self.queue.extend(self.chunker.add(pos, item))
                    else:
                        self.media_end = max(self.media_end, item.media_time)
                        self.queue.extend(self.chunker.flush())
                        self.eos = True
                        break
                if self.eos:
                    break
            await self._pump()

    async def _seed_time_base(self, key: str) -> None:
        """Anchor pts/epoch at the cursor's entry (XTRIM MINID keeps it), for responses built
        before any new audio is read (e.g. the end-of-stream ones right after a takeover)."""
        if self.cursor != "0-0":
            for _id, fields in await self.s.client.xrange(key, self.cursor, self.cursor, count=1):
                try:
                    item = parse_audio(fields)
                except PayloadError:
                    break
                if isinstance(item, AudioChunk):
                    self.time_base.add(item)
                    self.media_end = item.media_time + item.duration
                    return
        self.time_base.add(AnchoredTimeBase.no_pts(0.0, time.time()))

    async def _pump(self) -> None:
        try:
            await self._send_due()
        except WsClosed:
            # The server closed (after an Error, say): stop sending, but keep reading. Results
            # it sent before closing are still queued on our side and must be committed, or
            # their audio would be replayed and captioned twice.
            self.send_closed = True

    async def _send_due(self) -> None:
        if self.send_closed:
            return
        async with self.send_lock:
            max_unacked = self.relay.max_unacked_chunks
            while self.queue and self.kwik.can_send(max_unacked) and not self.result.done():
                chunk = self.queue.popleft()
                now = self.s.clock()
                chunk.seq = self.kwik.sent
                chunk.kwik_t0 = self.kwik_time
                chunk.sent_at = now
                self.kwik_time += chunk.duration
                frame = self.kwik.send_audio(chunk.pcm, now)
                self.sent[chunk.seq] = chunk
                await self.ws.send(frame)
                metrics.AUDIO_SENT.inc(chunk.duration)
                if id_le(chunk.last_id, self.s.sent_high):
                    metrics.AUDIO_REPLAYED.inc(chunk.duration)
                else:
                    self.s.sent_high = chunk.last_id
            if self.eos and not self.queue and self.kwik.state == "streaming" and not self.eos_sent:
                if self.kwik.sent == 0:
                    self._set(Outcome("finished"))  # everything was transcribed before
                else:
                    self.eos_sent = True
                    await self.ws.send(self.kwik.end_of_stream(self.s.clock()))

    # --- timers --------------------------------------------------------------------------------
    async def _watch(self) -> None:
        """Timeouts of the session core, a silent peer, and tasks cancelled mid-event."""
        silent = self.kwik_cfg.ping_timeout_seconds
        check_every = self.relay.heartbeat_seconds
        next_check = self.s.clock() + check_every
        while not self.result.done():
            await asyncio.sleep(min(0.25, silent / 4))
            now = self.s.clock()
            for ev in self.kwik.poll(now):
                self._on_terminal(ev)
            waiting = self.kwik.state == "streaming" and self.kwik.completed < self.kwik.sent
            if waiting and now - self.last_rx > silent:
                self._set(Outcome("retry", "silent", "", f"no message from KWIKmotion for {silent:.0f}s"))
            if now >= next_check:
                next_check = now + check_every
                await self._check_cancelled()

    async def _check_cancelled(self) -> None:
        event, flags = await registry.read_cancellation(self.s.client, self.s.event_id, [o.id for o in self.outs])
        live = 0
        for out, cancelled in zip(self.outs, flags, strict=True):
            if cancelled:
                if not out.record.cancelled:
                    out.record.cancelled = True
                    log.info("task cancelled mid-event: no more captions for it", extra={"task_id": out.id})
            else:
                live += 1
        if live == 0 or (event is not None and event.status == "cancelled"):
            self._set(Outcome("cancelled"))


def session_runner(
    client: aioredis.Redis, claimer: Claimer, config: Config, reader: aioredis.Redis | None = None
) -> Any:
    """The ``Relay``'s runner: one ``EventSession`` per claimed entry."""

    async def run(claimed: Claimed) -> None:
        if claimed.event_id is None:
            await claimer.ack(claimed.entry_id)
            return
        await EventSession(client, claimer, config, claimed, reader=reader).run()

    return run
