"""Readiness and liveness that mean something (issue 18): ``/readyz`` and ``/livez`` next to
``/metrics`` on every service's metrics port.

The HTTP server is a thread (as prometheus' own was), so ``/metrics`` still answers from a
wedged process for diagnosis; the probes do not trust that thread. They read two clocks the
service itself keeps fresh:

- the *loop turn*: stamped by a task on the service's asyncio loop (``watch``), or by the
  Celery process's own main loop (the beat's tick, the worker consumer's timer);
- the last *Redis answer*: a PING every second with a short deadline, from the loop
  (``watch``) or from a pinger thread (``start_pinger``, the Celery processes).

Ready = the loop turned within ``ready_stale`` seconds, Redis answered within ``redis_stale``
seconds, and every extra check holds (worker: its broker consumer is connected; gateway: not
draining, revocations subscribed). Live = the loop turned within ``live_stale`` seconds: only a
wedged process fails it, never a Redis outage (a restart would not bring Redis back; it would
only turn an outage into a crash loop).

The pings feed the process's ``RedisHealth`` (one line lost / one line back per outage).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import redis
import redis.asyncio as aioredis
from prometheus_client import REGISTRY, CollectorRegistry

from shared import redis_client, redis_health
from shared.metrics import render
from shared.redis_health import RedisHealth

log = logging.getLogger(__name__)

TURN_SECONDS = 0.5  # how often ``watch`` stamps the loop turn
PING_SECONDS = 1.0  # how often Redis is pinged
PING_TIMEOUT_SECONDS = 2.0  # a frozen Redis (SIGSTOP) is a failed ping after this
READY_STALE_SECONDS = 2.0
REDIS_STALE_SECONDS = 3.5  # > PING_SECONDS + PING_TIMEOUT_SECONDS: one slow ping is not an outage
LIVE_STALE_SECONDS = 30.0


class Probe:
    """One process's readiness state; thread-safe reads (floats and a dict of callables)."""

    def __init__(
        self,
        service: str,
        *,
        health: RedisHealth | None = None,
        ready_stale: float = READY_STALE_SECONDS,
        live_stale: float = LIVE_STALE_SECONDS,
        redis_stale: float = REDIS_STALE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.health = health or redis_health.get(service)
        self.ready_stale = ready_stale
        self.live_stale = live_stale
        self.redis_stale = redis_stale
        self._clock = clock
        now = clock()
        self._turned = now  # a process that wedges before its first turn goes stale from here
        self._redis_at = float("-inf")
        self._checks: dict[str, Callable[[], bool]] = {}
        self.watched = False  # someone (``watch`` / ``start_pinger``) pings Redis for it

    # --- fed by the service ------------------------------------------------------------------
    def turned(self) -> None:
        """The service's main loop turned (call it from that loop, never from a helper thread)."""
        self._turned = self._clock()

    def redis_ok(self) -> None:
        self._redis_at = self._clock()
        self.health.back()

    def redis_failed(self, exc: BaseException) -> None:
        self.health.lost(exc, confirmed=True)  # a fresh PING failed: not a stale connection

    def add_check(self, name: str, check: Callable[[], bool]) -> None:
        """One more condition of readiness (e.g. the worker's broker consumer is connected)."""
        self._checks[name] = check

    # --- read by the probes ------------------------------------------------------------------
    def ready(self) -> tuple[bool, str]:
        now = self._clock()
        if now - self._turned > self.ready_stale:
            return False, f"main loop last turned {now - self._turned:.1f} s ago"
        if self.health.down or now - self._redis_at > self.redis_stale:
            return False, "redis not answering"
        for name, check in self._checks.items():
            try:
                ok = check()
            except Exception:  # a check that cannot tell is a no
                ok = False
            if not ok:
                return False, f"{name}: no"
        return True, "ready"

    def live(self) -> tuple[bool, str]:
        age = self._clock() - self._turned
        if age > self.live_stale:
            return False, f"main loop last turned {age:.1f} s ago"
        return True, "live"


_current: Probe | None = None


def install(service: str, **options: float) -> Probe:
    """The process's probe (served on the metrics port); replaces any earlier one."""
    global _current
    _current = Probe(service, **options)  # type: ignore[arg-type]
    return _current


def current() -> Probe | None:
    """The probe ``install`` made for this process, if any (a service adds its checks to it)."""
    return _current


# --- extra routes ---------------------------------------------------------------------------
# A route answers one request itself (status, headers, body) on the server's thread for that
# connection. Registered by a service (the gateway's operator page, services/console/web.py), so
# that this module knows nothing of what they serve.
Route = Callable[[BaseHTTPRequestHandler], None]
_routes: dict[str, Route] = {}


def add_route(prefix: str, route: Route) -> None:
    """Serve ``prefix`` and every path under ``prefix + "/"`` (GET and POST) with ``route``
    on this process's metrics server; read at each request, so it may be added after ``serve``."""
    _routes[prefix.rstrip("/")] = route


def remove_route(prefix: str) -> None:
    _routes.pop(prefix.rstrip("/"), None)


def _route_for(path: str) -> Route | None:
    for prefix, route in list(_routes.items()):
        if path == prefix or path.startswith(prefix + "/"):
            return route
    return None


# --- the HTTP server ------------------------------------------------------------------------
def _handler(probe: Probe, registry: CollectorRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            route = _route_for(self.path.partition("?")[0])
            if route is not None:
                route(self)
            else:  # as before there were routes
                self.send_error(501, f"Unsupported method ({self.command!r})")

        def do_GET(self) -> None:
            path = self.path.partition("?")[0]
            route = _route_for(path)
            if path == "/metrics":
                body, content_type = render(registry)
                self._send(200, body, content_type)
            elif path in ("/readyz", "/livez"):
                ok, why = probe.ready() if path == "/readyz" else probe.live()
                self._send(200 if ok else 503, f"{why}\n".encode(), "text/plain; charset=utf-8")
            elif path == "/healthz":  # the former liveness path, kept for old probes
                ok, why = probe.live()
                self._send(200 if ok else 503, f"{why}\n".encode(), "text/plain; charset=utf-8")
            elif route is not None:  # after the probes' own paths: a route never shadows them
                route(self)
            else:
                self._send(404, b"not found\n", "text/plain; charset=utf-8")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # scraped every 15 s: no access log
            pass

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True


def serve(probe: Probe, port: int, host: str = "0.0.0.0", registry: CollectorRegistry = REGISTRY) -> int:
    """Serve ``/metrics``, ``/readyz``, ``/livez`` on a background thread; port 0 means off.
    Returns the port served."""
    if port <= 0:
        return 0
    server_cls = _Server
    if ":" in host:  # an IPv6 address ("::")
        server_cls = type("_Server6", (_Server,), {"address_family": socket.AF_INET6})
    server = server_cls((host.strip("[]"), port), _handler(probe, registry))
    threading.Thread(target=server.serve_forever, name="probes-http", daemon=True).start()
    actual = server.server_address[1]
    log.info("metrics and probes listening", extra={"metrics_port": actual})
    return actual


# --- keeping the clocks fresh ---------------------------------------------------------------
async def watch(probe: Probe, redis_url: str) -> None:
    """Until cancelled: stamp the loop turn and ping Redis, on the service's own loop."""
    probe.watched = True
    # No socket_timeout (see services/gateway/fanout.py): the deadline is asyncio.timeout.
    client = redis_client.async_client(
        redis_url,
        socket_connect_timeout=PING_TIMEOUT_SECONDS,
        max_connections=4,
        client_name=redis_client.client_name(f"{probe.service}-probe"),
    )
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(_stamp(probe), name=f"{probe.service}:probe-turn")
            group.create_task(_ping(probe, client), name=f"{probe.service}:probe-ping")
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()


async def _stamp(probe: Probe) -> None:
    while True:
        probe.turned()
        await asyncio.sleep(TURN_SECONDS)


async def _ping(probe: Probe, client: aioredis.Redis) -> None:
    while True:
        started = asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(PING_TIMEOUT_SECONDS):
                await client.ping()
        except (redis.RedisError, OSError) as exc:  # OSError: the builtin TimeoutError above too
            probe.redis_failed(exc)
        else:
            probe.redis_ok()
        await asyncio.sleep(max(0.0, PING_SECONDS - (asyncio.get_running_loop().time() - started)))


def start_pinger(probe: Probe, redis_url: str) -> threading.Thread:
    """Ping Redis from a daemon thread (the Celery processes, whose main loop is not asyncio).
    The loop turn is stamped by the process's own loop, not here."""
    probe.watched = True
    client = redis_client.sync_client(
        redis_url,
        socket_timeout=PING_TIMEOUT_SECONDS,
        socket_connect_timeout=PING_TIMEOUT_SECONDS,
        client_name=redis_client.client_name(f"{probe.service}-probe"),
    )

    def run() -> None:
        while True:
            started = time.monotonic()
            try:
                client.ping()
            except Exception as exc:  # every failure is "not answering"; never end the thread
                probe.redis_failed(exc)
            else:
                probe.redis_ok()
            time.sleep(max(0.0, PING_SECONDS - (time.monotonic() - started)))

    thread = threading.Thread(target=run, name=f"{probe.service}:redis-pinger", daemon=True)
    thread.start()
    return thread
