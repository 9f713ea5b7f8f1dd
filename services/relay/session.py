"""One live event's speech session: audio stream → KWIKmotion → captions (DESIGN section 4).

``EventSession.run`` owns the event while this replica holds its claim. It loops over KWIKmotion
connections (``connection.Connection``, each from the persisted cursor, its chunks kept by a
``ledger.ChunkLedger``) and acts on how each ended (``outcome.Kind``) until the audio's
end-of-stream has been transcribed, a permanent error fails the tasks, or every task is cancelled:

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
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from services.relay import metrics
from services.relay.backoff import Backoff, slow
from services.relay.claim import Claimed, Claimer
from services.relay.connection import Connection, Link
from services.relay.ledger import ChunkLedger
from services.relay.outcome import Kind
from services.relay.output import CaptionWriter, Fenced, Pending, caption_maxlen, claim_epoch
from services.relay.outputs import entry_fields, make_output, targets_of
from shared import commands, keys, registry
from shared.logs import log_context
from shared.settings import KwikmotionSettings, RelaySettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Config:
    relay: RelaySettings
    kwik: KwikmotionSettings
    caption_types: str
    redis_url: str


def _str(raw: dict[Any, Any]) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v) for k, v in raw.items()
    }


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
        self.link = Link(client, self.reader, self.event_id, config.relay, config.kwik, clock)

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
            if state.get(keys.RELAY_FINISHED) == "1":
                await self._finalize(state.get(keys.RELAY_OUTCOME, "ready"), state.get(keys.RELAY_REASON, ""))
                return
            tasks = [t for t in await registry.event_task_records(self.client, self.event_id) if not t.cancelled]
            if not tasks or event.status == "cancelled":
                log.info("every task of the event is cancelled: session closed")
                metrics.SESSIONS_FINISHED.labels("cancelled").inc()
                await self._close_out()
                return
            cursor = state.get(keys.RELAY_CURSOR, "0-0")
            outs = [
                make_output(self.event_id, t, self.config.caption_types, state.get(keys.relay_task_field(t.id)), cursor)
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
            ledger = ChunkLedger(cursor, self.sent_high)
            conn = Connection(self.link, event.source_language, targets_of(tasks), outs, writer, ledger)
            try:
                outcome = await conn.run()
            finally:
                self.sent_high = ledger.sent_high
            if conn.progressed:
                backoff.reset()
            if outcome.kind is Kind.FINISHED:
                await self._end(conn, "ready", "")
                return
            if outcome.kind is Kind.PERMANENT:
                log.error("KWIKmotion refused the session for good: %s", outcome.reason, extra={"code": outcome.code})
                await self._end(conn, "error", f"KWIKmotion error {outcome.code}: {outcome.reason}".strip())
                return
            if outcome.kind is Kind.CANCELLED:
                continue  # re-read the registry at the top of the loop
            if outcome.kind is Kind.CONFIG:
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
        state = {keys.RELAY_FINISHED: "1", keys.RELAY_OUTCOME: outcome, keys.RELAY_REASON: reason}
        for i, out in enumerate(conn.outs):
            for built in out.builder.end_of_stream(conn.media_end, conn.time_base):
                pend.append(Pending(i, entry_fields(built, now)))
            state[keys.relay_task_field(out.id)] = out.dump()
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
