"""The operator's live page (issue 20): ``reachlive status`` as a web page that refreshes itself,
and per task a live view of the captions Kaltura's client is reading, as they are committed.

Served on the gateway's metrics port (``shared.probes.add_route``), never on its public caption
port, and only when ``REACHLIVE_GATEWAY_CONSOLE_TOKEN`` is set (otherwise every ``/console`` path
is the probes server's 404). The token comes once (the login form, or ``?token=`` in a link) and
becomes an HttpOnly, SameSite=Strict cookie holding an HMAC of it (never the token itself); a
script may send ``Authorization: Bearer <token>`` instead. Compared in constant time; never
logged (the probes server keeps no access log). A client address that sends more than
``FAILURES_PER_MINUTE`` wrong tokens gets 429 until the minute is over.

Paths (under ``/console``):

- ``/`` the status page; ``/status.json`` what it reads every second (``status.snapshot``,
  taken at most every ``SNAPSHOT_SECONDS`` whatever the number of open pages);
- ``/task/<id>`` a task's live captions; ``/task/<id>/captions`` what it reads: Server-Sent
  Events from the task's captions stream (``keys.captions``), XREAD BLOCK on this server's
  thread for the request, at most ``MAX_STREAMS`` at once, each ending after
  ``STREAM_SECONDS`` (the browser reconnects with ``Last-Event-ID``, or the page reopens it
  with ``?from=<id>`` after a refusal, and misses nothing);
- ``/login`` (GET the form, POST the token), ``/logout`` (POST), ``/static/<file>``: the page's
  HTML, JS and CSS, shipped in the package (no build step; no data in them, so not behind the
  token: the login form needs its stylesheet).

The page inserts every value as text (``textContent``), never as markup; the Content-Security-
Policy allows only this server's own scripts and styles.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import redis

from services.console import status
from shared import keys, probes
from shared.redis_client import redacted, sync_client, text
from shared.streams import CaptionEntry, PayloadError

log = logging.getLogger(__name__)

PREFIX = "/console"
COOKIE = "reachlive_console"
SESSION_LABEL = b"reachlive console session"  # the cookie is HMAC(token, this): not the token
SNAPSHOT_SECONDS = 0.5
MAX_STREAMS = 8  # open live caption views per gateway process (a thread and a Redis connection each)
STREAM_SECONDS = 600.0
BLOCK_SECONDS = 5.0  # XREAD BLOCK; a keepalive comment after each empty one finds a closed page
WRITE_TIMEOUT_SECONDS = 30.0
BACKLOG = 50  # entries a new caption view starts with
MAX_FORM_BYTES = 4096
FAILURES_PER_MINUTE = 20
TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
STREAM_ID = re.compile(r"\d{1,20}-\d{1,20}")
STATIC_NAME = re.compile(r"[a-z0-9_-]{1,64}\.(html|js|css)")
CONTENT_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_TASK_READ = ("kind", "language", "language_code", "status")


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


def _static(name: str) -> bytes | None:
    if not STATIC_NAME.fullmatch(name):
        return None
    path = resources.files("services.console") / "static" / name
    try:
        return path.read_bytes()
    except OSError:  # FileNotFoundError, or a directory
        return None


class FailureLimit:
    """Wrong tokens per client address in the current minute (thread-safe, bounded)."""

    MAX_ADDRESSES = 10_000

    def __init__(self, per_minute: int = FAILURES_PER_MINUTE, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[float, int]] = {}

    def blocked(self, address: str) -> bool:
        with self._lock:
            started, count = self._counts.get(address, (0.0, 0))
            return count >= self.per_minute and self._clock() - started < 60.0

    def failed(self, address: str) -> None:
        now = self._clock()
        with self._lock:
            if len(self._counts) >= self.MAX_ADDRESSES:  # forget the old windows first
                self._counts = {a: v for a, v in self._counts.items() if now - v[0] < 60.0}
                if len(self._counts) >= self.MAX_ADDRESSES:
                    self._counts.clear()
            started, count = self._counts.get(address, (now, 0))
            if now - started >= 60.0:
                started, count = now, 0
            self._counts[address] = (started, count + 1)


class Console:
    """The ``/console`` route: one per gateway process, called on the probes server's threads."""

    def __init__(self, redis_url: str, token: str) -> None:
        if not token:
            raise ValueError("the console needs a token")
        self._token = _digest(token.encode())
        self._session = hmac.new(token.encode(), SESSION_LABEL, hashlib.sha256).hexdigest()
        self._session_digest = _digest(self._session.encode())
        # socket_timeout above the XREAD BLOCK: a blocked read is not a dead socket.
        self.client = sync_client(redis_url, socket_timeout=BLOCK_SECONDS + 5.0, socket_connect_timeout=5.0)
        self._shown_url = redacted(redis_url)
        self.streams = threading.BoundedSemaphore(MAX_STREAMS)
        self.failures = FailureLimit()
        self._snap_lock = threading.Lock()
        self._snap: tuple[float, bytes] = (float("-inf"), b"")

    # --- dispatch ----------------------------------------------------------------------------
    def __call__(self, req: BaseHTTPRequestHandler) -> None:
        try:
            self._dispatch(req)
        except OSError:  # the browser went away mid-answer, or stopped reading (WRITE_TIMEOUT)
            req.close_connection = True

    def _dispatch(self, req: BaseHTTPRequestHandler) -> None:
        url = urlsplit(req.path)
        path = url.path.removeprefix(PREFIX)
        query = parse_qs(url.query)
        post = req.command == "POST"
        if path == "":
            return self._redirect(req, f"{PREFIX}/")
        if path.startswith("/static/") and not post:
            body = _static(path.removeprefix("/static/"))
            if body is None:
                return self._send(req, 404, b"not found\n", "text/plain; charset=utf-8")
            return self._send(req, 200, body, CONTENT_TYPES[path.rpartition(".")[2]])
        if path == "/login":
            return self._login(req) if post else self._page(req, "login.html", 200)
        if path == "/logout" and post:
            return self._redirect(req, f"{PREFIX}/login", cookie="")
        page = self._page_name(path)
        if page is not None and not post:
            return self._serve_page(req, url.path, page, query)
        data = self._data_route(path)
        if data is None or post:
            return self._send(req, 404, b"not found\n", "text/plain; charset=utf-8")
        address = req.client_address[0]
        if self.failures.blocked(address):
            return self._send(req, 429, b"too many wrong tokens: wait a minute\n", "text/plain; charset=utf-8")
        if not self._authorized(req, address):
            return self._send(req, 401, b"operator token required\n", "text/plain; charset=utf-8")
        data(req)

    @staticmethod
    def _page_name(path: str) -> str | None:
        if path == "/":
            return "index.html"
        parts = path.split("/")  # "", "task", "<id>"
        if len(parts) == 3 and parts[1] == "task" and TASK_ID.fullmatch(parts[2]):
            return "task.html"
        return None

    def _data_route(self, path: str) -> Callable[[BaseHTTPRequestHandler], None] | None:
        if path == "/status.json":
            return self._status
        parts = path.split("/")  # "", "task", "<id>", "captions"
        if len(parts) == 4 and parts[1] == "task" and parts[3] == "captions" and TASK_ID.fullmatch(parts[2]):
            return lambda req: self._captions(req, parts[2])
        return None

    # --- the token ---------------------------------------------------------------------------
    def _authorized(self, req: BaseHTTPRequestHandler, address: str) -> bool:
        """A Bearer header or the session cookie; a wrong one (not a missing one) is a failure."""
        header = req.headers.get("Authorization", "")
        if header[:7].lower() == "bearer ":
            ok = hmac.compare_digest(_digest(header[7:].strip().encode()), self._token)
        else:
            cookie = self._cookie(req)
            if cookie is None:
                return False
            ok = hmac.compare_digest(_digest(cookie.encode()), self._session_digest)
        if not ok:
            self.failures.failed(address)
        return ok

    @staticmethod
    def _cookie(req: BaseHTTPRequestHandler) -> str | None:
        jar = SimpleCookie()
        try:
            jar.load(req.headers.get("Cookie", ""))
        except CookieError:
            return None
        morsel = jar.get(COOKIE)
        return morsel.value if morsel is not None and morsel.value else None

    def _token_ok(self, given: str) -> bool:
        return hmac.compare_digest(_digest(given.encode()), self._token)

    def _login(self, req: BaseHTTPRequestHandler) -> None:
        address = req.client_address[0]
        if self.failures.blocked(address):
            return self._send(req, 429, b"too many wrong tokens: wait a minute\n", "text/plain; charset=utf-8")
        try:
            length = int(req.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_FORM_BYTES:
            return self._send(req, 413, b"form too large\n", "text/plain; charset=utf-8")
        form = parse_qs(req.rfile.read(length).decode("utf-8", "replace"))
        if not self._token_ok(form.get("token", [""])[0]):
            self.failures.failed(address)
            return self._page(req, "login.html", 401)
        return self._redirect(req, _local(form.get("next", [""])[0]), cookie=self._session)

    def _serve_page(self, req: BaseHTTPRequestHandler, path: str, page: str, query: dict[str, list[str]]) -> None:
        address = req.client_address[0]
        if self.failures.blocked(address):
            return self._send(req, 429, b"too many wrong tokens: wait a minute\n", "text/plain; charset=utf-8")
        if "token" in query:  # a link with the token, once: the cookie, then the URL without it
            if not self._token_ok(query["token"][0]):
                self.failures.failed(address)
                return self._page(req, "login.html", 401)
            rest = {k: v for k, v in query.items() if k != "token"}
            target = path + (f"?{urlencode(rest, doseq=True)}" if rest else "")
            return self._redirect(req, target, cookie=self._session)
        if not self._authorized(req, address):
            return self._page(req, "login.html", 401)  # the form, which posts back to this path
        self._page(req, page, 200)

    # --- data --------------------------------------------------------------------------------
    def snapshot(self) -> bytes:
        """The status snapshot as JSON, taken at most every SNAPSHOT_SECONDS (one at a time)."""
        with self._snap_lock:
            taken, body = self._snap
            if time.monotonic() - taken < SNAPSHOT_SECONDS:
                return body
            try:
                snap = status.snapshot(self.client)
            except (redis.RedisError, OSError) as exc:
                snap = status.outage(self._shown_url, exc)
            body = json.dumps(snap, separators=(",", ":")).encode()
            self._snap = (time.monotonic(), body)
            return body

    def _status(self, req: BaseHTTPRequestHandler) -> None:
        self._send(req, 200, self.snapshot(), "application/json")

    def task_info(self, task_id: str) -> dict[str, str] | None:
        event_id = self.client.get(keys.task_event(task_id))
        if event_id is None:
            return None
        event_id = text(event_id)
        values = self.client.hmget(keys.task(event_id, task_id), _TASK_READ)
        record = {k: text(v) for k, v in zip(_TASK_READ, values, strict=True) if v is not None}
        return {"task": task_id, "event": event_id, **record}

    def _captions(self, req: BaseHTTPRequestHandler, task_id: str) -> None:
        try:
            info = self.task_info(task_id)
        except (redis.RedisError, OSError) as exc:
            body = f"redis unreachable: {type(exc).__name__}\n".encode()
            return self._send(req, 503, body, "text/plain; charset=utf-8")
        if info is None:
            return self._send(req, 404, b"no such task\n", "text/plain; charset=utf-8")
        if not self.streams.acquire(blocking=False):
            body = f"at most {MAX_STREAMS} live caption views at once on this gateway\n".encode()
            return self._send(req, 503, body, "text/plain; charset=utf-8")
        try:
            # A page that stops reading (a suspended laptop) must not hold the slot for ever.
            req.connection.settimeout(WRITE_TIMEOUT_SECONDS)
            req.send_response(200)
            req.send_header("Content-Type", "text/event-stream; charset=utf-8")
            for name, value in SECURITY_HEADERS.items():
                req.send_header(name, value)
            req.end_headers()
            # EventSource's own reconnect sends Last-Event-ID; the page's reopen after a refusal, ?from=.
            last_id = req.headers.get("Last-Event-ID") or parse_qs(urlsplit(req.path).query).get("from", [""])[0]
            CaptionFeed(self.client, info, last_id, req.wfile.write).run()
        finally:
            self.streams.release()

    # --- answers -----------------------------------------------------------------------------
    def _page(self, req: BaseHTTPRequestHandler, name: str, code: int) -> None:
        body = _static(name)
        assert body is not None, name  # shipped with the package
        self._send(req, code, body, CONTENT_TYPES["html"])

    @staticmethod
    def _send(req: BaseHTTPRequestHandler, code: int, body: bytes, content_type: str) -> None:
        req.send_response(code)
        req.send_header("Content-Type", content_type)
        req.send_header("Content-Length", str(len(body)))
        for name, value in SECURITY_HEADERS.items():
            req.send_header(name, value)
        req.end_headers()
        req.wfile.write(body)

    @staticmethod
    def _redirect(req: BaseHTTPRequestHandler, target: str, cookie: str | None = None) -> None:
        req.send_response(HTTPStatus.SEE_OTHER)
        req.send_header("Location", target)
        if cookie is not None:
            # No Max-Age: the browser forgets it when it closes. Path: only this page sees it.
            expiry = "; Max-Age=0" if cookie == "" else ""
            secure = "; Secure" if _over_https(req) else ""
            req.send_header(
                "Set-Cookie", f"{COOKIE}={cookie}; Path={PREFIX}; HttpOnly; SameSite=Strict{secure}{expiry}"
            )
        req.send_header("Content-Length", "0")
        for name, value in SECURITY_HEADERS.items():
            req.send_header(name, value)
        req.end_headers()


def _over_https(req: BaseHTTPRequestHandler) -> bool:
    """The browser reached the page over TLS, through a proxy that ended it (this server speaks
    plain HTTP): then the cookie is ``Secure``, never sent over plain HTTP. Not ``Secure``
    otherwise, or a browser on ``http://<pod address>`` (kubectl port-forward to a host that is not
    localhost) would drop it. The header is not checked against trusted proxies: a client that
    forges it only keeps its own cookie from coming back over plain HTTP."""
    proto = req.headers.get("X-Forwarded-Proto", "")
    return proto.split(",")[0].strip().lower() == "https"


def _local(target: str) -> str:
    """Where to go after the login: a page of the console, nothing else (no open redirect)."""
    url = urlsplit(target)
    if url.scheme or url.netloc or not url.path.startswith(f"{PREFIX}/") or "\\" in target:
        return f"{PREFIX}/"
    return url.path


class CaptionFeed:
    """One task's captions stream as Server-Sent Events: the last BACKLOG entries (or from the
    browser's ``Last-Event-ID``), then each entry as it is committed, until the end of stream,
    STREAM_SECONDS, a Redis error or a closed page (the write fails)."""

    def __init__(
        self,
        client: redis.Redis,
        info: dict[str, str],
        last_id: str,
        write: Callable[[bytes], Any],
        *,
        seconds: float = STREAM_SECONDS,
        block: float = BLOCK_SECONDS,
    ) -> None:
        self.client = client
        self.info = info
        self.key = keys.captions(info["event"], info["task"])
        self.last_id = last_id if STREAM_ID.fullmatch(last_id) else ""
        self.write = write
        self.seconds = seconds
        self.block = block

    def run(self) -> None:
        deadline = time.monotonic() + self.seconds
        self._event("task", self.info, retry=True)
        try:
            if not self.last_id:
                backlog = self.client.xrevrange(self.key, "+", "-", count=BACKLOG)
                self.last_id = "0-0"
                for entry_id, fields in reversed(backlog):
                    if self._entry(text(entry_id), fields):
                        return
            while time.monotonic() < deadline:
                reply = self.client.xread({self.key: self.last_id}, count=100, block=int(self.block * 1000))
                if not reply:
                    self.write(b": keepalive\n\n")  # fails once the page is closed
                    continue
                for entry_id, fields in reply[0][1]:
                    if self._entry(text(entry_id), fields):
                        return
        except redis.RedisError as exc:  # a failed write (OSError: the page is gone) propagates
            # The page shows it and its EventSource reconnects (retry:) from the last id.
            self._event("problem", {"message": f"Redis unreachable: {type(exc).__name__}"})

    def _entry(self, entry_id: str, fields: dict[Any, Any]) -> bool:
        """Send one entry; True at the end of stream."""
        self.last_id = entry_id
        try:
            entry = CaptionEntry.parse(fields)
            response = json.loads(entry.json).get("response", {})
        except (PayloadError, ValueError, AttributeError):
            self._event("problem", {"message": f"unreadable entry {entry_id}"}, entry_id)
            return False
        self._event("caption", digest(entry, response), entry_id)
        if entry.eos:
            self._event("end", {"reason": "end of stream"})
        return entry.eos

    def _event(self, name: str, data: dict[str, Any], entry_id: str = "", retry: bool = False) -> None:
        # json.dumps escapes newlines, so the data is one SSE line whatever the captions hold.
        lines = [f"event: {name}", f"data: {json.dumps(data, separators=(',', ':'))}"]
        if entry_id:
            lines.insert(0, f"id: {entry_id}")
        if retry:
            lines.insert(0, "retry: 2000")
        self.write(("\n".join(lines) + "\n\n").encode())


def digest(entry: CaptionEntry, response: dict[str, Any]) -> dict[str, Any]:
    """What the page shows of one response (the text with its line breaks, times, type)."""
    alternatives = response.get("alternatives") or [{}]
    first = alternatives[0] if isinstance(alternatives[0], dict) else {}
    return {
        "type": entry.kind,
        "eos": entry.eos,
        "created": entry.created,
        "id": str(response.get("id", "")),
        "language": str(response.get("language_code", "")),
        "start": response.get("start"),
        "end": response.get("end"),
        "final": bool(response.get("is_final", False)),
        "text": str(first.get("transcript", "")),
    }


def install(redis_url: str, token: str, metrics_port: int) -> Console | None:
    """Register the page on this process's metrics server when the token is set."""
    if not token:
        return None
    if metrics_port <= 0:
        log.warning("REACHLIVE_GATEWAY_CONSOLE_TOKEN is set but REACHLIVE_METRICS_PORT is 0: no operator page")
        return None
    console = Console(redis_url, token)
    probes.add_route(PREFIX, console)
    log.info("operator page at /console/ on the metrics port", extra={"metrics_port": metrics_port})
    return console
