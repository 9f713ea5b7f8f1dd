"""The gateway server: the caption WebSocket (and a constant ``/healthz`` for load balancers) on
the public port, the shared feeds, the revocation listener and the SIGTERM drain (docs/design.md section
5; issue 7). ``/metrics``, ``/readyz`` and ``/livez`` are on the metrics port only, as every
service's (``shared.probes``, served by ``shared.runtime``): the public port is reached by anyone
(issue 19).

Redis outages (issue 18): open connections stay open and resume delivery from where they were
when Redis is back (the feeds and the catch-up reads retry); new connections are told to come
back later (close 1013 with a reason) while Redis is away or the revocation listener is not
subscribed; the process never exits for it. ``/readyz`` is the shared probe (``shared.probes``:
loop turning, Redis answering) plus "not draining" and "revocations subscribed".

Hostile clients (issue 19): every connection's unsent output is capped (``wsadapter``); failed
authentications are limited per client address (behind ``trusted_proxy_hops`` proxies, the
address they saw), but a request carrying a valid token is always served; connections per task
are capped per replica.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from http import HTTPStatus

from redis.exceptions import RedisError
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from services.gateway import auth, metrics, wsadapter
from services.gateway.connection import REDIS_DEADLINE_SECONDS, Connection
from services.gateway.fanout import CaptionHub, feed_client
from shared import probes, redis_health
from shared.aio import TaskSet, cancel_and_wait
from shared.redis_client import client_name, command_client
from shared.settings import GatewaySettings

log = logging.getLogger(__name__)

CLOSE_TIMEOUT = 5.0  # seconds to wait for the client's half of a closing handshake
# Short commands (auth, cursors, catch-up pages) share a bounded pool: a reconnect storm after a
# replica died waits for a connection instead of failing. Each task feed holds one connection
# in a blocking XREAD, so feeds get their own pool, sized by the number of tasks served.
COMMAND_CONNECTIONS = 256
FEED_CONNECTIONS = 100_000
POOL_WAIT_SECONDS = 30.0
STOP_SECONDS = 2.0  # per stage of a drain, once the connections are closed
SUBSCRIBE_WAIT_SECONDS = 10.0  # at start; past it (Redis down) the gateway listens and refuses until subscribed


class Gateway:
    def __init__(
        self, redis_url: str, settings: GatewaySettings, caption_types: str, probe: probes.Probe | None = None
    ) -> None:
        self.redis_url = redis_url
        self.health = redis_health.get("gateway")
        # The process's probe (``reachlive gateway``), or one of its own (in-process tests).
        self.probe = probe or probes.Probe("gateway", health=self.health)
        self.probe.add_check("not draining", lambda: not self.draining)
        self.probe.add_check("revocations subscribed", lambda: self.hub.revocations_live)
        self.redis = command_client(
            redis_url, COMMAND_CONNECTIONS, POOL_WAIT_SECONDS, client_name=client_name("gateway")
        )
        self._feed_redis = feed_client(redis_url, FEED_CONNECTIONS)
        self.settings = settings
        self.caption_types = caption_types
        self.hub = CaptionHub(
            self.redis,
            self._feed_redis,
            queue_frames=settings.send_buffer_frames,
            check_seconds=settings.ping_interval_seconds,
        )
        self.limiter = auth.FailureLimiter(settings.auth_failures_per_minute, 60.0)
        self.task_connections = auth.TaskConnections(settings.max_connections_per_task)
        self.tasks = TaskSet("gateway")
        self.connections: set[Connection] = set()
        self._idle = asyncio.Event()  # set whenever no connection is open (drain waits on it)
        self._idle.set()
        self.draining = False
        self.server: Server | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        """Listen (port 0: any free port), start the revocation listener; returns the port."""
        if not self.probe.watched:
            self.tasks.spawn(probes.watch(self.probe, self.redis_url), "probes")
        subscribed = asyncio.Event()
        self.tasks.spawn(self.hub.listen_revocations(subscribed, self.health), "revocations")
        self.server = await serve(
            self._handle,
            host,
            port,
            process_request=self._process_request,
            compression=None,  # permessage-deflate costs ~100 KiB of zlib state per connection
            ping_interval=None,  # our own pings carry the resume cursor (connection.py)
            ping_timeout=None,
            close_timeout=CLOSE_TIMEOUT,
            max_size=self.settings.max_message_bytes,
            max_queue=4,
            open_timeout=10,
            create_connection=wsadapter.connection_class(
                self.settings.max_write_buffer_bytes, metrics.WRITE_BUFFER_ABORTS.inc
            ),
            reuse_port=self.settings.reuse_port and hasattr(socket, "SO_REUSEPORT"),
        )
        self.port = next(iter(self.server.sockets)).getsockname()[1]
        # Revocations published before we listen would be missed; feeds re-check anyway, but a
        # started gateway should not accept connections it cannot revoke: it refuses them (1013)
        # until subscribed. With Redis down at start it listens anyway (probes answer, not ready).
        try:
            async with asyncio.timeout(SUBSCRIBE_WAIT_SECONDS):
                await subscribed.wait()
        except TimeoutError:
            log.info("gateway listening before Redis answers; refusing caption connections until it does")
        return self.port

    def accepting(self) -> bool:
        """New caption connections are served (else told to retry: Redis is away)."""
        return self.hub.revocations_live and not self.health.down

    async def _handle(self, ws: ServerConnection) -> None:
        conn = Connection(self, ws)
        self.connections.add(conn)
        self._idle.clear()
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)
            if not self.connections:
                self._idle.set()

    async def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        path = auth.split_target(request.path)[0]
        if path == "/healthz":  # constant, for a load balancer's check of this port
            return ws.respond(HTTPStatus.OK, "ok\n")
        if self.draining:
            return ws.respond(HTTPStatus.SERVICE_UNAVAILABLE, "draining, connect to another replica\n")
        address = auth.client_address(
            ws.remote_address, request.headers.get("X-Forwarded-For"), self.settings.trusted_proxy_hops
        )
        wait = self.limiter.blocked(address, asyncio.get_running_loop().time())
        if wait > 0:
            # The limit slows down guessing; it must never lock out a good client sharing the
            # address (a proxy's, a NAT's). A token in the handshake is looked up; without one,
            # the first message may carry it, judged after the upgrade (connection.py).
            token = auth.token_from_request(request.headers.get("Authorization"), request.path)
            if token is None:
                return None
            if await self._valid_or_unknown(token):
                metrics.LIMITED_VALID_TOKENS.inc()
                return None
            metrics.AUTH_FAILURES.labels("rate_limited").inc()
            response = ws.respond(HTTPStatus.TOO_MANY_REQUESTS, "too many failed attempts\n")
            response.headers["Retry-After"] = auth.retry_after(wait)
            return response
        return None

    async def _valid_or_unknown(self, token: str) -> bool:
        """The token is valid, or Redis cannot tell now (the connection then answers 1013)."""
        try:
            async with asyncio.timeout(REDIS_DEADLINE_SECONDS):
                return await auth.resolve(self.redis, token) is not None
        except (RedisError, TimeoutError):
            return True

    async def drain(self) -> None:
        """SIGTERM: refuse new connections, close every open one with 1001 (the client reconnects
        to another replica and resumes), save cursors, stop — within ``drain_seconds``."""
        self.draining = True
        log.info("gateway draining", extra={"connections": len(self.connections)})
        for conn in list(self.connections):
            conn.notify()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.drain_seconds
        try:
            async with asyncio.timeout(self.settings.drain_seconds):
                await self._idle.wait()
        except TimeoutError:
            pass
        if self.server is not None:
            self.server.close()
            try:
                async with asyncio.timeout(max(0.1, deadline - loop.time())):
                    await self.server.wait_closed()
            except TimeoutError:
                log.warning("drain timed out with %d connections open", len(self.connections))
                await self._stop_handlers()
        await self.hub.close(timeout=STOP_SECONDS)
        await self.tasks.close(STOP_SECONDS)
        await self.redis.aclose()
        await self._feed_redis.aclose()

    async def _stop_handlers(self) -> None:
        """Connections that outlived the drain: cancel their handlers and wait for them, and
        for the server's own close task, so that nothing outlives ``drain``."""
        assert self.server is not None
        await cancel_and_wait(wsadapter.handler_tasks(self.server), STOP_SECONDS)
        try:
            async with asyncio.timeout(STOP_SECONDS):
                await self.server.wait_closed()
        except TimeoutError:
            log.error("websocket server did not close")

    def leftovers(self) -> list[str]:
        """Names of what is still running of this gateway (empty after ``drain``)."""
        names = [f"{ts.name} ({len(ts)} tasks)" for ts in (self.tasks, self.hub.tasks) if len(ts)]
        if self.server is not None:
            names += [t.get_name() for t in wsadapter.handler_tasks(self.server) if not t.done()]
            closing = wsadapter.close_task(self.server)
            if closing is not None and not closing.done():
                names.append("websocket server close")
        return names

    async def run(self, host: str, port: int, stop: asyncio.Event) -> None:
        port = await self.start(host, port)
        log.info("gateway listening", extra={"host": host, "port": port})
        await stop.wait()
        await self.drain()
