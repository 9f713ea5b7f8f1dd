"""One KWIKmotion WebSocket connection of a live event's session (docs/design.md section 4).

``Connection.run`` connects, sends StartRecognition, then runs three tasks until an
:class:`~services.relay.outcome.Outcome` is decided:

- ``_read_audio``: audio entries after the persisted cursor, handed over by the process's shared
  reader (``reader.AudioReader``) → chunks (``audio.Chunker``), up to a bounded number held in
  memory;
- ``_receive``: KWIKmotion's messages through the sans-I/O ``KwikSession``, which places results on
  chunks whatever reading of the seed the server follows (``shared.kwikmotion.results``: any
  order, session or chunk time base, translations by time range, missing fields derived, words
  across chunk boundaries) and releases them per stream in chunk order; each released result
  becomes caption entries, committed atomically with the task positions and the cursor
  (``writer.CaptionWriter``), the cursor moved by the ``ledger.ChunkLedger``. What cannot be
  placed, and results that never come, are counted (metrics) and logged once per KWIKmotion
  session per reason;
- ``_timers``: sleeps until the next deadline — the session core's (``next_deadline``: the
  RecognitionStarted and EndOfTranscript timeouts, results waited for ``RESULT_WAIT_SECONDS``), a
  silent peer's, the idle close, the periodic
  check of the registry for cancelled and newly ordered tasks — instead of polling.

Media pauses (docs/design.md section 4; the audio stream simply has no entries while no publisher is
connected): a partial chunk is sent once no audio came for ``flush_after_seconds``; once every
sent chunk is answered and ``idle_close_seconds`` passed without audio, the connection closes
(1000 "idle", ``Kind.IDLE``) and the session reopens one from the cursor when audio returns.

Redis outages (issue 18): the connection stays open (KWIKmotion is not Redis). The shared reader
waits and retries (every Redis call has a deadline: a frozen Redis is an error, not a hang); a commit
that fails for want of Redis is kept in memory, in order, and a flusher commits the backlog when
Redis is back (``writer.CaptionWriter`` numbers commits, so one whose reply was lost is applied
once). While a commit is held the reader reads no more audio, so the backlog is bounded by the
chunks held (at most ``2 × max_unacked_chunks + 1`` chunks' results). The connection never ends
with commits held: whatever ends it, the backlog is committed first (or, if the claim was lost,
dropped: the new owner replays from the persisted cursor).

Redis failovers (issue 18): a commit that finds the stored state behind it (``output.CommitGap``:
the new master lacks commits the old one acknowledged) ends the connection at once, its backlog
dropped (each held commit follows the lost ones), and the session restarts from the persisted
cursor; the lost captions are computed again from the audio.

Late orders: a task of the event that this connection does not serve (and that is not
cancelled) found at the heartbeat check stops the sending; once every sent chunk is answered
the connection closes (``Kind.RETARGET``) and the session reconnects with the new targets from
the cursor, so nothing is replayed and the new task's captions start at the cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
import websockets
from redis.exceptions import RedisError
from websockets.exceptions import ConnectionClosed as WsClosed
from websockets.exceptions import InvalidHandshake, InvalidStatus

from services.relay import metrics
from services.relay.audio import Chunker, id_le
from services.relay.ledger import ChunkLedger
from services.relay.outage import COMMAND_SECONDS, Retry, until_done
from services.relay.outcome import Kind, Outcome, close_cause, error_cause, refused_language
from services.relay.outputs import TaskOutput, entry_fields
from services.relay.reader import AudioReader, Subscription
from services.relay.writer import CaptionWriter, Commit, CommitGap, Fenced, Pending
from shared import keys, redis_health, registry
from shared.aio import check_cancelled
from shared.captions import AnchoredTimeBase, ChunkTimeBase, InvalidResult, parse_result
from shared.kwikmotion import (
    DROP_REASONS,
    INVALID_MODEL,
    AudioAdded,
    ConnectionClosed,
    EndOfTranscript,
    ErrorClass,
    KwikError,
    KwikSession,
    ProtocolViolation,
    RecognitionStarted,
    ResultsMissing,
    TimeBaseDetected,
    Timeout,
    TranscriptResult,
    TranslationResult,
)
from shared.kwikmotion.results import SOURCE
from shared.redis_health import RedisHealth, is_outage
from shared.registry import TaskRecord
from shared.settings import KwikmotionSettings, RelaySettings
from shared.streams import AudioChunk, PayloadError, parse_audio

log = logging.getLogger(__name__)

# The shortest partial chunk sent during a pause (see _read_audio).
MIN_FLUSH_SECONDS = 1.0

# How long a chunk waits for a result that may never come (a translation, or a transcript while
# later ones arrived) before it is released without it: far beyond the seed's latencies
# ("Transcription < 1.5 seconds", "Translation (per language) < 0.5 seconds"), and shorter than
# the seed's 30 s keepalive timeout, so a server that answers is never taken for a silent one.
RESULT_WAIT_SECONDS = 10.0

# The audio stream is trimmed behind the cursor at most once per this much media (and at a
# connection's first commit that moves the cursor), not at every commit (issue 22: an XTRIM per
# chunk). Keeping a few more seconds is harmless: nothing before the cursor is read again, a
# ``MINID ~`` trim only drops whole stream nodes (~100 entries) anyway, and the ingest caps the
# stream with ``MAXLEN`` whatever the relay does.
TRIM_EVERY_SECONDS = 5.0

_KIND = {ErrorClass.PERMANENT: Kind.PERMANENT, ErrorClass.CONFIG: Kind.CONFIG}


@dataclass(slots=True)
class _Batch:
    """Results released together (one message, or one timer), committed in one write."""

    received: float
    pend: list[Pending] = field(default_factory=list)
    state: dict[str, str] = field(default_factory=dict)
    progress: bool = False  # something was released: the cursor may move
    created: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class _Held:
    """A commit Redis has not confirmed yet (an outage), with what to count once it is."""

    commit: Commit
    kinds: tuple[str, ...]
    received: float


@dataclass(frozen=True, slots=True)
class Link:
    """What a connection uses of its event's session."""

    client: aioredis.Redis
    audio: AudioReader  # the process's shared reader of the audio streams
    event_id: str
    relay: RelaySettings
    kwik: KwikmotionSettings
    clock: Callable[[], float]
    started: Callable[[], Awaitable[None]] | None = None  # KWIKmotion accepted the session
    captioned: Callable[[TaskRecord], None] | None = None  # a task got captions (first or not)
    health: RedisHealth = field(default_factory=lambda: redis_health.get("relay"))


class Connection:
    """One KWIKmotion WebSocket connection of a session, from the persisted cursor on."""

    def __init__(
        self,
        link: Link,
        language: str,
        targets: list[str],
        outs: list[TaskOutput],
        writer: CaptionWriter,
        ledger: ChunkLedger,
        known: frozenset[str] = frozenset(),
        prime: str | None = None,
        primed: bool = False,
    ) -> None:
        """``prime``: the persisted ``keys.RELAY_PRIME`` (see ``ledger``); ``primed``: read the
        audio from it rather than from the cursor (the last session did not end cleanly)."""
        self.link = link
        self.relay = link.relay
        self.kwik_cfg = link.kwik
        self.outs = outs
        self.writer = writer
        self.ledger = ledger
        self.kwik = KwikSession(
            language,
            targets,
            start_timeout=self.kwik_cfg.start_timeout_seconds,
            end_timeout=self.kwik_cfg.end_timeout_seconds,
            result_wait=RESULT_WAIT_SECONDS,
        )
        # Tasks of the event the session knows of (served here, or ended): any other is a late order.
        self.known = known | {o.id for o in outs}
        # Words reported across chunk boundaries were seen before (the prime lags the cursor).
        self.boundary_words = prime is not None and prime != ledger.cursor and id_le(prime, ledger.cursor)
        self.start = prime if primed and self.boundary_words and prime is not None else ledger.cursor
        # A replay ends chunks where some task's results stop (see ``Chunker``), and a primed one
        # at the cursor (the chunks after it are those the last session built).
        breaks = {o.done for o in outs if o.done != ledger.cursor} | (
            {ledger.cursor} if self.start != ledger.cursor else set()
        )
        self.chunker = Chunker(self.relay.chunk_seconds, frozenset(breaks))
        self.time_base = ChunkTimeBase()
        self.media_end = 0.0  # media time of the end of the audio read so far
        self.eos = False
        self.eos_sent = False
        self.send_closed = False
        self.progressed = False
        self.last_rx = link.clock()
        self.recognition_started: float | None = None  # KWIKmotion accepted the session (usage)
        self.last_audio = link.clock()  # when the reader last got an audio entry
        self.quiet_since = link.clock()  # last chunk sent or answered (the idle close counts from it)
        self.draining: Outcome | None = None  # end once every sent chunk is answered, send no more
        self.room = asyncio.Event()  # the reader may hold one more chunk
        self.wake = asyncio.Event()  # a deadline may have moved earlier
        self.send_lock = asyncio.Lock()
        self.commit_lock = asyncio.Lock()
        self.logged: set[str] = set()  # what was logged once already (see _once)
        self.ws: Any = None
        self.result: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        # Chunks held in memory (queued + sent, not complete): bounded so a slow KWIKmotion
        # does not make us read the whole stream ahead.
        self.max_held = self.relay.max_unacked_chunks * 2 + 1
        self.read_pos = ledger.cursor  # the last audio entry read (a held tail may lie before it)
        # Commits held while Redis is unreachable, oldest first, committed by ``_flush``.
        self.backlog: deque[_Held] = deque()
        self.held = asyncio.Event()
        self.gap: CommitGap | None = None  # a commit found the stored state behind it
        self.trimmed: float | None = None  # media time of the cursor at the last audio trim asked

    @property
    def cursor(self) -> str:
        return self.ledger.cursor

    def session_elapsed(self, now: float | None = None) -> float:
        """Seconds this connection's KWIKmotion session has been open (0 before it started)."""
        if self.recognition_started is None:
            return 0.0
        return max(0.0, (self.link.clock() if now is None else now) - self.recognition_started)

    def _set(self, outcome: Outcome) -> None:
        if not self.result.done():
            self.result.set_result(outcome)

    async def run(self) -> Outcome:
        outcome = await self._run()
        if outcome.kind is Kind.GAP:
            # Every held commit follows the lost ones: they would be refused too. The session
            # restarts from the persisted state and computes them again.
            self.backlog.clear()
            assert self.gap is not None
            raise self.gap
        if outcome.kind is not Kind.FENCED:
            await self._drain_backlog()  # raises Fenced if the claim was lost meanwhile
        if outcome.kind is Kind.FENCED:
            raise Fenced(self.link.event_id)
        return outcome

    async def _run(self) -> Outcome:
        headers = {"Authorization": f"Bearer {self.kwik_cfg.token.get_secret_value()}"}
        await self._seed_time_base(keys.audio(self.link.event_id))
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
                    await ws.send(self.kwik.start(self.link.clock()))
                except WsClosed:
                    # Refused at once (seed: authentication errors come "immediately after
                    # connection"): the Error message is still to be read, below.
                    self.send_closed = True
                try:
                    async with asyncio.TaskGroup() as tg:
                        tasks = [
                            tg.create_task(self._guard(self._receive())),
                            tg.create_task(self._guard(self._read_audio())),
                            tg.create_task(self._guard(self._timers())),
                            tg.create_task(self._guard(self._flush())),
                        ]
                        outcome = await self.result
                        for t in tasks:
                            t.cancel()
                    if outcome.kind in (Kind.IDLE, Kind.RETARGET):
                        await ws.close(1000, outcome.cause)
                except asyncio.CancelledError:
                    # SIGTERM or a lost claim: say goodbye properly (1001 Going Away) instead of
                    # the 1011 websockets sends when its block exits with an exception.
                    await ws.close(1001, "relay going away")
                    raise
        except InvalidStatus as exc:
            status = exc.response.status_code
            metrics.ERRORS.labels(str(status) if status in (401, 403) else "other").inc()
            if status in (401, 403):
                return Outcome(Kind.CONFIG, "auth", str(status), f"HTTP {status} at the handshake")
            return Outcome(Kind.RETRY, "connect", str(status), f"HTTP {status} at the handshake")
        except (OSError, TimeoutError, InvalidHandshake, WsClosed) as exc:
            if self.result.done():
                return self.result.result()
            return Outcome(Kind.RETRY, "connect", "", type(exc).__name__)
        return outcome

    async def _guard(self, coro: Any) -> None:
        try:
            await coro
        except Fenced:
            self._set(Outcome(Kind.FENCED))
        except CommitGap as gap:
            self.gap = self.gap or gap
            self._set(Outcome(Kind.GAP))
        except RedisError as exc:
            if is_outage(exc):
                self.link.health.lost(exc)
            self._set(Outcome(Kind.RETRY, "redis", "", str(exc)))
        except WsClosed:
            self._closed()

    def _closed(self) -> None:
        code = self.ws.close_code if self.ws is not None and self.ws.close_code is not None else 1006
        reason = (self.ws.close_reason if self.ws is not None else "") or ""
        for ev in self.kwik.connection_closed(code, reason):
            self._on_terminal(ev)
        self._set(Outcome(Kind.RETRY, close_cause(code, reason), str(code), reason))

    # --- receiving -----------------------------------------------------------------------------
    async def _receive(self) -> None:
        async for message in self.ws:
            now = self.link.clock()
            self.last_rx = now
            if isinstance(message, bytes):
                log.warning("KWIKmotion sent a binary message: ignored")
                continue
            await self._handle(self.kwik.receive(message, now), now)
            if self.result.done():
                return
        self._closed()

    async def _handle(self, events: list[Any], now: float) -> None:
        """The session core's events, from a message or a timer, in order: consecutive results
        are built and committed together (with the cursor they move), anything else after them.
        One at a time (``commit_lock``): captions of a stream are written in chunk order."""
        async with self.commit_lock:
            batch = _Batch(now)
            for ev in events:
                if isinstance(ev, TranscriptResult | TranslationResult):
                    self._build(ev, batch)
                elif isinstance(ev, ResultsMissing):
                    self._missing(ev)
                    batch.progress = True
                elif isinstance(ev, TimeBaseDetected):
                    metrics.TIME_BASE.labels(ev.base).inc()
                    log.info(
                        "KWIKmotion times count from the %s's start (told by chunk %d's transcript)",
                        ev.base,
                        ev.chunk_index,
                    )
                elif isinstance(ev, ProtocolViolation) and not ev.fatal:
                    self._dropped(ev)
                else:
                    await self._commit(batch)
                    batch = _Batch(now)
                    await self._on_event(ev, now)
            await self._commit(batch)

    async def _on_event(self, ev: Any, now: float) -> None:
        if isinstance(ev, RecognitionStarted):
            log.info("KWIKmotion session started", extra={"kwik_session": ev.session_id})
            self.quiet_since = now
            self.recognition_started = now
            if self.link.started is not None:
                await self.link.started()
            await self._pump()
        elif isinstance(ev, AudioAdded):
            if ev.lag is not None:
                metrics.AUDIO_ADDED_LAG.observe(ev.lag)
            await self._pump()
        elif isinstance(ev, EndOfTranscript):
            self._set(Outcome(Kind.FINISHED))
        else:
            self._on_terminal(ev)

    def _once(self, key: str, level: int, msg: str, *args: Any) -> None:
        """Log ``msg`` once per KWIKmotion session for ``key`` (the metrics count every one)."""
        if key not in self.logged:
            self.logged.add(key)
            log.log(level, msg + " (logged once per KWIKmotion session; see the metric)", *args)

    def _dropped(self, ev: ProtocolViolation) -> None:
        if ev.label == "unknown_message":
            metrics.UNKNOWN_MESSAGES.inc()
            self._once("unknown_message", logging.INFO, "KWIKmotion: %s", ev.reason)
            return
        label = ev.label if ev.label in DROP_REASONS else "malformed"
        metrics.RESULTS_DROPPED.labels(label).inc()
        self._once(f"dropped:{label}", logging.WARNING, "KWIKmotion result dropped (%s): %s", label, ev.reason)

    def _missing(self, ev: ResultsMissing) -> None:
        for stream in ev.streams:
            result = "transcript" if stream == SOURCE else "translation"
            metrics.RESULTS_MISSING.labels(result, ev.reason).inc()
        if ev.empty or ev.reason == "omitted_empty":
            # An empty transcript's translations: released as empty ones, nothing is lost.
            self._once(
                f"missing_empty:{ev.reason}",
                logging.INFO,
                "KWIKmotion sent no translation for an empty transcript (chunk %d, %s): released as empty",
                ev.chunk_index,
                ev.reason,
            )
            return
        self._once(
            f"missing:{ev.reason}",
            logging.WARNING,
            "KWIKmotion results never came for chunk %d (%s, %s): released without them, their words are lost",
            ev.chunk_index,
            ", ".join(ev.streams),
            ev.reason,
        )

    def _build(self, ev: TranscriptResult | TranslationResult, batch: _Batch) -> None:
        """One released result → caption entries for the tasks that want it (not yet written)."""
        if isinstance(ev, TranscriptResult):
            if ev.rtt is not None:
                metrics.ROUND_TRIP.observe(ev.rtt)
            for name in ev.derived:
                metrics.FIELDS_DERIVED.labels(name).inc()
            if ev.derived:
                self._once("derived", logging.INFO, "KWIKmotion transcript without %s: derived", ", ".join(ev.derived))
            if ev.clamped:
                metrics.TIMES_CLAMPED.inc()
        batch.progress = True
        try:
            result = parse_result(ev.raw)
        except InvalidResult as exc:  # the core normalizes every result: a bug if it happens
            metrics.RESULTS_DROPPED.labels("malformed").inc()
            self._once("dropped:malformed", logging.WARNING, "invalid KWIKmotion result dropped: %s", exc.reason)
            return
        chunk = self.ledger.chunk(ev.chunk_index)
        if chunk is None:
            metrics.RESULTS_DROPPED.labels("unknown_chunk").inc()
            self._once("dropped:forgotten", logging.ERROR, "result for chunk %d, no longer held", ev.chunk_index)
            return
        offset = chunk.media_t0 - chunk.kwik_t0
        for i, out in enumerate(self.outs):
            if not out.builder.accepts(result) or id_le(chunk.last_id, out.done):
                continue  # not this task's language, or emitted before a reconnect/takeover
            built = out.builder.build(result, offset, self.time_base)
            batch.pend.extend(Pending(i, entry_fields(b, batch.created)) for b in built)
            if built:
                # For the console, committed with the captions (no write of its own).
                batch.state[keys.relay_captioned_field(out.id)] = repr(batch.created)
            if built and self.link.captioned is not None:
                self.link.captioned(out.record)
            out.done = chunk.last_id
            out.count(built)
            batch.state[keys.relay_task_field(out.id)] = out.dump()
            batch.state[keys.relay_usage_field(out.id)] = out.usage(self.session_elapsed(batch.received))

    async def _commit(self, batch: _Batch) -> None:
        """Write a batch's captions with the task positions and, if chunks [0, completed) now have
        every result, the cursor past their audio: one atomic step."""
        if not batch.progress:
            return
        trim = ""
        last = self.ledger.complete(self.kwik.completed)
        if last is not None:
            batch.state[keys.RELAY_CURSOR] = last.last_id
            # For the console's lag (audio received vs captioned), committed with the cursor.
            batch.state[keys.RELAY_COMMITTED_MEDIA] = repr(last.media_t1)
            batch.state[keys.RELAY_COMMITTED_AT] = repr(time.time())
            # A server that moves words across chunk boundaries: keep (and replay after a failure)
            # the chunk before the cursor's too; see ``ledger``.
            self.boundary_words = self.boundary_words or self.kwik.results.lead > 0
            prime = batch.state[keys.RELAY_PRIME] = self.ledger.prime if self.boundary_words else last.last_id
            if self.trimmed is None or last.media_t1 - self.trimmed >= TRIM_EVERY_SECONDS:
                trim, self.trimmed = prime, last.media_t1
            self.progressed = True
            self.time_base.prune(last.media_t0)
        if batch.pend or batch.state:
            log.debug("commit completed %s cursor %s", self.kwik.completed, trim)
            held = _Held(
                self.writer.prepare(batch.pend, batch.state, trim),
                tuple(p.fields["kind"] for p in batch.pend),
                batch.received,
            )
            # In order: behind a held commit, or held itself if Redis does not take it now.
            if self.backlog or not await self._apply(held.commit):
                self.backlog.append(held)
                self.held.set()
                return
            self._count(held)
        else:
            metrics.ADDED_LATENCY.observe(self.link.clock() - batch.received)
        await self._committed()

    def _count(self, held: _Held) -> None:
        metrics.ADDED_LATENCY.observe(self.link.clock() - held.received)
        for kind in held.kinds:
            metrics.CAPTIONS_WRITTEN.labels(kind).inc()

    async def _committed(self) -> None:
        """What follows a commit: the idle clock, a drain, the deadlines, room for the reader."""
        self.quiet_since = self.link.clock()
        self._drained()
        self.wake.set()  # the silent-peer deadline moves to the next unanswered chunk, or idle starts
        self.room.set()
        await self._pump()

    async def _apply(self, commit: Commit) -> bool:
        """Apply a commit under a deadline: True when Redis has it, False when Redis is
        unreachable (the commit is to be retried); ``Fenced`` and other errors propagate."""
        try:
            async with asyncio.timeout(COMMAND_SECONDS):
                await self.writer.apply(commit)
        except (Fenced, CommitGap):
            raise
        except Exception as exc:
            if not is_outage(exc):
                raise
            self.link.health.lost(exc)
            log.debug("caption commit held until redis is back (%d held): %r", len(self.backlog) + 1, exc)
            return False
        self.link.health.back()
        return True

    async def _flush(self) -> None:
        """Commit the held backlog, in order, as soon as Redis takes it."""
        retry = Retry()
        while not self.result.done():
            await self.held.wait()
            while self.backlog:
                head = self.backlog[0]
                if not await self._apply(head.commit):
                    await retry.wait()
                    continue
                retry.reset()
                self.backlog.popleft()
                self._count(head)
                if not self.backlog:
                    log.info("captions held during the redis outage committed")
            self.held.clear()
            await self._committed()

    async def _drain_backlog(self) -> None:
        """The connection is over: commit what is still held before the session goes on."""
        retry = Retry()
        while self.backlog:
            check_cancelled()
            if await self._apply(self.backlog[0].commit):
                self._count(self.backlog.popleft())
                retry.reset()
            else:
                await retry.wait()

    def _on_terminal(self, ev: Any) -> None:
        """An event that ends the connection: decide what the session does next."""
        if isinstance(ev, KwikError):
            code = str(ev.code) if ev.code is not None else "other"
            metrics.ERRORS.labels(code if code in ("4001", "4004", "1008", "1011", "401", "403") else "other").inc()
            if ev.code == INVALID_MODEL:
                self._set(Outcome(Kind.LANGUAGE, "language", code, ev.reason, refused_language(ev.reason)))
            self._set(Outcome(_KIND.get(ev.error_class, Kind.RETRY), error_cause(ev.code), code, ev.reason))
        elif isinstance(ev, ConnectionClosed):
            if ev.code in (1008, 1011, 4001, 4004):
                metrics.ERRORS.labels(str(ev.code)).inc()
            if ev.code == INVALID_MODEL:
                self._set(Outcome(Kind.LANGUAGE, "language", str(ev.code), ev.reason, refused_language(ev.reason)))
            kind = _KIND.get(ev.error_class, Kind.RETRY)
            self._set(Outcome(kind, close_cause(ev.code, ev.reason), str(ev.code), ev.reason))
        elif isinstance(ev, ProtocolViolation):
            self._set(Outcome(Kind.RETRY, "protocol", "", ev.reason))
        elif isinstance(ev, Timeout):
            self._set(Outcome(Kind.RETRY, "timeout", "", f"no answer in time ({ev.what})"))

    # --- sending -------------------------------------------------------------------------------
    def _held(self) -> int:
        return self.ledger.held(self.kwik.sent - self.kwik.completed)

    async def _read_audio(self) -> None:
        """Audio entries after the cursor (or the prime) → chunks; never skips, stops at the
        end-of-stream. The entries come from the process's shared reader (``reader``), which
        also rides through Redis outages: meanwhile no entry comes, as in a pause."""
        sub = self.link.audio.subscribe(self.link.event_id, self.start)
        try:
            await self._take_audio(sub)
        finally:
            sub.close()

    async def _take_audio(self, sub: Subscription) -> None:
        flush_after = self.relay.flush_after_seconds
        while not self.eos and not self.result.done():
            check_cancelled()
            # Bounded: no more audio while a commit is held (Redis is down: nothing to write it
            # to). Not taking it fills the subscription's queue, and the reader stops reading it.
            while self._held() >= self.max_held or self.backlog:
                self.room.clear()
                await self.room.wait()
            wait = 1.0
            if self.chunker.buffered_seconds >= MIN_FLUSH_SECONDS:
                # A pause keeps a partial chunk from filling up: send it once no audio came for
                # flush_after_seconds, so its words are captioned now, not when the media returns.
                # A shorter tail stays for the audio that follows it (or the end of stream): an
                # encoder restart cuts a word in two, and a chunk of a fraction of a second carries
                # too little of it for the speech engine, whose word-boundary handling buffers 1 s
                # (KWIKmotion seed, FAQ); sent whole with what follows, the word is recognised.
                left = self.last_audio + flush_after - self.link.clock()
                if left <= 0:
                    metrics.PARTIAL_FLUSHES.inc()
                    self.ledger.add(self.chunker.flush())
                    await self._pump()
                    continue
                wait = min(wait, left + 0.001)
            entries = await sub.get(wait)
            if entries:
                self.last_audio = self.link.clock()
            for pos, fields in entries:
                self.read_pos = pos
                try:
                    item = parse_audio(fields)
                except PayloadError as exc:
                    log.error("unreadable audio entry %s skipped: %s", pos, exc)
                    continue
                if isinstance(item, AudioChunk):
                    self.time_base.add(item)
                    self.media_end = max(self.media_end, item.media_time + item.duration)
                    self.ledger.add(self.chunker.add(pos, item))
                else:
                    self.media_end = max(self.media_end, item.media_time)
                    self.ledger.add(self.chunker.flush())
                    self.eos = True
                    break
            await self._pump()

    async def _seed_time_base(self, key: str) -> None:
        """Anchor pts/epoch at the cursor's entry (XTRIM MINID keeps it), for responses built
        before any new audio is read (e.g. the end-of-stream ones right after a takeover)."""
        if self.cursor != "0-0":
            client, cursor = self.link.client, self.cursor
            found = await until_done(self.link.health, lambda: client.xrange(key, cursor, cursor, count=1), "time base")
            for _id, fields in found:
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
            while (
                self.ledger.queue
                and self.kwik.can_send(max_unacked)
                and not self.result.done()
                and self.draining is None
            ):
                now = self.link.clock()
                self.quiet_since = now
                chunk = self.ledger.send_next(self.kwik.sent, now)
                frame = self.kwik.send_audio(chunk.pcm, now)
                self.wake.set()  # a result is awaited now: the silent-peer deadline starts
                await self.ws.send(frame)
                metrics.AUDIO_SENT.inc(chunk.duration)
                if self.ledger.delivered(chunk):
                    metrics.AUDIO_REPLAYED.inc(chunk.duration)
            if self.draining is not None:
                return
            if self.eos and not self.ledger.queue and self.kwik.state == "streaming" and not self.eos_sent:
                if self.kwik.sent == 0:
                    self._set(Outcome(Kind.FINISHED))  # everything was transcribed before
                else:
                    self.eos_sent = True
                    await self.ws.send(self.kwik.end_of_stream(self.link.clock()))
                    self.wake.set()  # the EndOfTranscript timeout starts

    # --- timers --------------------------------------------------------------------------------
    async def _timers(self) -> None:
        """Timeouts of the session core, a silent peer, and tasks cancelled mid-event: sleep until
        the earliest deadline, or until ``wake`` says one may have moved earlier."""
        clock = self.link.clock
        silent = self.kwik_cfg.ping_timeout_seconds
        check_every = self.relay.task_check_seconds
        idle_close = self.relay.idle_close_seconds
        next_check = clock() + check_every
        while not self.result.done():
            check_cancelled()
            now = clock()
            # Timeouts end the connection; results waited for too long are released without them.
            await self._handle(self.kwik.poll(now), now)
            waiting = self.kwik.state == "streaming" and self.kwik.completed < self.kwik.sent
            # A silent peer: nothing received since the oldest unanswered chunk went out (a long
            # pause with no message before it is not silence).
            silent_at = max(self.last_rx, self._oldest_unanswered()) + silent
            if waiting and now >= silent_at:
                self._set(Outcome(Kind.RETRY, "silent", "", f"no message from KWIKmotion for {silent:.0f}s"))
            idle = self._idle()
            if idle and now >= self.quiet_since + idle_close:
                self._set(Outcome(Kind.IDLE, "idle"))
            if now >= next_check:
                next_check = now + check_every
                try:
                    async with asyncio.timeout(COMMAND_SECONDS):
                        await self._check_tasks()
                except Exception as exc:
                    if not is_outage(exc):
                        raise
                    # Checked again at the next check; cancellations wait for Redis anyway.
                    self.link.health.lost(exc)
                    log.debug("task check skipped: redis unreachable (%r)", exc)
                self._drained()
            if self.result.done():
                return
            deadlines = [next_check]
            if (core := self.kwik.next_deadline()) is not None:
                deadlines.append(core)
            if waiting:
                deadlines.append(silent_at)
            if idle:
                deadlines.append(self.quiet_since + idle_close)
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, min(deadlines) - clock())):
                    await self.wake.wait()

    def _oldest_unanswered(self) -> float:
        chunk = self.ledger.chunk(self.kwik.completed)
        return chunk.sent_at if chunk is not None else 0.0

    def _idle(self) -> bool:
        """Nothing to send and nothing awaited: every chunk read was sent and answered."""
        return (
            self.kwik.state == "streaming"
            and not self.eos
            and self.draining is None
            and not self.ledger.queue
            and self.chunker.buffered_seconds < MIN_FLUSH_SECONDS  # a shorter tail waits for audio
            and self.kwik.completed == self.kwik.sent
            and not self.backlog  # held captions first: they are the session's, not idle time
        )

    def _drained(self) -> None:
        """While draining (sending stopped): end once every sent chunk is answered."""
        if self.draining is not None and self.kwik.completed == self.kwik.sent:
            self._set(self.draining)

    async def _check_tasks(self) -> None:
        """Cancelled tasks (no more captions; none left ends the connection) and tasks ordered
        since the connection started (drain, then reconnect with their languages)."""
        client, event_id = self.link.client, self.link.event_id
        async with client.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.event(event_id))
            pipe.smembers(keys.event_tasks(event_id))
            for out in self.outs:
                pipe.hget(keys.task(event_id, out.id), "cancelled")
            raw, members, *raw_flags = await pipe.execute()
        event = registry.EventRecord.parse(raw)
        flags = [flag in (b"1", "1") for flag in raw_flags]
        await self._check_joined({m.decode() if isinstance(m, bytes) else m for m in members} - self.known)
        live = 0
        for out, cancelled in zip(self.outs, flags, strict=True):
            if cancelled:
                if not out.record.cancelled:
                    out.record.cancelled = True
                    log.info("task cancelled mid-event: no more captions for it", extra={"task_id": out.id})
            else:
                live += 1
        if live == 0 or (event is not None and event.status == "cancelled"):
            self._set(Outcome(Kind.CANCELLED))

    async def _check_joined(self, unknown: set[str]) -> None:
        if not unknown or self.draining is not None or self.eos_sent:
            return  # nothing new, already reconnecting, or the event's audio is over
        client, event_id = self.link.client, self.link.event_id
        async with client.pipeline(transaction=False) as pipe:
            for task_id in sorted(unknown):
                pipe.hmget(keys.task(event_id, task_id), ["id", "cancelled"])
            rows = await pipe.execute()
        # A record not written yet, or cancelled already, is not served (yet).
        joined = [t for t, (tid, flag) in zip(sorted(unknown), rows, strict=True) if tid and flag not in (b"1", "1")]
        if joined:
            log.info("task ordered mid-event: reconnecting with its language", extra={"tasks": joined})
            self.draining = Outcome(Kind.RETARGET, "late_order", "", ",".join(joined))
