"""The asyncio RTMP(S) server of the ingest (DESIGN section 3): moves bytes between sockets and
``shared.rtmp.ServerConnection``, admits publishes, runs the per-connection timers, listens for
revoked tasks, and sweeps open media sessions for their end of stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from dataclasses import dataclass

from services.ingest import metrics
from services.ingest.admission import Admission, Rejected, admit, check
from services.ingest.coordinator import Coordinator
from services.ingest.publisher import Publisher
from services.ingest.readpause import ReadPause, coalesce_pause, wake_at
from shared import keys, registry
from shared.aio import TaskSet
from shared.commands import PROCESSING, send_async
from shared.logs import bind
from shared.redis_client import command_client
from shared.rtmp import (
    Connected,
    MediaMessage,
    ProtocolError,
    PublishRequested,
    ServerConnection,
    Unpublished,
)
from shared.rtmp.chunks import AUDIO
from shared.settings import IngestSettings, split_listen

log = logging.getLogger(__name__)

READ_SIZE = 65536
# A publisher silent this long is stalled or half-open: its writer lease is no longer
# refreshed, so a standby takes over INGEST_PRIMARY_TTL_SECONDS later (a real-time publisher
# sends dozens of messages a second; a 1 s hiccup alone never causes a takeover).
STALL_SECONDS = 1.0
VALIDATE_SECONDS = 5.0  # re-check key, task and window of a live publish (pub/sub is lossy)
# An open event with no publisher delivering for this long counts as paused (a metric only: a
# pause never ends anything, DESIGN section 3).
PAUSED_AFTER_SECONDS = 5.0


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
    revoked: str = ""


class IngestServer:
    def __init__(self, settings: IngestSettings, redis_url: str) -> None:
        self.settings = settings
        self.redis_url = redis_url
        # Hundreds of publishers write at once; a connection each at most (Redis takes 10k+).
        self.client = command_client(redis_url, max_connections=512)
        self.coord = Coordinator(
            self.client, chunk_ms=settings.chunk_ms, retention_seconds=settings.audio_retention_seconds
        )
        self.tasks = TaskSet("ingest")
        self._server: asyncio.base_events.Server | None = None
        self._live: dict[tuple[str, str], set[_Live]] = {}
        self.port = 0
        self.sweep_seconds = min(1.0, settings.grace_seconds / 4)
        self._closing = False

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
        self.tasks.spawn(self._connection(reader, writer), f"conn:{peer}")

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        metrics.CONNECTIONS.inc()
        conn = ServerConnection(
            limits=None, chunk_size=self.settings.rtmp_chunk_size, epoch_ms=int(time.monotonic() * 1000)
        )
        box: list[_Live | None] = [None]  # the connection's accepted publish, for the cleanup
        paused = ReadPause(writer.transport, asyncio.get_running_loop())
        cause = "eof"
        try:
            await self._serve(conn, reader, writer, box, paused)
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
            live = box[0]
            if live is not None:
                self._forget(live)
                try:
                    await asyncio.shield(live.publisher.close())
                except Exception:
                    log.exception("flushing a closed publisher failed")
            with contextlib.suppress(Exception):
                await self._send(conn, writer)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 2)

    async def _send(self, conn: ServerConnection, writer: asyncio.StreamWriter) -> None:
        data = conn.data_to_send()
        if data:
            writer.write(data)
            # A peer that does not read what we send is as dead as one that sends nothing.
            await asyncio.wait_for(writer.drain(), self.settings.idle_timeout_seconds)

    async def _serve(
        self,
        conn: ServerConnection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        box: list[_Live | None],
        paused: ReadPause,
    ) -> None:
        s = self.settings
        loop = asyncio.get_running_loop()
        deadline = loop.time() + s.handshake_timeout_seconds  # handshake + connect + publish
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
                    # parsing paused at a publish until we decided; go on with what is buffered
                    batch = conn.receive_data(b"") if not conn.closed else []
                await self._send(conn, writer)
                if conn.closed:
                    raise _Closed("rejected" if live is None else "stopped")
                pause = coalesce_pause(live.publisher.seconds_to_chunk()) if live is not None else 0.0
                # A large read means a backlog (or a fast publisher): read on at once.
                if pause and len(data) < READ_SIZE // 2 and not paused.active:
                    t = loop.time()
                    at = wake_at(t, pause)
                    if at is not None:
                        paused.until(at)
            if live is not None:
                if live.revoked:
                    self._stop(conn, live, "The caption order was cancelled")
                    await self._send(conn, writer)
                    raise _Closed(live.revoked)
                if now >= next_beat:
                    next_beat = now + s.heartbeat_seconds
                    await live.publisher.heartbeat(receiving=now - last_data < STALL_SECONDS)
                if now >= next_check:
                    next_check = now + VALIDATE_SECONDS
                    await self._revalidate(live)

    def _stop(self, conn: ServerConnection, live: _Live, description: str) -> None:
        conn.stop_publish(live.stream_id, description, code="NetStream.Publish.BadName")

    async def _revalidate(self, live: _Live) -> None:
        ev = live.admission.event
        key_exists, event, task = await registry.read_publish(
            self.client, live.admission.key_hash, ev.id, live.admission.task.id
        )
        if not key_exists or event is None or task is None:
            live.revoked = "revoked"
            return
        try:
            check(event, task, time.time(), self.settings.window_margin_seconds)
        except Rejected as exc:
            live.revoked = "window" if exc.reason in ("too_late", "too_early") else "revoked"
        if live.publisher.ended:
            live.revoked = "ended"

    async def _on_event(self, conn: ServerConnection, ev: object, live: _Live | None, epoch: float) -> _Live | None:
        if isinstance(ev, MediaMessage):
            if live is not None and ev.stream_id == live.stream_id and ev.type_id == AUDIO:
                await live.publisher.on_audio(ev.payload, ev.timestamp, epoch)
            return live  # video: skipped without decoding (DESIGN section 3)
        if isinstance(ev, PublishRequested):
            if live is not None:
                self._reject(conn, ev.stream_id, Rejected("busy", "One publish per connection"))
                return live
            return await self._admit(conn, ev)
        if isinstance(ev, Unpublished):
            if live is not None and ev.stream_id == live.stream_id:
                self._forget(live)
                await live.publisher.close()
                return None
            return live
        if isinstance(ev, Connected):
            log.debug("connect app=%s", ev.app)
        return live

    def _reject(self, conn: ServerConnection, stream_id: int, exc: Rejected) -> None:
        metrics.REJECTED.labels(exc.reason).inc()
        log.info("publish rejected: %s", exc.reason)
        conn.reject_publish(stream_id, exc.description)

    async def _admit(self, conn: ServerConnection, ev: PublishRequested) -> _Live | None:
        try:
            adm = await admit(
                self.client,
                expected_app=self.settings.app,
                app=conn.app or "",
                name=ev.name,
                now=time.time(),
                margin=self.settings.window_margin_seconds,
            )
        except Rejected as exc:
            self._reject(conn, ev.stream_id, exc)
            return None
        bind(event_id=adm.event.id, task_id=adm.task.id)
        publisher = Publisher(
            self.coord,
            adm.event.id,
            adm.task.id,
            chunk_ms=self.settings.chunk_ms,
            standby_seconds=self.settings.standby_buffer_seconds,
        )
        live = _Live(adm, publisher, ev.stream_id)
        self._live.setdefault((adm.event.id, adm.task.id), set()).add(live)
        conn.accept_publish(ev.stream_id)
        await self.coord.mark_seen(adm.event.id)
        # The writer lease at once: a standby of a paused event continues the timeline now.
        await publisher.try_acquire()
        if await self.coord.open_session(adm.event.id):
            log.info("media session opened")
            # In the background: the Celery send waits for a thread and the broker (the first one
            # sets up the sender), and the connection must read its audio meanwhile.
            self.tasks.spawn(self._ask_processing(adm.event.id), f"processing:{adm.event.id}")
        log.info("publish accepted as %s", publisher.role)
        return live

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
        # A polling loop with our own flag, not pubsub.listen(): redis-py's listen() can swallow
        # a task cancellation while it waits, which would hang shutdown.
        while not self._closing:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(keys.REVOKED_CHANNEL)
                while not self._closing:
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is None or msg.get("type") != "message":
                        continue
                    data = msg["data"].decode() if isinstance(msg["data"], bytes) else str(msg["data"])
                    event_id, _, task_id = data.partition(":")
                    for live in list(self._live.get((event_id, task_id), ())):
                        live.revoked = "revoked"
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("revocation listener failed; resubscribing")
                await asyncio.sleep(1)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def _sweeper(self) -> None:
        """Write each open session's end of stream when it is due (DESIGN section 3)."""
        # The _closing flag, not only cancellation, ends the loop: redis-py can swallow a
        # cancellation that lands inside one of its calls.
        while not self._closing:
            await asyncio.sleep(self.sweep_seconds)
            try:
                await self.sweep_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("end-of-stream sweep failed")

    async def sweep_once(self) -> None:
        """End the media of events that are over; count the paused ones.

        A publisher that goes away only pauses its event (DESIGN section 3): any valid publish
        within the window resumes it, on any replica, the timeline continuing. The end of stream
        is written only when the window (with the margin) has closed and ``grace_seconds`` of
        drain have passed (publishers of the event are stopped at the window's close, so their
        last audio lands first), when every task is cancelled, or when the event is gone."""
        now = time.time()
        active = [
            raw.decode() if isinstance(raw, bytes) else raw for raw in await self.client.smembers(keys.INGEST_ACTIVE)
        ]
        if not active:
            metrics.EVENTS_PAUSED.set(0)
            return
        # One round trip for every event record, one for every event's last publisher time, not
        # one per event (the sweep runs every second over every open session).
        records = await registry.read_events(self.client, active)
        alive = await self.coord.last_alive(active)
        paused = 0
        for event_id, event, seen in zip(active, records, alive, strict=True):
            if event is None:
                reason = "gone"
            elif event.status == "cancelled":
                reason = "cancelled"
            else:
                closes = event.window(self.settings.window_margin_seconds)[1]
                if now <= closes:
                    paused += now - seen > PAUSED_AFTER_SECONDS
                    continue
                self._stop_event(event_id, "window")
                if now <= closes + self.settings.grace_seconds:
                    continue  # drain: the stopped publishers flush their last audio
                reason = "window_ended"
            if await self.coord.end_of_stream(event_id, reason):
                log.info("end of stream written", extra={"event_id": event_id, "reason": reason})
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
