"""The Kaltura EMULATOR's HTTP side: ``/api_v3`` (Kaltura API), ``/admin/`` (the test surface),
``/healthz``; and ``KalturaEmulator``, which serves them on a background thread.

Standard-library ``ThreadingHTTPServer`` with HTTP/1.1 keep-alive (the official client uses a
``requests`` session pool); ``stop()`` also closes kept-alive connections, so a stopped emulator
really stops answering.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from emulators.kaltura import api
from emulators.kaltura.errors import KalturaAPIError, api_error
from emulators.kaltura.faults import CallLog, FaultBook, mask
from emulators.kaltura.state import AdminError, KalturaState
from emulators.kaltura.wire import NULL, parse_params, render_json, render_xml

log = logging.getLogger("emulators.kaltura")
BANNER = "Kaltura EMULATOR"

_API_PATH = re.compile(r"^/api_v3(?:/index\.php)?(?:/service/([^/]+))?(?:/action/([^/]+))?/?$", re.IGNORECASE)
_MR_REF = re.compile(r"^\{(\d+):result((?::[^}]*)*)\}$")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], emulator: KalturaEmulator) -> None:
        self.emulator = emulator
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "KalturaEmulator/1.0"
    timeout = 120
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.sockets_lock:
            self.server.open_sockets.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.sockets_lock:
                self.server.open_sockets.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s: http %s", BANNER, format % args)

    # ------------------------------------------------------------------ plumbing

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Me", "kaltura-emulator")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, doc: Any) -> None:
        self._send(status, json.dumps(doc).encode(), "application/json")

    def _reset(self) -> None:
        """Close the connection without a reply (the ``reset`` fault)."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def do_GET(self) -> None:
        self._route(b"")

    def do_POST(self) -> None:
        self._route(self._body())

    def do_DELETE(self) -> None:
        self._route(self._body())

    def _route(self, body: bytes) -> None:
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        try:
            if path in ("/healthz", "/api_v3/healthz"):
                self._send(200, b"ok\n", "text/plain")
            elif path.startswith("/admin"):
                self._admin(path, body)
            elif _API_PATH.match(path):
                self._api(path, url.query, body)
            else:
                self._send_json(404, {"error": f"{BANNER}: no route {path}"})
        except (BrokenPipeError, ConnectionResetError):
            pass

    # ------------------------------------------------------------------ Kaltura API

    def _api(self, path: str, query: str, body: bytes) -> None:
        emu = self.server.emulator
        started = time.perf_counter()
        try:
            params = parse_params(query, body, self.headers.get("Content-Type", ""))
        except ValueError:
            params = {}
        m = _API_PATH.match(path)
        assert m is not None
        service = m.group(1) or _str(params.get("service"))
        action = m.group(2) or _str(params.get("action"))
        use_json = _str(params.get("format")) == "1"
        base = {"client_tag": _str(params.get("clientTag")) or None, "format": _str(params.get("format")) or None}
        if service.lower() == "multirequest":
            outcome = emu._multirequest(params, base)
        else:
            outcome = emu._single(service, action, params, base)
        if outcome[0] == "reset":
            self._reset()
            return
        if outcome[0] == "http":
            self._send(outcome[1], b"<html><body><h1>500 Internal Server Error</h1></body></html>", "text/html")
            return
        result = outcome[1]
        if use_json:
            self._send(200, render_json(result), "application/json; charset=utf-8")
        else:
            self._send(200, render_xml(result, time.perf_counter() - started), "text/xml; charset=utf-8")

    # ------------------------------------------------------------------ admin surface

    def _admin(self, path: str, body: bytes) -> None:
        emu = self.server.emulator
        try:
            doc = json.loads(body) if body.strip() else {}
        except ValueError:
            self._send_json(400, {"error": "body is not JSON"})
            return
        if not isinstance(doc, dict):
            doc = {}
        parts = path.split("/")[2:]  # after "/admin"
        method = self.command
        try:
            result = emu._admin_route(method, parts, doc)
        except AdminError as exc:
            self._send_json(exc.status, {"error": str(exc), "code": exc.code})
            return
        except (ValueError, TypeError, KeyError) as exc:
            self._send_json(400, {"error": str(exc)})
            return
        if result is _NOT_FOUND:
            self._send_json(404, {"error": f"{BANNER}: no admin route {method} {path}"})
        else:
            self._send_json(200, result)


_NOT_FOUND = object()


def _str(value: Any) -> str:
    return "" if value is None or value is NULL else str(value)


class KalturaEmulator:
    """A Kaltura API server for tests and demos (interface: /tmp/kaltura_emulator_api.md)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        partner_id: int = 5173642,
        admin_secret: str = "vendor-secret",
        app_tokens: dict[str, str] | None = None,
        ks_expiry_seconds: int = 86400,
        access_key_expiry_seconds: int = 7 * 86400,
        clock: Any = time.time,
    ) -> None:
        self.host, self.port = host, int(port)
        self.state = KalturaState(
            partner_id,
            admin_secret,
            app_tokens=app_tokens,
            ks_expiry_seconds=ks_expiry_seconds,
            access_key_expiry_seconds=access_key_expiry_seconds,
            clock=clock,
        )
        self.faults = FaultBook()
        self.call_log = CallLog()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def partner_id(self) -> int:
        return self.state.partner_id

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the Kaltura emulator is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> KalturaEmulator:
        if self._server is not None:
            return self
        self._server = _Server((self.host, self.port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="kaltura-emulator", daemon=True
        )
        self._thread.start()
        log.info("%s listening on %s (vendor partner %s)", BANNER, self.url, self.partner_id)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        with server.sockets_lock:
            for sock in list(server.open_sockets):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        log.info("%s stopped", BANNER)

    def __enter__(self) -> KalturaEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ in-process admin (plain dicts)

    def create_event(self, spec: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        out = self.state.create_event({**(spec or {}), **kwargs})
        log.info("%s: event %s created with tasks %s", BANNER, out["event_id"], out["task_ids"])
        return out

    def add_task(self, event_id: int | str, order: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        """A late order on an existing (possibly live) event → ``{event_id, task_id, feature}``."""
        out = self.state.add_task(event_id, {**(order or {}), **kwargs})
        log.info("%s: event %s gained task %s", BANNER, out["event_id"], out["task_id"])
        return out

    def event(self, event_id: int | str) -> dict[str, Any]:
        return self.state.admin_event(event_id)

    def events(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return [e.render() for e in self.state.events.values()]

    def task(self, task_id: int | str) -> dict[str, Any]:
        return self.state.admin_task(task_id)

    def tasks(self) -> list[dict[str, Any]]:
        return self.state.admin_tasks()

    def feature(self, task_id: int | str) -> dict[str, Any] | None:
        """The task's live caption feature as scheduleEvent.get shows it (None once removed)."""
        with self.state.lock:
            task = self.state.task_or_404(task_id)
            return next(
                (f for f in self.state.events[task.event_id].render()["liveFeatures"]
                 if f["systemName"].endswith(f"-{task.id}")),
                None,
            )  # fmt: skip

    def abort(self, task_id: int | str) -> dict[str, Any]:
        out = self.state.abort(task_id)
        log.info("%s: task %s aborted", BANNER, task_id)
        return out

    def delete(self, task_id: int | str, remove_feature: bool = False) -> dict[str, Any]:
        out = self.state.delete(task_id, remove_feature)
        log.info("%s: task %s deleted", BANNER, task_id)
        return out

    def set_status(self, task_id: int | str, status: int) -> dict[str, Any]:
        return self.state.admin_set_status(task_id, status)

    def remove_feature(self, task_id: int | str) -> dict[str, Any]:
        return self.state.admin_remove_feature(task_id)

    def move_window(self, event_id: int | str, start: float | None, end: float | None) -> dict[str, Any]:
        """Reschedule the event (None keeps that date); its tasks' dates follow."""
        out = self.state.move_window(event_id, None if start is None else int(start), None if end is None else int(end))
        log.info("%s: event %s moved to %s..%s", BANNER, event_id, out["startDate"], out["endDate"])
        return out

    def add_fault(self, **fault: Any) -> dict[str, Any]:
        out = self.faults.add(**fault)
        log.info("%s: fault %s on %s.%s x%s", BANNER, out["kind"], out["service"], out["action"], out["count"] or "inf")
        return out

    def clear_faults(self) -> None:
        self.faults.clear()

    @property
    def calls(self) -> list[dict[str, Any]]:
        return self.call_log.list()

    def clear_calls(self) -> None:
        self.call_log.clear()

    def reset(self) -> None:
        self.state.reset()
        self.faults.clear()
        self.call_log.clear()

    def expire_sessions(self, kind: str | None = None, task_id: str | None = None) -> dict[str, Any]:
        """Expire issued sessions now: kind "vendor", "access_key", "widget" or None/"all"."""
        return self.state.expire_sessions(kind, task_id)

    def configure(self, **options: Any) -> dict[str, Any]:
        return self.state.configure(options)

    def vendor_ks(self, expiry_seconds: int | None = None) -> str:
        """A vendor ADMIN KS without an API call (tests of other callers)."""
        with self.state.lock:
            seconds = self.state.ks_expiry_seconds if expiry_seconds is None else expiry_seconds
            return self.state.sessions.issue("vendor", self.partner_id, self.state.now() + seconds).ks

    # ------------------------------------------------------------------ request handling

    def _record(self, base: dict[str, Any], service: str, action: str, params: dict[str, Any], code: str | None,
                multirequest: bool = False) -> None:  # fmt: skip
        kind = api.classify_ks(self.state, api.ks_of(params))
        record = {
            "service": service,
            "action": action,
            "params": mask({k: v for k, v in params.items() if k not in ("service", "action")}),
            "ks_kind": kind,
            "code": code,
            "time": time.time(),
            **base,
        }
        if multirequest:
            record["multirequest"] = True
        self.call_log.add(record)
        log.debug("%s: %s.%s ks=%s -> %s", BANNER, service, action, kind, code or "ok")

    def _fault(self, service: str, action: str, params: dict[str, Any]) -> dict[str, Any] | None:
        fault = self.faults.take(service, action, params)
        if fault is not None and fault["kind"] == "delay":
            time.sleep(fault["delay"])
            return None
        return fault

    def _call(self, service: str, action: str, params: dict[str, Any]) -> Any:
        """One API call: the result object or a KalturaAPIError (returned, not raised)."""
        try:
            return api.dispatch(self.state, service, action, params)
        except KalturaAPIError as exc:
            return exc
        except Exception:  # an emulator bug must look like a server error, not a dropped connection
            log.exception("%s: %s.%s failed", BANNER, service, action)
            return api_error("INTERNAL_SERVERL_ERROR")

    def _single(self, service: str, action: str, params: dict[str, Any], base: dict[str, Any]) -> tuple[str, Any]:
        fault = self._fault(service, action, params)
        if fault is not None:
            return self._apply_fault(fault, base, service, action, params)
        result = self._call(service, action, params)
        self._record(base, service, action, params, result.code if isinstance(result, KalturaAPIError) else None)
        return "ok", result

    def _apply_fault(self, fault: dict[str, Any], base: dict[str, Any], service: str, action: str,
                     params: dict[str, Any]) -> tuple[str, Any]:  # fmt: skip
        if fault["kind"] == "error":
            err = api_error(fault["code"])
            self._record(base, service, action, params, err.code)
            return "ok", err
        if fault["kind"] == "http500":
            self._record(base, service, action, params, f"HTTP{fault['status']}")
            return "http", fault["status"]
        self._record(base, service, action, params, "RESET")
        return "reset", None

    def _multirequest(self, params: dict[str, Any], base: dict[str, Any]) -> tuple[str, Any]:
        """``service/multirequest``: numbered sub-requests sharing the top-level ks, run in order;
        ``{N:result:field}`` refers to the N-th (1-based) earlier result."""
        fault = self._fault("multirequest", "", params)
        if fault is not None and fault["kind"] in ("http500", "reset"):
            return self._apply_fault(fault, base, "multirequest", "", {})
        shared = {k: v for k, v in params.items() if not k.isdigit()}
        results: list[Any] = []
        for key in sorted((k for k in params if k.isdigit()), key=int):
            sub = params[key] if isinstance(params[key], dict) else {}
            sub_params = {**{k: shared[k] for k in ("ks", "responseProfile") if k in shared}, **sub}
            sub_params = _resolve_refs(sub_params, results)
            service, action = _str(sub_params.get("service")), _str(sub_params.get("action"))
            sub_fault = self._fault(service, action, sub_params)
            if sub_fault is not None and sub_fault["kind"] in ("http500", "reset"):
                return self._apply_fault(sub_fault, base, service, action, sub_params)
            if sub_fault is not None:
                result: Any = api_error(sub_fault["code"])
            else:
                result = self._call(service, action, sub_params)
            code = result.code if isinstance(result, KalturaAPIError) else None
            self._record(base, service, action, sub_params, code, multirequest=True)
            results.append(result)
        return "ok", results

    def _admin_route(self, method: str, parts: list[str], doc: dict[str, Any]) -> Any:
        head = parts[0] if parts else ""
        rest = parts[1:]
        if head == "events":
            if method == "POST" and not rest:
                return self.create_event(doc)
            if method == "GET" and not rest:
                return self.events()
            if method == "GET" and len(rest) == 1:
                return self.event(rest[0])
            if method == "POST" and len(rest) == 2 and rest[1] == "window":
                return self.move_window(rest[0], doc.get("start"), doc.get("end"))
            if method == "POST" and len(rest) == 2 and rest[1] == "tasks":
                return self.add_task(rest[0], doc)
        elif head == "tasks":
            if method == "GET" and not rest:
                return self.tasks()
            if method == "GET" and len(rest) == 1:
                return self.task(rest[0])
            if method == "POST" and len(rest) == 2:
                task_id, verb = rest
                if verb == "abort":
                    return self.abort(task_id)
                if verb == "delete":
                    return self.delete(task_id, bool(doc.get("remove_feature", False)))
                if verb == "status":
                    return self.set_status(task_id, int(doc["status"]))
                if verb == "remove_feature":
                    return self.remove_feature(task_id)
                if verb == "expire_access_key":
                    return self.expire_sessions("access_key", task_id)
        elif head == "faults":
            if method == "POST" and not rest:
                return self.add_fault(**doc)
            if method == "GET" and not rest:
                return self.faults.list()
            if (method == "DELETE" and not rest) or (method == "POST" and rest == ["clear"]):
                self.clear_faults()
                return {"cleared": True}
        elif head == "calls":
            if method == "GET" and not rest:
                return self.calls
            if (method == "DELETE" and not rest) or (method == "POST" and rest == ["clear"]):
                self.clear_calls()
                return {"cleared": True}
        elif head == "reset" and method == "POST":
            self.reset()
            return {"reset": True}
        elif head == "sessions" and rest == ["expire"] and method == "POST":
            return self.expire_sessions(doc.get("kind"), doc.get("task_id"))
        elif head == "config":
            return self.configure(**doc) if method == "POST" else self.configure()
        elif head == "info" and method == "GET":
            return {"emulator": BANNER, "url": self.url, "partner_id": self.partner_id}
        return _NOT_FOUND


def _resolve_refs(params: dict[str, Any], results: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            out[key] = _resolve_refs(value, results)
            continue
        m = _MR_REF.match(value) if isinstance(value, str) else None
        if m and 1 <= int(m.group(1)) <= len(results):
            node: Any = results[int(m.group(1)) - 1]
            for step in [s for s in m.group(2).split(":") if s]:
                if isinstance(node, dict):
                    node = node.get(step)
                elif isinstance(node, list) and step.isdigit() and int(step) < len(node):
                    node = node[int(step)]
                else:
                    node = None
            out[key] = value if node is None or isinstance(node, dict | list | KalturaAPIError) else str(node)
        else:
            out[key] = value
    return out
