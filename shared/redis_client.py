"""The one place that turns ``REACHLIVE_REDIS_URL`` into Redis clients and Celery settings.

Two kinds of URL (docs/operating.md, "Running Redis in production"):

- a single endpoint, as redis-py reads it: ``redis://[[user]:password@]host[:port][/db]``,
  ``rediss://...`` (TLS), ``unix:///path/redis.sock[?db=N]``;
- Redis Sentinel (self-hosted HA)::

    redis+sentinel://[[user]:password@]host1[:port],host2[:port],host3[:port]/<master-name>[/<db>]
                     [?sentinel_password=...&sentinel_username=...]

  The hosts are the *sentinels* (port 26379 when omitted; ``[v6addr]:port`` for IPv6), the path
  names the monitored master (``sentinel monitor <master-name> ...``) and the database (0 when
  omitted). The user and password before ``@`` are the data nodes' (``requirepass``/ACL); the
  sentinels' own ones, if they have any (``requirepass`` in sentinel.conf), go in the query.
  Percent-encode reserved characters in passwords (``@`` → ``%40``, ``/`` → ``%2F``).

Every client built here for a Sentinel URL asks the sentinels for the current master whenever it
(re)connects, so after a failover the next command after the connection error goes to the new
master (redis-py's ``Sentinel.master_for``). A connection still open to a demoted master that
answers ``READONLY`` is dropped and retried the same way. What a failover costs and what the
asynchronous replication can lose is told in docs/operating.md ("Running Redis in production").

redis-py 8's default pool raises ``MaxConnectionsError`` past 100 connections; a service with
hundreds of concurrent publishers, sessions or subscribers must wait for a free connection
instead, so the services' command clients use a blocking pool (``command_client``).

Errors (``RedisUrlError``) are one line and never contain a password.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import redis
import redis.asyncio as aioredis
import redis.asyncio.sentinel as aiosentinel
import redis.sentinel as sentinel

POOL_WAIT_SECONDS = 30.0
SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_PORT = 26379
PLAIN_SCHEMES = ("redis", "rediss", "unix")
# Asking a sentinel where the master is: a short deadline, so that a sentinel that is down or
# frozen costs this much before the next one is asked (they are asked in turn).
SENTINEL_TIMEOUT_SECONDS = 2.0
_QUERY = ("sentinel_password", "sentinel_username")


class RedisUrlError(ValueError):
    """A malformed ``REACHLIVE_REDIS_URL``: one line, password never included. ``problem`` says
    what is wrong with no part of the URL at all: settings errors show nothing of a value (issue
    19: a password with an unencoded ``/`` or ``@`` is not where ``redacted`` looks for it)."""

    def __init__(self, message: str, problem: str) -> None:
        super().__init__(message)
        self.problem = problem


def client_name(service: str) -> str:
    """The name a service's connections give themselves (``CLIENT SETNAME``, sent by redis-py on
    every connect, pass it as ``client_name=``): ``CLIENT LIST`` then says which service, pod and
    process holds each connection (an operator facing a busy Redis; bench/pipeline.py's commands
    by service): ``reachlive:<service>:<host>:<pid>``. Redis allows printable ASCII but spaces
    in a name; a hostname has none."""
    return f"reachlive:{service}:{socket.gethostname()}:{os.getpid()}"


# --- replies --------------------------------------------------------------------------------
# Our clients are made without decode_responses (audio travels as bytes), so replies hold bytes;
# these are the one place that turns them into text.
def text(value: bytes | str | int | float) -> str:
    """One reply value as str."""
    return value.decode() if isinstance(value, bytes) else str(value)


def text_map(raw: dict[Any, Any]) -> dict[str, str]:
    """A hash (HGETALL) or stream entry's fields as str → str."""
    return {text(k): text(v) for k, v in raw.items()}


@dataclass(frozen=True)
class SentinelTarget:
    """A parsed ``redis+sentinel://`` URL (``repr`` hides the passwords)."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)

    def data_auth(self) -> dict[str, Any]:
        """Credentials of the data nodes, as redis-py keyword arguments."""
        out: dict[str, Any] = {}
        if self.username:
            out["username"] = self.username
        if self.password is not None:
            out["password"] = self.password
        return out

    def sentinel_kwargs(self, **socket: Any) -> dict[str, Any]:
        """Connection arguments for the sentinels themselves."""
        out: dict[str, Any] = {
            "socket_timeout": SENTINEL_TIMEOUT_SECONDS,
            "socket_connect_timeout": SENTINEL_TIMEOUT_SECONDS,
        }
        out |= {k: v for k, v in socket.items() if k in ("socket_keepalive", "socket_keepalive_options")}
        if self.sentinel_username:
            out["username"] = self.sentinel_username
        if self.sentinel_password is not None:
            out["password"] = self.sentinel_password
        return out


# --------------------------------------------------------------------------------------------- parsing
def redacted(url: str) -> str:
    """The URL with its password and query values replaced by ``***`` (logs, error messages)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "a value without scheme://"  # not shown: it may be a password pasted alone
    netloc, slash, tail = rest.partition("/")
    if "@" in netloc:
        userinfo, _, hosts = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}:***@{hosts}" if colon else f"***@{hosts}"  # a lone token may be a password
    path, q, query = tail.partition("?")
    if not slash and "?" in netloc:
        netloc, q, query = netloc.partition("?")
    if query:
        pairs = [p.partition("=") for p in query.split("&")]
        # Every value hidden: a misspelt option name may carry a password.
        query = "&".join(f"{k}=***" if eq else k for k, eq, _v in pairs)
    return f"{scheme}://{netloc}{slash}{path}{q}{query}"


def is_sentinel(url: str) -> bool:
    return url.partition("://")[0].lower() == SENTINEL_SCHEME


def parse_sentinel(url: str) -> SentinelTarget:
    """Parse a ``redis+sentinel://`` URL (see the module's docstring); ``RedisUrlError`` if bad."""
    shown = redacted(url)
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() != SENTINEL_SCHEME:
        raise RedisUrlError(f"expected a {SENTINEL_SCHEME}:// URL, got {shown}", f"expected a {SENTINEL_SCHEME}:// URL")
    rest, _, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hostlist = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else unquote(user)
        if not colon:  # "redis+sentinel://secret@..." as redis:// reads "redis://secret@...": a password
            username = None
    sentinels = tuple(_host_port(part, shown) for part in hostlist.split(","))
    names = path.split("/") if slash else []
    if not names or not names[0]:
        expected = f"expected {SENTINEL_SCHEME}://host:26379,.../<master-name>"
        raise RedisUrlError(f"no master name in {shown}: {expected}", f"no master name: {expected}")
    if len(names) > 2 or (len(names) == 2 and not names[1].isdigit()):
        problem = "expected /<master-name>[/<db number>] after the sentinels"
        raise RedisUrlError(f"{problem} in {shown}", problem)
    options: dict[str, str] = {}
    for pair in filter(None, query.split("&")):
        key, _, value = (unquote(p) for p in pair.partition("="))  # not unquote_plus: "+" is a "+"
        if key not in _QUERY:
            known = f"(known: {', '.join(_QUERY)})"
            raise RedisUrlError(f"unknown option {key!r} in {shown} {known}", f"an unknown query option {known}")
        options[key] = value
    return SentinelTarget(
        sentinels=sentinels,
        master=unquote(names[0]),
        db=int(names[1]) if len(names) == 2 else 0,
        username=username,
        password=password,
        sentinel_username=options.get("sentinel_username") or None,
        sentinel_password=options.get("sentinel_password"),
    )


def _host_port(part: str, shown: str) -> tuple[str, int]:
    part = part.strip()
    if part.startswith("["):  # [v6]:port
        host, bracket, tail = part[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise RedisUrlError(f"bad sentinel address {part!r} in {shown}", "bad sentinel address")
        port = tail[1:]
    else:
        host, _, port = part.partition(":")
    if not host:
        raise RedisUrlError(f"empty sentinel host in {shown}", "empty sentinel host")
    if port and not (port.isdigit() and 0 < int(port) <= 65535):
        raise RedisUrlError(f"bad port in sentinel address {part!r} in {shown}", "bad port in a sentinel address")
    return host, int(port) if port else SENTINEL_PORT


def check_url(url: str) -> str:
    """Validate a ``REACHLIVE_REDIS_URL`` value (settings); returns it unchanged."""
    scheme = url.partition("://")[0].lower()
    if scheme == SENTINEL_SCHEME:
        parse_sentinel(url)
        return url
    shown = redacted(url)
    kinds = "/".join((*PLAIN_SCHEMES, SENTINEL_SCHEME))
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a non-numeric port
    except ValueError:
        problem = f"expected a {kinds} URL with a numeric port"
        raise RedisUrlError(f"{problem}, got {shown}", problem) from None
    if parts.scheme not in PLAIN_SCHEMES:
        raise RedisUrlError(f"expected a {kinds} URL, got {shown}", f"expected a {kinds} URL")
    if parts.scheme == "unix" and not parts.path:
        raise RedisUrlError(f"expected unix:///path/to/redis.sock, got {shown}", "expected unix:///path/to/redis.sock")
    if parts.scheme != "unix" and not parts.hostname:
        raise RedisUrlError(f"no host in {shown}", "no host")
    return url


# --------------------------------------------------------------------------------------------- clients
class _BlockingSentinelPool(aiosentinel.SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """A sentinel-managed pool that waits for a free connection, as ``command_client``'s does."""


def _master_kwargs(target: SentinelTarget, options: dict[str, Any]) -> dict[str, Any]:
    return {"db": target.db, **target.data_auth(), **options}


def command_client(
    redis_url: str, max_connections: int = 64, wait: float = POOL_WAIT_SECONDS, **options: Any
) -> aioredis.Redis:
    """An asyncio client whose bounded pool waits up to ``wait`` seconds for a free connection
    (the services' command clients). ``options``: redis-py connection arguments."""
    if is_sentinel(redis_url):
        target = parse_sentinel(redis_url)
        manager = aiosentinel.Sentinel(target.sentinels, sentinel_kwargs=target.sentinel_kwargs(**options))
        return manager.master_for(
            target.master,
            connection_pool_class=_BlockingSentinelPool,
            max_connections=max_connections,
            timeout=wait,
            **_master_kwargs(target, options),
        )
    pool = aioredis.BlockingConnectionPool.from_url(redis_url, max_connections=max_connections, timeout=wait, **options)
    return aioredis.Redis(connection_pool=pool)


def async_client(redis_url: str, **options: Any) -> aioredis.Redis:
    """An asyncio client with a plain pool (blocking readers, fan-out feeds, probes):
    ``options`` as for ``redis.asyncio.Redis`` (``max_connections``, ``socket_timeout``, ...)."""
    if is_sentinel(redis_url):
        target = parse_sentinel(redis_url)
        manager = aiosentinel.Sentinel(target.sentinels, sentinel_kwargs=target.sentinel_kwargs(**options))
        return manager.master_for(target.master, **_master_kwargs(target, options))
    return aioredis.Redis.from_url(redis_url, **options)


def sync_client(redis_url: str, **options: Any) -> redis.Redis:
    """A blocking (threaded) client: the poller's registry, the readiness pinger, scripts."""
    if is_sentinel(redis_url):
        target = parse_sentinel(redis_url)
        manager = sentinel.Sentinel(target.sentinels, sentinel_kwargs=target.sentinel_kwargs(**options))
        return manager.master_for(target.master, **_master_kwargs(target, options))
    return redis.Redis.from_url(redis_url, **options)


# --------------------------------------------------------------------------------------------- Celery
def celery_broker(redis_url: str) -> tuple[str, dict[str, Any]]:
    """The Celery broker URL and the transport options it needs (merge them into
    ``broker_transport_options``). A Sentinel URL becomes kombu's
    ``sentinel://[:pw@]h1:p/db;sentinel://[:pw@]h2:p/db`` with ``master_name`` (and the sentinels'
    own credentials in ``sentinel_kwargs``); any other URL is used as it is."""
    if not is_sentinel(redis_url):
        return redis_url, {}
    target = parse_sentinel(redis_url)
    auth = ""
    if target.password is not None:
        auth = f"{quote(target.username or '', safe='')}:{quote(target.password, safe='')}@"
    nodes = ";".join(f"sentinel://{auth}{_netloc(h, p)}/{target.db}" for h, p in target.sentinels)
    options: dict[str, Any] = {"master_name": target.master, "sentinel_kwargs": target.sentinel_kwargs()}
    return nodes, options


def redbeat_settings(redis_url: str, **options: Any) -> dict[str, Any]:
    """celery-redbeat's ``redbeat_redis_url`` and ``redbeat_redis_options`` for this URL
    (celery-redbeat 2.4: a ``redis-sentinel://`` URL with ``sentinels``, ``service_name``,
    ``db``, ``password``, ``username``, ``sentinel_kwargs`` in the options; it does not pass
    ``socket_connect_timeout`` to the master's connections, ``socket_timeout`` it does)."""
    if not is_sentinel(redis_url):
        return {"redbeat_redis_url": redis_url, "redbeat_redis_options": dict(options)}
    target = parse_sentinel(redis_url)
    beat: dict[str, Any] = {
        "sentinels": list(target.sentinels),
        "service_name": target.master,
        "db": target.db,
        "sentinel_kwargs": target.sentinel_kwargs(),
        **target.data_auth(),
    }
    if "socket_timeout" in options:
        beat["socket_timeout"] = options["socket_timeout"]
    return {"redbeat_redis_url": "redis-sentinel://", "redbeat_redis_options": beat}


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
