"""The asyncio driver of one caption connection (docs/design.md section 5).

Authenticate → subscribe to the task's feed → catch up from the delivered cursor with XRANGE →
deliver live entries from the shared reader, pinging after frames so that pongs move the cursor.
The decisions live in ``delivery.Delivery`` (sans-I/O); this module moves bytes and keeps time.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable
from typing import Protocol, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

from services.gateway import auth, metrics
from services.gateway.delivery import (
    GOING_AWAY,
    NORMAL,
    POLICY,
    REASON_DRAIN,
    REASON_EOS,
    REASON_REDIS_DOWN,
    REASON_SLOW,
    REASON_UNAVAILABLE,
    TRY_AGAIN,
    UNAUTHORIZED,
    Close,
    Delivery,
    Item,
    StreamId,
    parse_types,
)
from services.gateway.fanout import CaptionHub, Subscription, to_item
from services.gateway.lineage import Lineage
from services.gateway.wsadapter import Wire
from shared import keys, redis_health
from shared.logs import log_context
from shared.settings import GatewaySettings

log = logging.getLogger(__name__)
T = TypeVar("T")

CATCH_UP_PAGE = 200
# A connection's own Redis reads (token, cursor, catch-up pages) give up after this and retry
# (open connections) or refuse (new ones): a frozen Redis would hold them forever.
REDIS_DEADLINE_SECONDS = 5.0
CATCH_UP_BACKOFF_MAX_SECONDS = 2.0
MESSAGE_TOO_BIG = 1009
# The direct (synchronous) write path is taken only while the socket's write buffer is below
# this; above it, frames queue and the connection's task awaits the drain (backpressure).
DIRECT_WRITE_LIMIT = 2**15


class Host(Protocol):
    """What a connection uses of its gateway (``server.Gateway``); named here so that the server
    imports the connection and not the other way round."""

    redis: aioredis.Redis
    settings: GatewaySettings
    caption_types: str
    hub: CaptionHub
    limiter: auth.FailureLimiter
    task_connections: auth.TaskConnections
    health: redis_health.RedisHealth
    draining: bool

    def accepting(self) -> bool: ...


class Phase(enum.Enum):
    """Where a connection is in its life; the value labels ``reachlive_gateway_connections``."""

    AUTHENTICATING = "authenticating"
    CATCHING_UP = "catching_up"  # reading the task's stream from the cursor with XRANGE
    LIVE = "live"  # caught up: fed by the shared reader (direct writes allowed)
    CLOSING = "closing"


class Refused(Exception):
    """Authentication failed: close with this code/reason, count it, send nothing else."""

    def __init__(self, reason_label: str, close: Close, count_failure: bool = True) -> None:
        super().__init__(close.reason)
        self.label = reason_label
        self.close = close
        self.count_failure = count_failure


class Interrupted(Exception):
    """A blocked send was cancelled because the connection must close (slow, revoked, drain)."""


class Connection:
    """One client connection; ``run`` returns when it is closed.

    Besides ``phase``, a few independent facts steer it (they are not phases: each can hold in
    more than one): ``gone`` (the TCP connection is lost), ``refuse`` (the inbound side asked for
    a close), ``_sending``/``_busy`` (the task is inside a write / a batch of writes: a direct
    write now would reorder frames), ``_interrupted`` (a blocked send was cancelled, so what
    reached the socket is unknown) and ``_ack_scheduled`` (one ping is due after the batch)."""

    def __init__(self, gateway: Host, ws: ServerConnection) -> None:
        self.gw = gateway
        self.ws = ws
        self.wire = Wire(ws)
        self.loop = asyncio.get_running_loop()
        self.phase: Phase | None = None
        self.sub: Subscription | None = None
        self.delivery: Delivery | None = None
        self.lineage: Lineage | None = None  # this connection's cursor record (lineage.py)
        self.ref: auth.TaskRef | None = None
        self.refuse: Close | None = None  # set by the inbound reader (flood)
        self.gone = False  # the client went away (inbound reader ended)
        self._task: asyncio.Task[None] | None = None
        self._sending = False
        self._busy = False  # the task is writing a batch: direct writes would reorder frames
        self._wake_at = 0.0  # when the task's current wait ends (loop time)
        self._ack_scheduled = False  # a ping is due after the reader's current batch
        self._interrupted = False  # a send was cancelled: what was written is unknown
        self._awaited_pong: bytes | None = None  # our outstanding ping's payload: its pong is free
        self._inbound_taken = False  # data frames come to ``_on_frame`` (no more waiting in recv)
        rate = gateway.settings.messages_per_second
        self._bucket = auth.TokenBucket(rate, 2 * rate, self.loop.time())
        req = ws.request
        self.path = req.path if req else "/"
        headers = req.headers if req else Headers()
        self.address = auth.client_address(
            ws.remote_address, headers.get("X-Forwarded-For"), gateway.settings.trusted_proxy_hops
        )
        self._authorization = headers.get("Authorization")
        self.wire.drop_handshake_headers()
        self.wire.take_control(self._on_control)  # from now on, before authentication too

    @property
    def live(self) -> bool:
        return self.phase is Phase.LIVE

    def _set_phase(self, phase: Phase | None) -> None:
        if self.phase is not None:
            metrics.CONNECTIONS.labels(self.phase.value).dec()
        self.phase = phase
        if phase is not None:
            metrics.CONNECTIONS.labels(phase.value).inc()

    def wake(self) -> None:
        if self.sub is not None:
            self.sub.wake.set()

    def notify(self) -> None:
        """Something wants this connection closed (drain, revocation, overflow). A client that
        reads nothing keeps ``send`` blocked forever, so a blocked send is cancelled."""
        self.wake()
        sub = self.sub
        if sub is None or not self._sending or self._interrupted or self._task is None:
            return
        # While catching up, an overflow only means the live backlog will be re-read from Redis.
        if sub.close is not None or self.refuse is not None or self.gw.draining or (sub.overflowed and self.live):
            self._interrupted = True
            self._task.cancel()

    async def run(self) -> None:
        self._set_phase(Phase.AUTHENTICATING)
        try:
            if not self.gw.accepting():
                # Redis is away (or the revocation listener not yet back): nothing can be served,
                # and the client's retry is the right answer (RFC 6455 1013 Try Again Later).
                # After the handshake rather than an HTTP 503 in it: the close code and reason
                # reach the client's application (Kaltura's logs), a refused handshake does not.
                await self._close(Close(TRY_AGAIN, REASON_REDIS_DOWN))
                return
            try:
                self.ref, types = await self._authenticate()
            except Refused as exc:
                metrics.AUTH_FAILURES.labels(exc.label).inc()
                if exc.count_failure:
                    self.gw.limiter.failed(self.address, self.loop.time())
                log.info("caption connection refused: %s", exc.close.reason, extra={"client": self.address})
                await self._close(exc.close)
                return
            except ConnectionClosed:
                return
            if not self.gw.task_connections.admit(self.ref):
                metrics.TASK_LIMIT_REFUSALS.inc()
                log.warning("caption connection refused: task connection limit", extra={"client": self.address})
                # 1013 after the upgrade, not an HTTP 429: a token in the first message is only
                # known here, and the code and reason reach the client's application. Try Again
                # Later: the count falls as the task's other connections close.
                limit = self.gw.task_connections.limit
                await self._close(Close(TRY_AGAIN, f"too many connections for this task (limit {limit}), retry later"))
                return
            try:
                with log_context(event_id=self.ref.event_id, task_id=self.ref.task_id):
                    await self._serve(types)
            finally:
                self.gw.task_connections.release(self.ref)
        except (RedisError, TimeoutError) as exc:
            # Setting up the connection needs Redis (token, cursor, feed): nothing was sent, and
            # the client reconnects and resumes from the saved cursor.
            if redis_health.is_outage(exc):
                self.gw.health.lost(exc)
            else:
                log.warning("redis error, closing caption connection: %s", exc)
            await self._close(Close(TRY_AGAIN, REASON_UNAVAILABLE))
        finally:
            if self.lineage is not None:  # however it ended: its cursor may be taken over now
                self.lineage.close(self.delivery.proven if self.delivery is not None else None)
            self._set_phase(None)

    # --- authentication --------------------------------------------------------------------
    async def _authenticate(self) -> tuple[auth.TaskRef, frozenset[str]]:
        token = auth.token_from_request(self._authorization, self.path)
        if token is not None:
            await self._take_over_inbound()
        else:
            # No token in the handshake: the first message must carry it, within the timeout.
            try:
                async with asyncio.timeout(self.gw.settings.auth_timeout_seconds):
                    message = await self.ws.recv()
            except TimeoutError:
                raise Refused("timeout", Close(UNAUTHORIZED, "unauthorized: no token received in time")) from None
            token = auth.token_from_message(message)
            await self._take_over_inbound()
            if token is None:
                raise Refused("missing", Close(UNAUTHORIZED, 'unauthorized: expected {"token": "<captionToken>"}'))
        async with asyncio.timeout(REDIS_DEADLINE_SECONDS):  # a frozen Redis: 1013, not a hang
            ref = await auth.resolve(self.gw.redis, token)
        if ref is None:
            raise Refused("invalid", Close(UNAUTHORIZED, "unauthorized: unknown or revoked token"))
        wanted = auth.query_params(self.path).get("types")
        types = parse_types(wanted[0] if wanted else None, self.gw.caption_types)
        if types is None:
            close = Close(POLICY, f"types must name response types this service sends: {self.gw.caption_types}")
            raise Refused("bad_request", close, count_failure=False)
        return ref, types

    # --- delivery --------------------------------------------------------------------------
    async def _serve(self, types: frozenset[str]) -> None:
        assert self.ref is not None
        event_id, task_id = self.ref.event_id, self.ref.task_id
        # The cursor of the most recently closed connection of this token that nobody resumed
        # yet, taken over; else None, the beginning (lineage.py; it bounds its Redis calls).
        self.lineage, cursor = await self.gw.hub.lineages.open(event_id, task_id)
        if cursor is not None:
            metrics.RESUMES.inc()
        s = self.gw.settings
        self.delivery = Delivery(
            types,
            cursor,
            self.loop.time(),
            max_seconds=s.max_connection_seconds,
            ping_interval=s.ping_interval_seconds,
            ack_interval=s.ack_interval_seconds,
            pong_timeout=s.ping_interval_seconds,
        )
        self._task = asyncio.current_task()
        async with asyncio.timeout(REDIS_DEADLINE_SECONDS):
            self.sub = await self.gw.hub.subscribe(event_id, task_id)
        self.sub.notify = self.notify
        self.sub.direct = self._direct
        self.wire.take_pongs(self._on_pong)
        # A revocation published between the token lookup and the subscription found no feed
        # to close: look once more now that this connection can hear of it.
        try:
            async with asyncio.timeout(REDIS_DEADLINE_SECONDS):
                await self.sub.feed.check_task()
        except BaseException:
            self.gw.hub.unsubscribe(self.sub)
            raise
        log.info(
            "caption connection opened",
            extra={"client": self.address, "resume_from": str(cursor) if cursor else "start", "types": sorted(types)},
        )
        self.wire.on_lost(self._on_lost)
        try:
            try:
                close = await self._deliver(event_id, task_id, cursor)
            except Interrupted:
                close = self._interruption()
            if close is not None:
                await self._close(close)
        except ConnectionClosed:
            pass
        finally:
            self.wire.forget_lost(self._on_lost)
            self.gw.hub.unsubscribe(self.sub)
        log.info("caption connection closed", extra={"client": self.address, "position": str(self.delivery.position)})

    def _interruption(self) -> Close:
        assert self.sub is not None
        for close in (self.sub.close, self.refuse):
            if close is not None:
                return close
        if self.gw.draining:
            return Close(GOING_AWAY, REASON_DRAIN)
        metrics.SLOW_CLOSES.inc()
        log.warning("closing a subscriber that fell too far behind", extra={"client": self.address})
        return Close(TRY_AGAIN, REASON_SLOW)

    async def _deliver(self, event_id: str, task_id: str, cursor: StreamId | None) -> Close | None:
        """Write frames until something asks to close; returns that close (None: client gone)."""
        assert self.sub is not None and self.delivery is not None
        sub, delivery = self.sub, self.delivery
        stream = keys.captions(event_id, task_id)
        catching_up = True
        self._set_phase(Phase.CATCHING_UP)
        backoff = 0.1
        while True:
            if self.gone:
                return None
            for close in (sub.close, self.refuse):
                if close is not None:
                    return close
            if self.gw.draining:
                return Close(GOING_AWAY, REASON_DRAIN)
            sub.wake.clear()
            if catching_up:
                if sub.overflowed:
                    sub.discard_backlog()
                try:
                    async with asyncio.timeout(REDIS_DEADLINE_SECONDS):
                        page = await self.gw.redis.xrange(
                            stream, min=f"({delivery.position}", max="+", count=CATCH_UP_PAGE
                        )
                    ended = False
                    if len(page) < CATCH_UP_PAGE and cursor is not None:
                        async with asyncio.timeout(REDIS_DEADLINE_SECONDS):
                            ended = await self._ended_before(stream, cursor)
                except (RedisError, TimeoutError) as exc:
                    if not redis_health.is_outage(exc):
                        raise
                    # A Redis outage while catching up: the connection stays open and reads on
                    # from its position when Redis is back (nothing written is read twice).
                    self.gw.health.lost(exc)
                    await sub.wake.wait(backoff)
                    backoff = min(backoff * 2, CATCH_UP_BACKOFF_MAX_SECONDS)
                    continue
                backoff = 0.1
                for entry_id, fields in page:
                    item = to_item(entry_id, fields)
                    if item is None:
                        delivery.position = max(delivery.position, StreamId.parse(entry_id))
                    elif not await self._offer(item, live=False):
                        break
                if len(page) < CATCH_UP_PAGE and not sub.overflowed:
                    catching_up = False
                    self._set_phase(Phase.LIVE)
                    if ended and not delivery.finished:
                        return Close(NORMAL, REASON_EOS)
            else:
                if sub.overflowed:
                    return self._interruption()
                self._busy = True
                try:
                    for item in sub.take():
                        if not await self._offer(item, live=True):
                            break
                finally:
                    self._busy = False
            now = self.loop.time()
            action = delivery.poll(now)
            if isinstance(action, Close):
                return action
            if isinstance(action, Item):
                await self._write(action, live=False)
                continue
            if delivery.ping_due(now):
                self._ping(now)
            if catching_up or sub.items or sub.overflowed:
                continue
            now = self.loop.time()
            timeout = delivery.next_wakeup(now)
            self._wake_at = now + timeout
            await sub.wake.wait(timeout)

    async def _ended_before(self, stream: str, position: StreamId) -> bool:
        """The end-of-stream response is at or before a resumed cursor: it was proven
        delivered, so a late reconnect is told the stream is over instead of idling."""
        newest = await self.gw.redis.xrevrange(stream, "+", "-", count=1)
        if not newest:
            return False
        sid, fields = newest[0]
        return StreamId.parse(sid) <= position and fields.get(b"eos", fields.get("eos")) in (b"1", "1")

    async def _offer(self, item: Item, live: bool) -> bool:
        """Write the frame the entry calls for; False once the end of stream was written."""
        assert self.delivery is not None
        frame = self.delivery.offer(item, self.loop.time())
        if frame is not None:
            await self._write(frame, live)
        return not self.delivery.finished

    async def _write(self, item: Item, live: bool) -> None:
        assert self.delivery is not None
        self.wire.allow_frame(len(item.data))
        await self._guarded(self.ws.send(item.data, text=True))
        self.delivery.sent(item)
        self._count(item, live)

    @staticmethod
    def _count(item: Item, live: bool) -> None:
        metrics.FRAMES_SENT.inc()
        metrics.BYTES_SENT.inc(len(item.data))
        if live:
            metrics.DELIVERY_LAG.observe(max(0.0, time.time() - item.created))

    async def _guarded(self, write: Awaitable[T]) -> T:
        """Await a write that ``notify`` may cancel (a client that reads nothing blocks it)."""
        self._sending = True
        try:
            return await write
        except asyncio.CancelledError:
            if self._interrupted and self._task is not None:
                self._task.uncancel()
                raise Interrupted from None
            raise
        finally:
            self._sending = False

    def _ping(self, now: float) -> None:
        """Write a ping now. Its pong proves every frame written before it (TCP keeps order).
        Written synchronously (a few bytes, after whatever is buffered), so it never blocks."""
        assert self.delivery is not None
        if not self.wire.open:
            return
        ref = self.delivery.ping_sent(now)
        self._awaited_pong = ref.to_bytes(4, "big")
        self.wire.ping(self._awaited_pong)

    def _on_pong(self, data: bytes) -> None:
        if self.delivery is None or self.ref is None or len(data) != 4:
            return
        proven = self.delivery.pong(int.from_bytes(data, "big"))
        if proven is not None and self.lineage is not None:
            self.lineage.save(proven)
            self._reschedule(self.loop.time())

    def _reschedule(self, now: float) -> None:
        """Wake the task if the delivery state now needs it before its current wait ends."""
        if self.delivery is not None and now + self.delivery.next_wakeup(now) < self._wake_at:
            self.wake()

    def _direct(self, item: Item) -> bool:
        """The shared reader offers an entry: write it synchronously when nothing is queued
        and the socket takes it (as websockets' ``broadcast`` does); False → queue it."""
        sub, delivery = self.sub, self.delivery
        if (
            sub is None
            or delivery is None
            or not self.live
            or self._busy
            or self._sending
            or self.gone
            or delivery.finished
            or sub.close is not None
            or self.refuse is not None
            or self.gw.draining
            or not self.wire.writable(DIRECT_WRITE_LIMIT)
        ):
            return False
        now = self.loop.time()
        frame = delivery.offer(item, now)
        if frame is not None:
            try:
                self.wire.text(frame.data)
            except Exception as exc:  # the connection is failing; its task will see it close
                log.debug("direct write failed: %s", exc)
                self.wake()
                return True
            delivery.sent(frame)
            self._count(frame, live=True)
            if delivery.finished:
                self.wake()  # the task closes with 1000
                return True
            if delivery.ping_due(now):
                self._ack_after_batch()
                return True
        self._reschedule(now)
        return True

    def _ack_after_batch(self) -> None:
        """Ping once the shared reader has offered its whole batch. It offers a reply's entries
        one by one in one synchronous loop, and a relay commits a result's transcript and caption
        lines together: pinging after the first frame left the others unproven for an ack
        interval (one ping outstanding at a time), and a replica killed then had them repeated
        on resume (seen in tests/e2e/test_faults.py). A callback, not a task: nothing to await."""
        if not self._ack_scheduled:
            self._ack_scheduled = True
            self.loop.call_soon(self._ack)

    def _ack(self) -> None:
        self._ack_scheduled = False
        now = self.loop.time()
        if self.delivery is not None and not self.gone and self.delivery.ping_due(now):
            self._ping(now)

    async def _close(self, close: Close) -> None:
        self._set_phase(Phase.CLOSING)
        metrics.CLOSES.labels(str(close.code)).inc()
        await self.ws.close(close.code, close.reason)
        # The client answered our close frame: every frame before it arrived (as with a pong).
        if self.delivery is not None and not self._interrupted and self.wire.close_answered:
            self.delivery.close_acknowledged()
        if self.lineage is not None and self.delivery is not None:
            # Marked closed with no await since the close handshake: ahead of any reconnect.
            self.lineage.close(self.delivery.proven)

    # --- inbound ---------------------------------------------------------------------------
    def _on_frame(self, frame: Frame) -> None:
        self._on_message(frame.opcode is Opcode.TEXT and frame.fin, bytes(frame.data))

    async def _take_over_inbound(self) -> None:
        """From now on data frames come to ``_on_frame``; first handle what was queued."""
        self.wire.take_frames(self._on_frame)
        self._inbound_taken = True
        while True:
            try:
                async with asyncio.timeout(0):  # only what is already queued
                    message = await self.ws.recv()
            except TimeoutError:
                return
            text = isinstance(message, str)
            self._on_message(text, message.encode() if isinstance(message, str) else bytes(message))

    def _on_control(self, frame: Frame) -> None:
        """A ping or pong from the client (websockets answered a ping already; the write cap
        bounds those answers): counted with the messages. The pong to our own outstanding ping
        is free: we set that pace (one per ack interval at most)."""
        if frame.opcode is Opcode.PONG and self._awaited_pong is not None and frame.data == self._awaited_pong:
            self._awaited_pong = None
            return
        self._admit_inbound()

    def _admit_inbound(self) -> bool:
        """Take one from the inbound rate; past it, close with 1008 — or, while the first message
        (the token) is awaited in ``recv``, where nothing would act on ``refuse``, drop it."""
        if self.refuse is not None:
            return False  # dropped; the closing handshake is under way
        if self._bucket.take(self.loop.time()):
            return True
        metrics.INBOUND_REFUSED.inc()
        log.warning("closing a client that floods messages", extra={"client": self.address})
        self.refuse = Close(POLICY, "too many messages")
        if not self._inbound_taken:
            self.wire.abort()
        else:
            self.notify()
        return False

    def _on_message(self, text: bool, data: bytes) -> None:
        """A client message, handled inline (no reader task per connection): answer a text
        ``ping`` (Kaltura seed, "Idle streams"), bound the rate. websockets bounds the size
        (``max_size`` → close 1009) before a frame gets here."""
        if not self._admit_inbound():
            return
        if text and data.strip().lower() == b"ping":
            if self.wire.open:
                self.wire.text(b"pong")

    def _on_lost(self, _fut: object) -> None:
        self.gone = True
        if self.wire.close_sent_code == MESSAGE_TOO_BIG:
            metrics.INBOUND_REFUSED.inc()
            log.warning("closed a client that sent an oversized message", extra={"client": self.address})
        self.wake()
