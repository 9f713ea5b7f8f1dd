"""One live event's speech session: audio stream → KWIKmotion → captions (docs/design.md section 4).

``EventSession.run`` owns the event while this replica holds its claim. It loops over KWIKmotion
connections (``connection.Connection``, each from the persisted cursor, its chunks kept by a
``ledger.ChunkLedger``) and acts on how each ended (``outcome.Kind``) until the audio's
end-of-stream has been transcribed, the tasks fail, or every task is cancelled:

- retryable failures (a drop, 1011, 1008 at capacity, a silent peer, a timeout) reconnect with
  capped exponential backoff + jitter; the new connection replays the audio after the persisted
  cursor (audio not yet transcribed), and maps the new KWIKmotion session's times back to media
  time chunk by chunk, so captions continue the event's timeline; when the server reports words
  across chunk boundaries, from the chunk before the cursor (``keys.RELAY_PRIME``, see
  ``ledger``), unless the last session ended cleanly (idle, late order);
- a media pause (``Kind.IDLE``): no KWIKmotion session until audio appears after the cursor, then
  a new one from there (not a failure: no backoff, no reconnect counted);
- a task ordered mid-event (``Kind.RETARGET``): reconnect at once with the new targets; the first
  captions of a task the registry has SCHEDULED ask the poller for PROCESSING, once;
- refusals (``Kind.CONFIG``: 401/403/authentication_error; ``Kind.LANGUAGE`` naming the source
  language): an alert-level log and the ``SESSIONS_REFUSED`` gauge at once, a retry every
  ``auth_retry_seconds``, and past ``refusal_deadline_seconds`` from the first refusal (persisted
  in the relay state, field ``keys.RELAY_REFUSED_SINCE``, cleared when a session starts) the
  end-of-stream responses and tasks → ERROR naming KWIKmotion's reason;
- 4004 naming a translation target ends only that language's tasks (marked
  ``keys.relay_ended_field``), then reconnects without it;
- 4001 invalid_message is permanent: end-of-stream responses, tasks → ERROR with the reason.

Nothing is kept only in memory: every caption write persists, atomically, what was emitted
(``writer.CaptionWriter``), so after a failure the state is simply re-read from Redis.

Redis failovers (issue 18): a commit that finds the stored state behind it (``output.CommitGap``:
the new master lacks commits the old one acknowledged) restarts the session from the persisted
cursor at once; the lost commits' captions are computed again (counted, one warning).

Redis outages (issue 18) end nothing: every Redis call of the session has a deadline and is
retried until Redis is back (``outage.until_done``; the connection holds its commits meanwhile,
see ``connection``); the process's ``RedisHealth`` logs one line lost / one back. Commands for
the poller (FINALIZE, PROCESSING) are retried with backoff until the broker (the same Redis)
takes them (``commands.deliver``): the session keeps its claim until its FINALIZE commands are
out, so none is lost, and each task's is sent once by this replica.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from services.relay import metrics
from services.relay.backoff import Backoff, slow
from services.relay.claim import Claimed, Claimer
from services.relay.connection import Connection, Link
from services.relay.ledger import ChunkLedger
from services.relay.outage import Retry, until_done
from services.relay.outcome import Kind, Outcome
from services.relay.outputs import entry_fields, is_translation, make_output, targets_of
from services.relay.reader import AudioReader
from services.relay.writer import (
    CaptionWriter,
    CommitGap,
    CommitNumbers,
    Fenced,
    Pending,
    caption_maxlen,
    claim_epoch,
)
from shared import commands, journal, keys, redis_health, registry
from shared.aio import TaskSet
from shared.kaltura.models import SCHEDULED
from shared.logs import log_context
from shared.redis_client import text_map
from shared.redis_health import RedisHealth, is_outage
from shared.registry import TaskRecord
from shared.settings import CommonSettings, KwikmotionSettings, RelaySettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Config:
    relay: RelaySettings
    kwik: KwikmotionSettings
    caption_types: str
    redis_url: str
    # REACHLIVE_RETENTION_DAYS in seconds: the captions streams and the relay state (the per-task
    # positions that keep a re-claimed session from writing them again, the usage counters) are
    # kept this long after the event's end.
    retention_seconds: int = field(default_factory=lambda: CommonSettings().retention_seconds)


class EventSession:
    def __init__(
        self,
        client: aioredis.Redis,
        claimer: Claimer,
        config: Config,
        claimed: Claimed,
        audio: AudioReader,
        clock: Any = time.monotonic,
        health: RedisHealth | None = None,
    ) -> None:
        assert claimed.event_id is not None
        self.client = client
        self.audio = audio  # the process's shared reader of the audio streams
        self.claimer = claimer
        self.config = config
        self.entry_id = claimed.entry_id
        self.event_id = claimed.event_id
        self.clock = clock
        self.state_key = keys.relay_state(self.event_id)
        self.epoch = 0
        self.sent_high = "0-0"  # highest audio id sent by this replica (replay accounting)
        self.refused = False  # counted in the SESSIONS_REFUSED gauge
        self.processing_asked: set[str] = set()  # tasks whose PROCESSING command was sent
        self.finalized: set[str] = set()  # tasks whose FINALIZE command was sent
        self.commits = CommitNumbers()  # this claim's caption commit numbers (writer.CaptionWriter)
        self.failing = False  # a non-outage failure was logged with its traceback (once)
        self.opened = False  # a KWIKmotion session of this claim is open (for the event's history)
        self.health = health or redis_health.get("relay")
        self.tasks = TaskSet(f"session:{self.event_id}")
        self.link = Link(
            client,
            audio,
            self.event_id,
            config.relay,
            config.kwik,
            clock,
            started=self._started,
            captioned=self._captioned,
            health=self.health,
        )

    # --- the session -------------------------------------------------------------------------
    async def run(self) -> None:
        with log_context(event_id=self.event_id):
            backoff = Backoff(self.config.relay.backoff_initial_seconds, self.config.relay.backoff_max_seconds)
            outage = Retry()
            try:
                while True:
                    try:
                        await self._run()
                        return
                    except Fenced:
                        metrics.FENCED.inc()
                        log.warning("another relay owns the session now: stopped")
                        await self._journal_closed(Outcome(Kind.FENCED, "fenced", "", "another relay owns the session"))
                        return
                    except CommitGap as gap:
                        # Not an error of ours: asynchronous replication lost what the old master
                        # acknowledged. The persisted state is consistent (one atomic commit at a
                        # time), only older: resume from it at once.
                        metrics.COMMIT_GAPS.inc()
                        await self._journal_closed(Outcome(Kind.GAP, "commit_gap"))
                        log.warning(
                            "caption commit refused: redis lost earlier commits (a failover to a replica "
                            "that lagged; commit %d not stored): restarting from the persisted cursor",
                            gap.after,
                        )
                        continue
                    except Exception as exc:
                        # Keep the claim (heartbeats go on) and retry; all progress is in Redis, so
                        # the retry resumes where the last commit left off. Redis unreachable: the
                        # process's one "redis lost" line says it, retries are quick (resume within
                        # a second of its return). Anything else: one traceback, then debug lines.
                        if is_outage(exc):
                            self.health.lost(exc)
                            log.debug("session paused: redis unreachable (%r)", exc)
                            await outage.wait()
                            continue
                        delay = backoff.next()
                        await self._journal_closed(Outcome(Kind.RETRY, "error", "", type(exc).__name__))
                        if self.failing:
                            log.debug("session failed again: retrying in %.1fs", delay, exc_info=True)
                        else:
                            self.failing = True
                            log.exception("session failed: retrying in %.1fs", delay)
                        await asyncio.sleep(delay)
            finally:
                self._set_refused(False)
                await self.tasks.close(timeout=5)

    async def _run(self) -> None:
        client, event_id = self.client, self.event_id
        if not self.epoch:
            # Repeated after a lost reply: harmless (a higher epoch fences the same earlier owners).
            consumer = self.claimer.consumer
            self.epoch = await self._redis(lambda: claim_epoch(client, event_id, consumer), "claim epoch")
            await self._restarted()
        cfg = self.config.relay
        backoff = Backoff(cfg.backoff_initial_seconds, cfg.backoff_max_seconds)
        clean = False  # the last KWIKmotion session ended with every result in (idle, late order)
        while True:
            state = text_map(await self._redis(lambda: client.hgetall(self.state_key), "relay state"))
            # A registry read that fails is an outage (retried), never "event gone".
            event = await self._redis(lambda: registry.read_event(client, event_id), "event record")
            if event is None:
                log.error("session for an unknown event: dropping it")
                await self._redis(lambda: self.claimer.ack(self.entry_id), "ack")
                return
            if state.get(keys.RELAY_FINISHED) == "1":
                await self._finalize(state.get(keys.RELAY_OUTCOME, "ready"), state.get(keys.RELAY_REASON, ""))
                return
            records = await self._redis(lambda: registry.event_task_records(client, event_id), "task records")
            ended = {t.id for t in records if keys.relay_ended_field(t.id) in state}
            tasks = [t for t in records if not t.cancelled and t.id not in ended]
            if not tasks or event.status == "cancelled":
                log.info("every task of the event is cancelled: session closed")
                metrics.SESSIONS_FINISHED.labels("cancelled").inc()
                await self._close_out()
                return
            # The first commit of this connection follows what is stored (see output.CommitNumbers).
            self.commits.resync(state.get(keys.RELAY_COMMIT), self.epoch)
            cursor = state.get(keys.RELAY_CURSOR, "0-0")
            outs = [
                make_output(
                    self.event_id,
                    t,
                    self.config.caption_types,
                    state.get(keys.relay_task_field(t.id)),
                    cursor,
                    state.get(keys.relay_usage_field(t.id)),
                )
                for t in tasks
            ]
            expire_at = int(max(event.end + event.post_end, time.time()) + self.config.retention_seconds)
            writer = CaptionWriter(
                self.client,
                self.event_id,
                [t.id for t in tasks],
                self.epoch,
                caption_maxlen(event.start - event.pre_start, event.end + event.post_end),
                expire_at,
                self.commits,
            )
            ledger = ChunkLedger(cursor, self.sent_high)
            targets = targets_of(tasks)
            known = frozenset(ended | {t.id for t in records if t.cancelled})
            prime = state.get(keys.RELAY_PRIME)
            conn = Connection(
                self.link, event.source_language, targets, outs, writer, ledger, known, prime, primed=not clean
            )
            try:
                outcome = await conn.run()
            finally:
                self.sent_high = ledger.sent_high
            await self._journal_closed(outcome)
            if conn.progressed:
                backoff.reset()
            clean = outcome.kind in (Kind.IDLE, Kind.RETARGET)
            if outcome.kind is Kind.FINISHED:
                await self._end(conn, "ready", "")
                return
            if outcome.kind is Kind.PERMANENT:
                log.error("KWIKmotion refused the session for good: %s", outcome.reason, extra={"code": outcome.code})
                await self._journal("speech_refused", code=outcome.code, reason=outcome.reason, tasks_fail="now")
                await self._end(conn, "error", f"KWIKmotion error {outcome.code}: {outcome.reason}".strip())
                return
            if outcome.kind is Kind.CANCELLED:
                continue  # re-read the registry at the top of the loop
            if outcome.kind is Kind.IDLE:
                metrics.IDLE_CLOSES.inc()
                log.info("media paused: KWIKmotion session closed until the audio returns")
                # After what was read, not the cursor: a sub-second tail read but held back
                # (MIN_FLUSH_SECONDS) is no new audio; the next connection re-reads it.
                if await self._await_audio(conn.read_pos, [o.id for o in outs]):
                    metrics.IDLE_REOPENS.inc()
                    log.info("audio is back: reopening the KWIKmotion session")
                continue
            if outcome.kind is Kind.RETARGET:
                metrics.LATE_ORDERS.inc()
                await self._journal("late_order_joined", tasks=outcome.reason)
                continue  # the new task is read at the top of the loop; resume from the cursor
            refused = outcome.language
            if outcome.kind is Kind.LANGUAGE and refused in targets and refused != event.source_language:
                await self._end_target(conn, outcome)
                continue
            if outcome.kind in (Kind.CONFIG, Kind.LANGUAGE):
                if await self._refused(conn, outcome):
                    return
                delay = slow(cfg.auth_retry_seconds)
            else:
                metrics.RECONNECTS.labels(outcome.cause or "other").inc()
                delay = backoff.next()
                self._retrying(outcome.cause or "other")
                log.warning(
                    "KWIKmotion session ended (%s %s %s): reconnecting in %.2fs",
                    outcome.cause,
                    outcome.code,
                    outcome.reason,
                    delay,
                )
            await asyncio.sleep(delay)

    async def _journal(self, kind: str, **fields: str | int | float) -> None:
        """An entry in the event's history (shared/journal.py): never raises, waits at most its
        deadline (a Redis outage costs the session that much per entry, a handful per event)."""
        await journal.arecord(self.client, self.event_id, kind, **fields, replica=self.claimer.consumer)

    async def _journal_closed(self, outcome: Outcome) -> None:
        """The KWIKmotion session this claim opened ended, and why."""
        if self.opened:
            self.opened = False
            cause = outcome.cause or outcome.kind.value
            await self._journal("session_closed", cause=cause, code=outcome.code, reason=outcome.reason)

    async def _restarted(self) -> None:
        """This claim is the takeover an operator asked for (reachlive admin restart-session marks
        ``keys.RELAY_RESTART`` and hands the entry over): logged and counted by whoever clears it."""
        client, key = self.client, self.state_key
        if await self._redis(lambda: client.hdel(key, keys.RELAY_RESTART), "restart mark"):
            metrics.OPERATOR_ACTIONS.labels("restart-session").inc()
            log.warning(
                "operator restart-session: session taken over, resuming from the cursor",
                extra={"replica": self.claimer.consumer},
            )

    async def _redis(self, call: Any, what: str, seconds: float | None = None) -> Any:
        """A Redis call of the session: under a deadline, retried until Redis is back."""
        if seconds is None:
            return await until_done(self.health, call, what)
        return await until_done(self.health, call, what, seconds)

    # --- pauses, late orders, refusals --------------------------------------------------------
    async def _await_audio(self, after: str, task_ids: list[str]) -> bool:
        """With the KWIKmotion session closed for a pause: wait for audio after ``after`` (True),
        checking every ``task_check_seconds`` that some task is still live (False: re-read the registry)."""
        client, event_id = self.client, self.event_id
        sub = self.audio.subscribe(event_id, after)
        try:
            while True:
                # A read error (not an outage: the shared reader rides those out) is retried by
                # the session loop, as a failed read of its own was.
                if await sub.get(self.config.relay.task_check_seconds):
                    return True
                event, flags = await self._redis(
                    lambda: registry.read_cancellation(client, event_id, task_ids), "cancellations"
                )
                if event is None or event.status == "cancelled" or all(flags):
                    return False
        finally:
            sub.close()

    async def _started(self) -> None:
        """KWIKmotion accepted a session: the refusal clock (if any) stops (cleared in the
        background: Redis may be down, and the connection must not wait for it)."""
        self._set_refused(False)
        self.failing = False
        client, key = self.client, self.state_key
        clear = (keys.RELAY_REFUSED_SINCE, keys.RELAY_RETRYING)  # the retry mark is the console's
        self.tasks.spawn(self._redis(lambda: client.hdel(key, *clear), "refusal clock"), "refusal")
        self.opened = True
        self.tasks.spawn(self._journal("session_opened"), "journal")  # the same: never wait here

    def _retrying(self, cause: str) -> None:
        """For the console: the session retries since the first failure after it last started
        (HSETNX keeps that first one; ``_started`` clears it). In the background: Redis may be down."""
        client, key, mark = self.client, self.state_key, f"{time.time():.3f} {cause}"
        self.tasks.spawn(self._redis(lambda: client.hsetnx(key, keys.RELAY_RETRYING, mark), "retry mark"), "retrying")

    def _set_refused(self, refused: bool) -> None:
        if refused != self.refused:
            self.refused = refused
            metrics.SESSIONS_REFUSED.inc() if refused else metrics.SESSIONS_REFUSED.dec()

    async def _refused(self, conn: Connection, outcome: Outcome) -> bool:
        """KWIKmotion refuses the session (401/403, authentication_error, 4004 for the source
        language): alert now, retry slowly; past the deadline (counted from the first refusal,
        kept in Redis for any replica) end the event's tasks with KWIKmotion's reason. True when
        the session ended."""
        auth = outcome.kind is Kind.CONFIG
        if auth:
            metrics.AUTH_FAILURES.inc()
        metrics.RECONNECTS.labels("auth" if auth else "language").inc()
        self._set_refused(True)
        now = time.time()

        async def clock() -> list[Any]:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.hsetnx(self.state_key, keys.RELAY_REFUSED_SINCE, repr(now))
                pipe.hget(self.state_key, keys.RELAY_REFUSED_SINCE)
                return await pipe.execute()

        _new, since_raw = await self._redis(clock, "refusal clock")
        since = float(since_raw) if since_raw else now
        deadline = self.config.relay.refusal_deadline_seconds
        what = f"{outcome.code} {outcome.reason}".strip()
        # An alert, not a retry storm: the credentials or the language need an operator.
        log.critical(
            "KWIKmotion refused the session (%s): %s; retrying for %.0fs more",
            "authentication failed, check REACHLIVE_KWIKMOTION_TOKEN" if auth else "unsupported source language",
            what,
            max(0.0, since + deadline - now),
            extra={"code": outcome.code, "alert": "kwikmotion_auth" if auth else "kwikmotion_language"},
        )
        await self._journal(
            "speech_refused", code=outcome.code, reason=outcome.reason, tasks_fail_in=max(0.0, since + deadline - now)
        )
        if now - since < deadline:
            return False
        log.error("KWIKmotion refused the session past the deadline: tasks fail", extra={"code": outcome.code})
        reason = f"the speech service (KWIKmotion) refused the session for {now - since:.0f} s: {what}"
        await self._end(conn, "error", reason)
        return True

    async def _end_target(self, conn: Connection, outcome: Outcome) -> None:
        """4004 for a translation target: end only that language's tasks (end-of-stream
        responses, ERROR with KWIKmotion's reason); the session reconnects without it."""
        metrics.TARGETS_REFUSED.inc()
        what = f"{outcome.code} {outcome.reason}".strip()
        reason = f"the speech service (KWIKmotion) cannot translate into {outcome.language}: {what}"
        now = time.time()
        pend: list[Pending] = []
        state: dict[str, str] = {}
        gone = []
        for i, out in enumerate(conn.outs):
            if is_translation(out.record) and out.record.language == outcome.language:
                for built in out.builder.end_of_stream(conn.media_end, conn.time_base):
                    pend.append(Pending(i, entry_fields(built, now)))
                state[keys.relay_task_field(out.id)] = out.dump()
                state[keys.relay_usage_field(out.id)] = out.usage(conn.session_elapsed())
                state[keys.relay_ended_field(out.id)] = reason
                gone.append(out.id)
        log.error("KWIKmotion refused a translation target: its tasks fail", extra={"tasks": gone, "code": what})
        await self._journal("target_refused", language=outcome.language, tasks=",".join(gone), reason=what)
        await self._commit(conn, pend, state)
        for task_id in gone:
            await self._send(commands.FINALIZE, task_id, "error", reason)

    def _captioned(self, task: TaskRecord) -> None:
        """A task got captions: if the registry had it SCHEDULED (ordered after the media
        started), ask the poller for PROCESSING, once per task."""
        if task.status != SCHEDULED or task.id in self.processing_asked:
            return
        self.processing_asked.add(task.id)
        self.tasks.spawn(self._ask_processing(task.id), f"processing:{task.id}")

    async def _ask_processing(self, task_id: str) -> None:
        client, event_id = self.client, self.event_id
        current = await self._redis(lambda: registry.read_task(client, event_id, task_id), "task record")
        if current is None or current.status != SCHEDULED:
            return  # the ingest's command at the media start already moved it
        with log_context(task_id=task_id):
            await self._send(commands.PROCESSING, self.event_id)
            log.info("first captions of a task ordered mid-event: PROCESSING asked")

    async def _send(self, name: str, *args: object) -> None:
        """A command for the poller, retried in the background of this session until the broker
        takes it (a Redis outage delays it, never loses it)."""
        await commands.deliver(self.config.redis_url, name, *args, health=self.health)

    async def _commit(self, conn: Connection, pend: list[Pending], state: dict[str, str]) -> None:
        """A commit retried until Redis takes it (numbered once: applied once)."""
        commit = conn.writer.prepare(pend, state)
        await self._redis(lambda: conn.writer.apply(commit), "caption commit")

    # --- the end -------------------------------------------------------------------------------
    async def _end(self, conn: Connection, outcome: str, reason: str) -> None:
        """Write every task's end-of-stream responses with the ``finished`` mark, then finalize."""
        now = time.time()
        pend: list[Pending] = []
        state = {keys.RELAY_FINISHED: "1", keys.RELAY_OUTCOME: outcome, keys.RELAY_REASON: reason}
        for i, out in enumerate(conn.outs):
            for built in out.builder.end_of_stream(conn.media_end, conn.time_base):
                pend.append(Pending(i, entry_fields(built, now)))
            state[keys.relay_task_field(out.id)] = out.dump()
            state[keys.relay_usage_field(out.id)] = out.usage(conn.session_elapsed())
        await self._commit(conn, pend, state)
        for p in pend:
            metrics.CAPTIONS_WRITTEN.labels(p.fields["kind"]).inc()
        await self._finalize(outcome, reason)

    async def _finalize(self, outcome: str, reason: str) -> None:
        """Ask the poller to close each (not cancelled, not already ended) task, then ack."""
        client, event_id = self.client, self.event_id
        state = text_map(await self._redis(lambda: client.hgetall(self.state_key), "relay state"))
        ended = {k.removeprefix(keys.RELAY_ENDED_PREFIX) for k in state if k.startswith(keys.RELAY_ENDED_PREFIX)}
        for task in await self._redis(lambda: registry.event_task_records(client, event_id), "task records"):
            if not task.cancelled and task.id not in ended and task.id not in self.finalized:
                with log_context(task_id=task.id):
                    await self._send(commands.FINALIZE, task.id, outcome, reason)
                    self.finalized.add(task.id)
                    log.info("task finalized: %s", outcome)
        metrics.SESSIONS_FINISHED.labels(outcome).inc()
        await self._close_out()

    async def _close_out(self) -> None:
        async def expire() -> None:
            pipe = self.client.pipeline(transaction=False)
            pipe.expire(keys.audio(self.event_id), keys.AUDIO_RETENTION_AFTER_END_SECONDS)
            pipe.expire(self.state_key, self.config.retention_seconds)
            await pipe.execute()

        await self._redis(expire, "expiry")
        await self._redis(lambda: self.claimer.ack(self.entry_id), "ack")


def session_runner(
    client: aioredis.Redis,
    claimer: Claimer,
    config: Config,
    audio: AudioReader,
    health: RedisHealth | None = None,
) -> Any:
    """The ``Relay``'s runner: one ``EventSession`` per claimed entry, all reading their audio
    through ``audio``."""

    async def run(claimed: Claimed) -> None:
        if claimed.event_id is None:
            await until_done(health or redis_health.get("relay"), lambda: claimer.ack(claimed.entry_id), "ack")
            return
        await EventSession(client, claimer, config, claimed, audio, health=health).run()

    return run
