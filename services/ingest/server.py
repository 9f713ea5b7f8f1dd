"""The asyncio RTMP(S) server of the ingest (docs/design.md section 3): moves bytes between sockets and
``shared.rtmp.ServerConnection``, admits publishes, runs the per-connection timers, listens for
revoked tasks, and sweeps open media sessions for their end of stream.

Redis outages (issue 18) never cost a publisher its connection: every Redis call here treats an
outage error as "Redis is down" (``Link``), after which publishers buffer, revalidation and the
sweep wait, and a new publish waits for Redis up to the handshake timeout, then is refused with a
"temporarily unavailable, retry" status. A prober PINGs until Redis answers.

Hostile and careless peers (issue 19): connections are capped overall and, while they have no
accepted publish, per client address (``caps``); until its publish is accepted a connection is
held to the codec's small pre-publish limits and to the handshake deadline, its writes included
(a peer that does not read cannot keep it open); every connection is aborted when what it has
not read of ours passes ``max_write_buffer_bytes``; publishers are capped per task (``slots``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
import uuid
from dataclasses import dataclass

import redis.asyncio as aioredis
import redis.exceptions as rex
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from services.ingest import metrics, presence
from services.ingest.admission import Admission, Rejected, admit, check
from services.ingest.caps import ConnectionCaps, Refusal, Slot
from services.ingest.coordinator import Coordinator
from services.ingest.outage import OUTAGE_ERRORS, Health, Link
from services.ingest.publisher import Publisher
from services.ingest.readpause import ReadPause, coalesce_pause, wake_at
from services.ingest.slots import PublisherSlots
from services.ingest.sweepview import SweepView
from shared import journal, keys, operator, redis_health, registry, revocations
from shared.aio import TaskSet, check_cancelled
from shared.commands import PROCESSING, send_async
from shared.logs import bind
from shared.redis_client import POOL_WAIT_SECONDS, client_name, command_client
from shared.rtmp import (
    Connected,
    MediaMessage,
    ProtocolError,
    PublishRequested,
    ServerConnection,
    Unpublished,
)
from shared.rtmp.chunks import AUDIO, DATA_AMF0, DATA_AMF3, VIDEO, Limits, prepublish_limits
from shared.settings import IngestSettings, split_listen

log = logging.getLogger(__name__)

# What a publisher's connection is held to once its publish is accepted: the codec's defaults,
# with video and data messages (onMetaData) skipped in the chunk layer as they arrive, never
# copied nor parsed past their header: the ingest has no use for them (docs/design.md section
# 3), and a 3 Mbps A/V stream is ~95 % video by bytes (issue 22).
LIMITS = Limits(skip=frozenset((VIDEO, DATA_AMF0, DATA_AMF3)))

# One read takes what one recv of asyncio's transport got (it receives up to 256 KiB at once).
READ_SIZE = 256 << 10
# A read at least this large is a backlog (or a publisher far above real time): read on at once
# instead of pausing. It must stay above what a coalescing pause gathers from a real-time
# publisher (COALESCE_SECONDS of a 3 Mbps A/V stream is ~38 kB): with 32 kB here (64 kB reads),
# every other read of such a stream skipped its pause and the ingest read each of its
# messages as it came, ~24 reads a second instead of ~12 (issue 22).
BACKLOG_BYTES = 128 << 10
# A publisher silent this long is stalled or half-open: its writer lease is no longer
# refreshed, so a standby takes over INGEST_PRIMARY_TTL_SECONDS later (a real-time publisher
# sends dozens of messages a second; a 1 s hiccup alone never causes a takeover).
STALL_SECONDS = 1.0
VALIDATE_SECONDS = 5.0  # re-check key, task and window of a live publish (pub/sub is lossy)
# An open event with no publisher delivering for this long counts as paused (a metric only: a
# pause never ends anything, docs/design.md section 3).
PAUSED_AFTER_SECONDS = 5.0
# A Redis command unanswered this long means a frozen or unreachable Redis: the connection's
# loop must not wait longer than this for it (its publisher's bytes wait in the socket
# meanwhile). Redis answers in a millisecond; the ingest's loop lag stays well under a second.
REDIS_TIMEOUT_SECONDS = 2.0
PROBE_SECONDS = 0.5  # PING period while Redis is down
UNAVAILABLE = "Captioning is temporarily unavailable, retry in a few seconds"
TOO_MANY = "Too many publishers for this stream key"
# A closing connection's last statuses (a refusal, a stop) get this long to be read, then the
# connection is aborted: a peer that does not read must not hold it (and its buffer) open.
FLUSH_SECONDS = 2.0
# What a stopped publish is told (onStatus description), by its close cause.
STOPPED = {
    "operator": "Disconnected by the operator; publish again to resume",
    "ended": "The event's media has ended",
}


class _Closed(Exception):
    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


@dataclass(eq=False)
class _Live:
    """An accepted publish on one connection."""

    admission: Admission
    publisher: Publisher
    stream_id: int
    slot: str  # the publish's slot in the task's publisher cap (PublisherSlots)
    revoked: str = ""
    registered: bool = False  # the accepted publish was recorded (event seen, media session open)
    address: str = ""  # the publisher's host:port (the console shows it)
    announced: bool = False  # its record for the console was written (presence.py)


def ingest_client(redis_url: str) -> aioredis.Redis:
    """The ingest's command client: a bounded pool (hundreds of publishers write at once; a
    connection each at most, Redis takes 10k+) whose commands fail after REDIS_TIMEOUT_SECONDS
    instead of waiting for a frozen Redis, retried once at once on a broken connection (a pooled
    connection from before a Redis restart) and never on a timeout (a timed-out write may still
    land: the publisher settles that itself once Redis is back)."""
    return command_client(  # redis+sentinel:// too (shared/redis_client.py)
        redis_url,
        max_connections=512,
        wait=POOL_WAIT_SECONDS,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), 1, supported_errors=(rex.ConnectionError,)),
        client_name=client_name("ingest"),
    )


class IngestServer:
    def __init__(self, settings: IngestSettings, redis_url: str, health: Health | None = None) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.client = ingest_client(redis_url)
        self.link = Link(health or redis_health.get("ingest"))
        self.coord = Coordinator(
            self.client, chunk_ms=settings.chunk_ms, retention_seconds=settings.audio_retention_seconds
        )
        self.tasks = TaskSet("ingest")
        self.caps = ConnectionCaps(settings.max_connections, settings.max_pending_per_address)
        self.slots = PublisherSlots(self.client, settings.max_publishers_per_task)
        self._server: asyncio.base_events.Server | None = None
        self._live: dict[tuple[str, str], set[_Live]] = {}
        self._refusals_logged = journal.Throttle()  # one event-log entry a minute per event and reason
        self.port = 0
        self.sweep_seconds = min(1.0, settings.grace_seconds / 4)
        self.view = SweepView(self.client, self.coord, settings.window_margin_seconds)
        self._closing = False
        # Events an operator ended (status "ended", reachlive admin end-media) → when this
        # replica's sweep first saw it: their drain counts from then, as a window's from its close.
        self._ending: dict[str, float] = {}

    def _ssl(self) -> ssl.SSLContext | None:
        if not self.settings.tls_cert:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.settings.tls_cert, self.settings.tls_key or None)
        return ctx

    async def start(self) -> int:
        host, port = split_listen(self.settings.listen)
        self._server = await asyncio.start_server(
            self._on_connection,
            host,
            port,
            ssl=self._ssl(),
            ssl_handshake_timeout=self.settings.handshake_timeout_seconds if self.settings.tls_cert else None,
            reuse_port=self.settings.reuse_port and hasattr(socket, "SO_REUSEPORT"),
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self.tasks.spawn(self._revocations(), "revocations")
        self.tasks.spawn(self._sweeper(), "sweeper")
        self.tasks.spawn(self._probe(), "redis-probe")
        log.info("ingest listening", extra={"port": self.port, "tls": bool(self.settings.tls_cert)})
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self._closing = True
        await self.tasks.close(timeout=10)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        await self.client.aclose()

    # --- one connection ---------------------------------------------------------------------
    def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        host = peer[0] if isinstance(peer, tuple) and peer else ""
        slot = self.caps.open(host, time.monotonic())
        if isinstance(slot, Refusal):
            metrics.CONNECTIONS_REFUSED.labels(slot.cap).inc()
            if slot.log:
                log.warning("%s", slot.log)
            writer.transport.abort()  # nothing was read or written: no buffer to hold
            return
        self.tasks.spawn(self._connection(reader, writer, slot), f"conn:{peer}")

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, slot: Slot) -> None:
        metrics.CONNECTIONS.inc()
        s = self.settings
        conn = ServerConnection(
            limits=LIMITS,
            prepublish_limits=prepublish_limits(s.prepublish_max_message_bytes, s.prepublish_max_messages),
            chunk_size=s.rtmp_chunk_size,
            epoch_ms=int(time.monotonic() * 1000),
        )
        # Drain (stop reading the peer) from a quarter of the write limit on; abort past it.
        writer.transport.set_write_buffer_limits(high=s.max_write_buffer_bytes // 4)
        box: list[_Live | None] = [None]  # the connection's accepted publish, for the cleanup
        paused = ReadPause(writer.transport, asyncio.get_running_loop())
        cause = "eof"
        try:
            await self._serve(conn, reader, writer, box, paused, slot)
        except _Closed as exc:
            cause = exc.cause
        except ProtocolError as exc:
            cause = "protocol"
            metrics.PROTOCOL_ERRORS.labels(exc.kind).inc()
            log.info("closing a connection that broke RTMP: %s", exc)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            cause = "reset"
        except asyncio.CancelledError:
            cause = "shutdown"
            raise
        finally:
            paused.cancel()
            metrics.CLOSED.labels(cause).inc()
            metrics.CONNECTIONS.dec()
            try:
                live = box[0]
                if live is not None:
                    try:
                        await asyncio.shield(self._close_publisher(live, cause))
                    except Exception:
                        log.exception("flushing a closed publisher failed")
                await self._finish(conn, writer, cause)
            finally:
                slot.release()

    async def _finish(self, conn: ServerConnection, writer: asyncio.StreamWriter, cause: str) -> None:
        """Close the connection. Its last statuses (a refusal, a stop) get FLUSH_SECONDS to be
        read, then it is aborted: a close waits for the buffer to drain, forever if the peer never
        reads. A peer that did not read in time (the handshake deadline included) is aborted now."""
        transport = writer.transport
        if cause in ("write_buffer", "write_timeout"):
            transport.abort()
            return
        with contextlib.suppress(Exception):
            data = conn.data_to_send()
            if data:
                writer.write(data)
        pending = transport.get_write_buffer_size()
        if pending and (cause == "handshake_timeout" or pending > self.settings.max_write_buffer_bytes):
            transport.abort()
            return
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), FLUSH_SECONDS)
        except Exception:
            transport.abort()

    async def _send(self, conn: ServerConnection, writer: asyncio.StreamWriter, until: float, cause: str) -> None:
        """Write what the connection has to send. What the peer has not read is bounded: past
        ``max_write_buffer_bytes`` the connection is aborted, and above the transport's high-water
        mark we stop reading until it reads, at most until loop time ``until`` (then ``cause``)."""
        data = conn.data_to_send()
        if not data:
            return
        writer.write(data)
        if writer.transport.get_write_buffer_size() > self.settings.max_write_buffer_bytes:
            raise _Closed("write_buffer")
        try:
            async with asyncio.timeout_at(until):
                await writer.drain()
        except TimeoutError:
            raise _Closed(cause) from None

    async def _serve(
        self,
        conn: ServerConnection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        box: list[_Live | None],
        paused: ReadPause,
        slot: Slot,
    ) -> None:
        s = self.settings
        loop = asyncio.get_running_loop()
        deadline = loop.time() + s.handshake_timeout_seconds  # handshake + connect + publish

        def write_deadline() -> tuple[float, str]:
            # Before a publish is accepted, writes are bounded by the handshake deadline too.
            if live is None:
                return deadline, "handshake_timeout"
            # A peer that does not read what we send is as dead as one that sends nothing.
            return loop.time() + s.idle_timeout_seconds, "write_timeout"

        last_data = loop.time()
        next_beat = loop.time() + s.heartbeat_seconds
        next_check = loop.time() + VALIDATE_SECONDS
        live: _Live | None = None
        while True:
            now = loop.time()
            if live is None:
                if now >= deadline:
                    raise _Closed("handshake_timeout")
                wait = deadline - now
            else:
                if now - last_data >= s.idle_timeout_seconds:
                    raise _Closed("idle")
                wait = min(next_beat - now, s.idle_timeout_seconds - (now - last_data))
            data = b""
            try:
                async with asyncio.timeout(max(wait, 0.01)):
                    data = await reader.read(READ_SIZE)
                if not data:
                    raise _Closed("eof")
            except TimeoutError:
                pass
            now = loop.time()
            if data:
                last_data = now
                metrics.RECEIVED_BYTES.inc(len(data))
                epoch = time.time()
                batch = conn.receive_data(data)
                while batch:
                    for ev in batch:
                        live = box[0] = await self._on_event(conn, ev, live, epoch)
                        if live is not None:
                            slot.published()  # no longer counted against its address
                            live.address = live.address or presence.address(writer.get_extra_info("peername"))
                    # parsing paused at a publish until we decided; go on with what is buffered
                    batch = conn.receive_data(b"") if not conn.closed else []
                await self._send(conn, writer, *write_deadline())
                if conn.closed:
                    raise _Closed("rejected" if live is None else "stopped")
                pause = coalesce_pause(live.publisher.seconds_to_chunk()) if live is not None else 0.0
                # A large read means a backlog (or a fast publisher): read on at once.
                if pause and len(data) < BACKLOG_BYTES and not paused.active:
                    t = loop.time()
                    at = wake_at(t, pause)
                    if at is not None:
                        paused.until(at)
            if live is not None:
                if live.revoked:
                    self._stop(conn, live, STOPPED.get(live.revoked, "The caption order was cancelled"))
                    await self._send(conn, writer, *write_deadline())
                    raise _Closed(live.revoked)
                if now >= next_beat:
                    next_beat = now + s.heartbeat_seconds
                    if not live.registered:
                        await self._register(live)
                    if not live.announced:
                        await self._announce(live)
                    await live.publisher.heartbeat(receiving=now - last_data < STALL_SECONDS)
                if now >= next_check:
                    next_check = now + VALIDATE_SECONDS
                    await self._revalidate(live, receiving=now - last_data < STALL_SECONDS)

    def _stop(self, conn: ServerConnection, live: _Live, description: str) -> None:
        conn.stop_publish(live.stream_id, description, code="NetStream.Publish.BadName")

    async def _revalidate(self, live: _Live, *, receiving: bool) -> None:
        # While Redis is down nothing can be checked, and a publish is never closed for that.
        if not self.link.up:
            return
        ev = live.admission.event
        try:
            key_exists, event, task = await registry.read_publish(
                self.client, live.admission.key_hash, ev.id, live.admission.task.id
            )
            if receiving:  # a publisher that stopped sending lets its slot lapse (slots.py)
                await self.slots.renew(ev.id, live.admission.task.id, live.slot)
        except OUTAGE_ERRORS as exc:
            self.link.lost(exc)
            return
        await self._announce(live)
        if not key_exists or event is None or task is None:
            live.revoked = "revoked"
            return
        try:
            check(event, task, time.time(), self.settings.window_margin_seconds)
        except Rejected as exc:
            live.revoked = {"too_late": "window", "too_early": "window", "ended": "ended"}.get(exc.reason, "revoked")
        if live.publisher.ended:
            live.revoked = "ended"

    async def _on_event(self, conn: ServerConnection, ev: object, live: _Live | None, epoch: float) -> _Live | None:
        if isinstance(ev, MediaMessage):
            if live is not None and ev.stream_id == live.stream_id and ev.type_id == AUDIO:
                await live.publisher.on_audio(ev.payload, ev.timestamp, epoch)
            return live  # video: skipped without decoding (docs/design.md section 3)
        if isinstance(ev, PublishRequested):
            if live is not None:
                self._reject(conn, ev.stream_id, Rejected("busy", "One publish per connection"))
                return live
            return await self._admit(conn, ev)
        if isinstance(ev, Unpublished):
            if live is not None and ev.stream_id == live.stream_id:
                await self._close_publisher(live)
                return None
            return live
        if isinstance(ev, Connected):
            log.debug("connect app=%s", ev.app)
        return live

    def _reject(
        self, conn: ServerConnection, stream_id: int, exc: Rejected, code: str = "NetStream.Publish.BadName"
    ) -> None:
        metrics.REJECTED.labels(exc.reason).inc()
        log.info("publish rejected: %s", exc.reason)
        conn.reject_publish(stream_id, exc.description, code)

    async def _admit(self, conn: ServerConnection, ev: PublishRequested) -> _Live | None:
        # Redis down: the decision waits for it, up to the handshake timeout (a restart or a
        # failover of a few seconds costs the encoder nothing), then the publish is refused with
        # a status saying to retry (encoders retry a failed publish; a bare close reads as a
        # network fault). A publish is never accepted without the registry's word.
        loop = asyncio.get_running_loop()
        hold_until = loop.time() + self.settings.handshake_timeout_seconds
        slot = uuid.uuid4().hex
        while True:
            if not await self.link.wait_up(hold_until - loop.time()):
                self._reject(conn, ev.stream_id, Rejected("unavailable", UNAVAILABLE), "NetStream.Publish.Failed")
                return None
            try:
                adm = await admit(
                    self.client,
                    expected_app=self.settings.app,
                    app=conn.app or "",
                    name=ev.name,
                    now=time.time(),
                    margin=self.settings.window_margin_seconds,
                )
                # Last: a refused publish must not hold a slot.
                if not await self.slots.take(adm.event.id, adm.task.id, slot):
                    raise Rejected("too_many_publishers", TOO_MANY, adm.event.id)
                break
            except Rejected as exc:
                self._reject(conn, ev.stream_id, exc)
                if exc.event_id:  # in the background: the refusal goes out now
                    self.tasks.spawn(self._count_refusal(exc.event_id, exc.reason, exc.description), "refused")
                return None
            except OUTAGE_ERRORS as exc:
                self.link.lost(exc)
        bind(event_id=adm.event.id, task_id=adm.task.id)
        publisher = Publisher(
            self.coord,
            adm.event.id,
            adm.task.id,
            chunk_ms=self.settings.chunk_ms,
            standby_seconds=self.settings.standby_buffer_seconds,
            outage_buffer_seconds=self.settings.outage_buffer_seconds,
            link=self.link,
        )
        live = _Live(adm, publisher, ev.stream_id, slot)
        self._live.setdefault((adm.event.id, adm.task.id), set()).add(live)
        conn.accept_publish(ev.stream_id)
        await self._register(live)
        if live.registered:
            # The writer lease at once: a standby of a paused event continues the timeline now.
            try:
                await publisher.try_acquire()
            except OUTAGE_ERRORS as exc:
                self.link.lost(exc)  # the heartbeat tries again once Redis is back
        log.info("publish accepted as %s", publisher.role)
        # In the background, once the caller has set the publisher's address (no await between).
        self.tasks.spawn(self._journal_accepted(live), "journal")
        return live

    async def _journal_accepted(self, live: _Live) -> None:
        adm = live.admission
        await journal.arecord(
            self.client,
            adm.event.id,
            "publish_accepted",
            task=adm.task.id,
            role=live.publisher.role,
            replica=presence.REPLICA,
            address=live.address,
        )

    async def _register(self, live: _Live) -> None:
        """Record an accepted publish: the event has a publisher, its media session is open.
        Redis went away after the admission: retried at the connection's beats until done."""
        if not self.link.up:
            return
        event_id = live.admission.event.id
        try:
            await self.coord.mark_seen(event_id)
            if await self.coord.open_session(event_id):
                log.info("media session opened")
                # In the background: the Celery send waits for a thread and the broker (the first
                # one sets up the sender), and the connection must read its audio meanwhile.
                self.tasks.spawn(self._ask_processing(event_id), f"processing:{event_id}")
        except OUTAGE_ERRORS as exc:
            self.link.lost(exc)
            return
        live.registered = True

    async def _announce(self, live: _Live) -> None:
        """Tell the console about this publisher (presence.py); at its first beat, then at each
        revalidation. Redis down: skipped (its record lapses; the next one writes it again)."""
        if not self.link.up:
            return
        behind = time.time() - live.publisher.last_audio if live.publisher.last_audio else 0.0
        ev, task = live.admission.event.id, live.admission.task.id
        try:
            await presence.announce(self.client, ev, live.publisher.id, task, live.address, behind)
        except OUTAGE_ERRORS as exc:
            self.link.lost(exc)
            return
        live.announced = True

    async def _count_refusal(self, event_id: str, reason: str, description: str = "") -> None:
        if not self.link.up:
            return
        try:
            await presence.refused(self.client, event_id, reason)
        except OUTAGE_ERRORS as exc:
            self.link.lost(exc)
            return
        repeats = self._refusals_logged.take((event_id, reason))
        if repeats is not None:
            fields = {"repeated": repeats} if repeats else {}
            await journal.arecord(
                self.client,
                event_id,
                "publish_refused",
                reason=reason,
                description=description,
                replica=presence.REPLICA,
                **fields,
            )

    async def _close_publisher(self, live: _Live, cause: str = "unpublished") -> None:
        """The publish ended; its audio still held during a Redis outage is written when Redis
        is back (in the background, for at most the outage buffer's length)."""
        self._forget(live)
        adm = live.admission
        role = live.publisher.role
        self.tasks.spawn(
            journal.arecord(
                self.client, adm.event.id, "publisher_gone", task=adm.task.id, role=role, cause=cause,
                replica=presence.REPLICA, address=live.address,
            ),
            "journal",
        )  # fmt: skip
        if self.link.up:  # while Redis is down the slot lapses by itself (and the record)
            try:
                await self.slots.release(live.admission.event.id, live.admission.task.id, live.slot)
                if live.announced:
                    await presence.retract(self.client, live.admission.event.id, live.publisher.id)
            except OUTAGE_ERRORS as exc:
                self.link.lost(exc)
        if await live.publisher.close():
            wait = self.settings.outage_buffer_seconds
            self.tasks.spawn(live.publisher.finish(wait), f"finish:{live.admission.event.id}")

    async def _ask_processing(self, event_id: str) -> None:
        try:
            await send_async(self.redis_url, PROCESSING, event_id)
        except Exception:
            # The session is open either way; the poller's reconcile also sees it live.
            log.exception("could not ask the poller to move the tasks to PROCESSING")

    def _forget(self, live: _Live) -> None:
        ref = (live.admission.event.id, live.admission.task.id)
        group = self._live.get(ref)
        if group is not None:
            group.discard(live)
            if not group:
                del self._live[ref]

    # --- background -------------------------------------------------------------------------
    async def _revocations(self) -> None:
        """Close publishers of a task the poller revoked ("<event>:<task>" on REVOKED_CHANNEL)."""

        def revoke(event_id: str, task_id: str) -> None:
            for live in list(self._live.get((event_id, task_id), ())):
                live.revoked = "revoked"

        async def on_lost(exc: BaseException) -> None:
            # Messages published meanwhile are lost; the publishers' revalidation catches up.
            self.link.lost(exc)
            await asyncio.sleep(PROBE_SECONDS)
            await self.link.wait_up()

        # The _closing flag, not only cancellation, ends it (shared.revocations).
        await revocations.listen(
            self.client,
            revoke,
            on_lost,
            on_operator=self._operator,
            errors=(*OUTAGE_ERRORS, TimeoutError),
            running=lambda: not self._closing,
        )

    def _operator(self, req: operator.Request) -> None:
        """reachlive admin (shared/operator.py): ``disconnect`` drops the event's publishers on this
        replica (or the one named): the event pauses, as when a publisher goes away, and any valid
        publish resumes it. ``revoke``: the task's publishers close as at any revocation (the
        revocation message follows this one); here it is logged and counted as the operator's."""
        cause = "operator" if req.action == operator.DISCONNECT else "revoked"
        dropped = 0
        for (event_id, task_id), group in list(self._live.items()):
            if event_id != req.event_id or (req.task_id and task_id != req.task_id):
                continue
            for live in group:
                if not req.publisher or live.publisher.id == req.publisher:
                    live.revoked = live.revoked or cause
                    dropped += 1
        if dropped:
            metrics.OPERATOR_ACTIONS.labels(req.action).inc()
            ids = {"event_id": req.event_id, "task_id": req.task_id, "publisher": req.publisher}
            extra = {k: v for k, v in ids.items() if v}
            log.warning("operator %s: closing %d publisher(s)", req.action, dropped, extra=extra)

    async def _sweeper(self) -> None:
        """Write each open session's end of stream when it is due (docs/design.md section 3)."""
        # The _closing flag, not only cancellation, ends the loop: redis-py can swallow a
        # cancellation that lands inside one of its calls.
        while not self._closing:
            await asyncio.sleep(self.sweep_seconds)
            # Redis down: nothing can be decided (docs/design.md section 3, issue 18); a failed read
            # is never taken as an event gone.
            if not self.link.up:
                continue
            try:
                await self.sweep_once()
            except asyncio.CancelledError:
                raise
            except OUTAGE_ERRORS as exc:
                self.link.lost(exc)
            except Exception:
                log.exception("end-of-stream sweep failed")

    async def _probe(self) -> None:
        """While Redis is down, PING it until it answers, then say it is back."""
        while not self._closing:
            await self.link.wait_down()
            check_cancelled()
            try:
                await self.client.ping()
            except OUTAGE_ERRORS:
                await asyncio.sleep(PROBE_SECONDS)
                continue
            self.link.back()

    async def sweep_once(self) -> None:
        """End the media of events that are over; count the paused ones.

        A publisher that goes away only pauses its event (docs/design.md section 3): any valid publish
        within the window resumes it, on any replica, the timeline continuing. The end of stream
        is written only when the window (with the margin) has closed and ``grace_seconds`` of
        drain have passed (publishers of the event are stopped at the window's close, so their
        last audio lands first), when every task is cancelled, or when the event is gone. An
        operator's end (status "ended", reachlive admin end-media) is a window closing now."""
        now = time.time()
        active = [
            raw.decode() if isinstance(raw, bytes) else raw for raw in await self.client.smembers(keys.INGEST_ACTIVE)
        ]
        if self._ending:
            self._ending = {e: t for e, t in self._ending.items() if e in active}
        if not active:
            metrics.EVENTS_PAUSED.set(0)
            return
        # Records re-read only when old or when they may say the event is over (sweepview.py).
        known = await self.view.read(active, now)
        paused = 0
        for event_id, (event, seen) in zip(active, known, strict=True):
            if event is None:
                reason = "gone"
            elif event.status == "cancelled":
                reason = "cancelled"
            else:
                closes = event.window(self.settings.window_margin_seconds)[1]
                ended = event.status == "ended"  # by the operator (reachlive admin end-media)
                if ended:
                    closes = min(closes, self._ending.setdefault(event_id, now))
                if now <= closes:
                    paused += now - seen > PAUSED_AFTER_SECONDS
                    continue
                self._stop_event(event_id, "ended" if ended else "window")
                # Drain: the stopped publishers flush their last audio; after a Redis outage,
                # from Redis's return (with their backlogs, which they write at their next beat).
                drain_from = max(closes, self.link.back_at + self.settings.heartbeat_seconds)
                if now <= drain_from + self.settings.grace_seconds:
                    continue
                reason = "operator" if ended else "window_ended"
            if await self.coord.end_of_stream(event_id, reason):
                log.info("end of stream written", extra={"event_id": event_id, "reason": reason})
                if reason == "operator":
                    metrics.OPERATOR_ACTIONS.labels(operator.END_MEDIA).inc()
                    log.warning("operator end-media: the event's media ended", extra={"event_id": event_id})
                await journal.arecord(self.client, event_id, "end_of_stream", reason=reason, replica=presence.REPLICA)
                self._stop_event(event_id, "window" if reason == "window_ended" else "ended")
        metrics.EVENTS_PAUSED.set(paused)

    def _stop_event(self, event_id: str, cause: str) -> None:
        """Close this replica's publishers of ``event_id`` (at their next read or beat)."""
        for (eid, _tid), group in list(self._live.items()):
            if eid == event_id:
                for live in group:
                    live.revoked = live.revoked or cause

    async def serve(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.close()
