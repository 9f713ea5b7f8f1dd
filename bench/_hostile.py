"""Machinery of ``bench/abuse.py``: the stack it attacks, the live event it watches, the
process figures it samples, and the raw clients its attacks (and its valid probes) are made of.

Everything here is blocking sockets and threads, on purpose: a hostile client is a few lines of
``socket`` calls, and what it does to the service must not depend on an event loop of ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import imageio_ffmpeg
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from bench._measure import words
from emulators.caption_client import CaptionClient
from emulators.media import JFK_FLAC, JFK_TEXT
from services.all.supervisor import Child, Supervisor
from services.demo.stack import VENDOR_PARTNER_ID, VENDOR_SECRET
from shared.child import die_with_parent, free_port, wait_port
from shared.embedded_redis import EmbeddedRedis
from shared.rtmp import amf0
from shared.rtmp.chunks import COMMAND_AMF0, SET_CHUNK_SIZE, USER_CONTROL, ChunkReader, ChunkWriter
from shared.settings import GatewaySettings

ROOT = Path(__file__).resolve().parents[1]
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 1 << 20
SAMPLE_SECONDS = 11.0  # the speech sample's length (485100 samples at 44.1 kHz): one loop of the live event
GOOD = "127.0.0.1"  # valid clients (the live event, the probes) connect from here; attackers never do
KWIK_TOKEN = "bench-abuse-kwikmotion-token"


REFERENCE = words(JFK_TEXT)


# --- process figures --------------------------------------------------------------------------------
def rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


class RssSampler:
    """The RSS of the watched services every 50 ms (a thread), for peaks and medians over a span.
    Reads the current pid each time: a service restarted by the supervisor is followed."""

    def __init__(self, pids: dict[str, Any]) -> None:
        self.pids = pids  # name → callable returning the current pid
        self.samples: list[tuple[float, dict[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.samples.append((time.monotonic(), {n: rss_bytes(pid()) for n, pid in self.pids.items()}))
            if len(self.samples) > 200_000:  # ~3 h at 20 Hz: keep the memory of the bench bounded
                del self.samples[:100_000]

    def now(self, name: str) -> int:
        return rss_bytes(self.pids[name]())

    def _span(self, name: str, t0: float, t1: float) -> list[int]:
        return [s[name] for t, s in self.samples if t0 <= t <= t1 and s.get(name)]

    def peak(self, name: str, t0: float, t1: float) -> int:
        return max(self._span(name, t0, t1), default=self.now(name))

    def median(self, name: str, t0: float, t1: float) -> int:
        values = sorted(self._span(name, t0, t1)) or [self.now(name)]
        return values[len(values) // 2]


def metrics_counters(port: int) -> dict[str, float]:
    """The counters of a service's /metrics (``name{labels}`` → value); empty if unreachable."""
    out: dict[str, float] = {}
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except (OSError, urllib.error.URLError):
        return out
    for line in text.splitlines():
        if line.startswith("#") or "_total" not in line:
            continue
        name, _, value = line.rpartition(" ")
        with contextlib.suppress(ValueError):
            out[name] = float(value)
    return out


def http_status(port: int, path: str) -> str:
    """The status code of a GET on 127.0.0.1:port (or why there was none)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return str(r.status)
    except urllib.error.HTTPError as exc:
        return str(exc.code)
    except (OSError, urllib.error.URLError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"no answer ({type(reason).__name__})"


# --- the stack ----------------------------------------------------------------------------------------
@dataclass
class BenchStack:
    """Embedded Redis, the Kaltura emulator (a thread of ours), the KWIKmotion emulator (a process
    of its own: it must not share our GIL with the attack threads) and every reachlive service
    as a supervised ``reachlive <service>`` child, as ``reachlive all`` runs them, each with a
    metrics port of its own (services/demo/stack.py gives every service the same environment,
    hence no metrics port at all)."""

    workdir: Path
    env: dict[str, str] = field(default_factory=dict)  # extra REACHLIVE_* for every service
    children: dict[str, Child] = field(default_factory=dict)
    metrics_ports: dict[str, int] = field(default_factory=dict)
    gateway_metrics_port: int = 0
    redis_url: str = ""
    kaltura_url: str = ""
    ingest_port: int = 0
    gateway_port: int = 0

    def pid(self, name: str) -> int:
        proc = self.children[name].proc
        return proc.pid if proc is not None else 0

    def restarts(self) -> dict[str, int]:
        return {n: c.restarts for n, c in self.children.items()}

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.gateway_port}/v1/captions"

    @contextlib.contextmanager
    def running(self) -> Iterator[BenchStack]:
        from emulators.kaltura import KalturaEmulator

        with contextlib.ExitStack() as exit:
            redis = exit.enter_context(EmbeddedRedis(self.workdir / "data"))
            self.redis_url = redis.url
            kaltura = KalturaEmulator(
                host="127.0.0.1", port=0, partner_id=VENDOR_PARTNER_ID, admin_secret=VENDOR_SECRET
            )
            kaltura.start()
            exit.callback(kaltura.stop)
            self.kaltura_url = kaltura.url
            kwik_url = exit.enter_context(self._kwikmotion())
            self.ingest_port, self.gateway_port = free_port(), free_port()
            logs = self.workdir / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            base = {
                "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
                "REACHLIVE_REDIS_URL": self.redis_url,
                "REACHLIVE_DATA_DIR": str(self.workdir / "data"),
                "REACHLIVE_KALTURA_SERVICE_URL": kaltura.url,
                "REACHLIVE_KALTURA_PARTNER_ID": str(VENDOR_PARTNER_ID),
                "REACHLIVE_KALTURA_ADMIN_SECRET": VENDOR_SECRET,
                "REACHLIVE_KALTURA_POLL_SECONDS": "1",
                "REACHLIVE_KWIKMOTION_URL": kwik_url,
                "REACHLIVE_KWIKMOTION_TOKEN": KWIK_TOKEN,
                "REACHLIVE_INGEST_PUBLIC_URL": f"rtmp://127.0.0.1:{self.ingest_port}/live",
                "REACHLIVE_GATEWAY_PUBLIC_URL": self.gateway_url,
                "REACHLIVE_INGEST_GRACE_SECONDS": "1",
                "REACHLIVE_INGEST_WINDOW_MARGIN_SECONDS": "2",
                "REACHLIVE_METRICS_HOST": "127.0.0.1",
                "REACHLIVE_LOG_FORMAT": "json",
                **poller_keys(),
                **self.env,
            }
            for name in ("worker", "poller", "ingest", "relay", "gateway"):
                port = free_port()
                env = {**base, "REACHLIVE_METRICS_PORT": str(port)}
                if name == "ingest":
                    env["REACHLIVE_INGEST_LISTEN"] = f"127.0.0.1:{self.ingest_port}"
                if name == "gateway":
                    env["REACHLIVE_GATEWAY_LISTEN"] = f"127.0.0.1:{self.gateway_port}"
                    env |= self._gateway_metrics_env(port)
                self.metrics_ports[name] = port
                self.children[name] = Child(name=name, args=[name], env=env, log_path=logs / f"{name}.log")
            supervisor = Supervisor(list(self.children.values()))
            thread = threading.Thread(target=supervisor.run, name="supervisor", daemon=True)
            thread.start()

            def stop() -> None:
                supervisor.stopping.set()
                thread.join(60)

            exit.callback(stop)
            wait_port(self.ingest_port, 60)
            wait_port(self.gateway_port, 60)
            for name in ("ingest", "relay", "gateway"):
                self._wait_ready(self.metrics_ports[name], 60)
            yield self

    def _gateway_metrics_env(self, common_port: int) -> dict[str, str]:
        """A gateway metrics port of its own if the settings have one (a field of GatewaySettings
        naming metrics and a port or listen address); else the common REACHLIVE_METRICS_PORT."""
        self.gateway_metrics_port = common_port
        for name, info in GatewaySettings.model_fields.items():
            if "metrics" not in name or not ("port" in name or "listen" in name):
                continue
            port = free_port()
            self.gateway_metrics_port = port
            value = str(port) if info.annotation is int or "port" in name else f"127.0.0.1:{port}"
            return {f"REACHLIVE_GATEWAY_{name.upper()}": value}
        return {}

    @staticmethod
    def _wait_ready(port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if http_status(port, "/readyz") == "200":
                return
            time.sleep(0.25)
        raise TimeoutError(f"a service's /readyz (port {port}) not 200 after {timeout:.0f} s")

    @contextlib.contextmanager
    def _kwikmotion(self) -> Iterator[str]:
        port = free_port()
        with open(self.workdir / "logs-kwikmotion.log", "wb") as log:
            proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "shared.cli", "emulate", "kwikmotion", "--listen", f"127.0.0.1:{port}"),
                    *("--token", KWIK_TOKEN, "--max-sessions", "200", "--log-level", "WARNING"),
                ],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
            try:
                wait_port(port, 30)
                yield f"ws://127.0.0.1:{port}/"
            finally:
                stop_process(proc)


def poller_keys() -> dict[str, str]:
    """A key to seal the tasks' accessKeys with, if this tree's worker needs one (issue 19) and
    none is set: the run's own, as ``reachlive all`` and the demo make."""
    from shared.settings import PollerSettings

    variable = "REACHLIVE_POLLER_ENCRYPTION_KEYS"
    if "encryption_keys" not in PollerSettings.model_fields or os.environ.get(variable):
        return {}
    from cryptography.fernet import Fernet

    return {variable: Fernet.generate_key().decode()}


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL after ``timeout``: only ever a process this bench started."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# --- raw sockets --------------------------------------------------------------------------------------
def tcp(port: int, source: str = GOOD, timeout: float = 10.0) -> socket.socket:
    """A TCP connection to 127.0.0.1:port from ``source`` (any 127/8 address: a client of its own)."""
    sock = socket.socket()
    try:
        sock.settimeout(timeout)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    return sock


def abort(sock: socket.socket) -> None:
    """Close with a RST: the attacker vanishes, nothing for the server to flush."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


def closed_by_peer(socks: list[socket.socket]) -> set[int]:
    """Indexes of the sockets the server has closed (FIN or RST), found without reading them."""
    poller = select.poll()
    fds: dict[int, int] = {}
    for i, s in enumerate(socks):
        with contextlib.suppress(OSError, ValueError):
            fd = s.fileno()
            if fd >= 0:
                fds[fd] = i
                poller.register(fd, select.POLLRDHUP | select.POLLHUP | select.POLLERR)
    out = {i for i, s in enumerate(socks) if s.fileno() < 0}
    for fd, _ev in poller.poll(0):
        out.add(fds[fd])
    return out


# --- a WebSocket client built from websockets' sans-I/O protocol -------------------------------------
@dataclass
class WsClient:
    """One caption connection from ``source``: the token in the header, the query or a first
    message (``transport``), or none. ``open`` performs the opening handshake; ``pump`` reads
    (answering pings, as the protocol does); ``texts`` are the text frames with arrival times."""

    url: str
    token: str | None = None
    transport: str = "header"  # header | query | message
    source: str = GOOD
    xff: str | None = None
    timeout: float = 10.0
    sock: socket.socket | None = None
    status: int = 0  # HTTP status of the opening handshake (0: none)
    close_code: int | None = None  # the server's close frame's code
    closed: bool = False  # the TCP connection is over
    ended_at: float = 0.0  # monotonic clock of the server's close frame (or of the connection's end)
    error: str = ""
    texts: list[tuple[float, str]] = field(default_factory=list)

    def request_bytes(self) -> bytes:
        url = self.url
        if self.token is not None and self.transport == "query":
            url += ("&" if "?" in url else "?") + "token=" + self.token
        self.proto = ClientProtocol(parse_uri(url), max_size=None)
        request = self.proto.connect()
        if self.token is not None and self.transport == "header":
            request.headers["Authorization"] = f"Bearer {self.token}"
        if self.xff:
            request.headers["X-Forwarded-For"] = self.xff
        self.proto.send_request(request)
        return b"".join(self.proto.data_to_send())

    def connect_tcp(self) -> socket.socket:
        self.sock = tcp(parse_uri(self.url).port, self.source, self.timeout)
        return self.sock

    def open(self) -> bool:
        """True when the server switched protocols (and the first-message token was sent)."""
        try:
            request = self.request_bytes()
            self.connect_tcp().sendall(request)
            deadline = time.monotonic() + self.timeout
            while not self.status and not self.closed and time.monotonic() < deadline:
                self._read_once(deadline - time.monotonic())
            if self.status == 101 and self.token is not None and self.transport == "message":
                self.send_text(json.dumps({"token": self.token}))
        except OSError as exc:
            self.error = f"{type(exc).__name__}"
            self.closed = True
        return self.status == 101 and not self.closed

    def send_text(self, text: str) -> None:
        self.proto.send_text(text.encode())
        self._flush()

    def _flush(self) -> None:
        assert self.sock is not None
        for data in self.proto.data_to_send():
            if data:
                self.sock.sendall(data)

    def _read_once(self, timeout: float) -> None:
        assert self.sock is not None
        self.sock.settimeout(max(0.01, timeout))
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return
        except OSError as exc:
            self.error = self.error or type(exc).__name__
            self.closed = True
            return
        if data:
            self.proto.receive_data(data)
        else:
            self.proto.receive_eof()
            self.closed = True
        for event in self.proto.events_received():
            if isinstance(event, Response):
                self.status = event.status_code
            elif isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                self.texts.append((time.time(), event.data.decode(errors="replace")))
        if self.proto.close_rcvd is not None and self.close_code is None:
            self.close_code = self.proto.close_rcvd.code
        if (self.close_code is not None or self.closed) and not self.ended_at:
            self.ended_at = time.monotonic()
        with contextlib.suppress(OSError):
            self._flush()  # pongs, and the answer to a close

    def pump(self, seconds: float) -> None:
        """Read (and answer) for ``seconds``, or until the connection ends."""
        deadline = time.monotonic() + seconds
        while not self.closed and (left := deadline - time.monotonic()) > 0:
            self._read_once(left)

    def close(self) -> None:
        """A clean close: our close frame, the server's answer (up to 2 s), then the socket."""
        if self.sock is None:
            return
        if not self.closed and self.status == 101:
            with contextlib.suppress(Exception):
                self.proto.send_close(1000)
                self._flush()
                self.pump(2)
        with contextlib.suppress(OSError):
            self.sock.close()
        self.closed = True

    def abort(self) -> None:
        if self.sock is not None:
            abort(self.sock)
        self.closed = True


def ws_frame(opcode: Opcode, payload: bytes) -> bytes:
    return Frame(opcode, payload).serialize(mask=True)


def ws_frame_header(length: int, opcode: int = 0x2) -> bytes:
    """A masked client frame's header announcing ``length`` bytes (the payload follows, masked)."""
    return struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length) + os.urandom(4)


def gateway_probe(url: str, token: str) -> str:
    """A valid client: "" if served (101 and not closed within 0.3 s), else why not."""
    client = WsClient(url, token=token, source=GOOD, timeout=10)
    try:
        if not client.open():
            return f"HTTP {client.status}" if client.status else (client.error or "no handshake in 10 s")
        client.pump(0.3)
        if client.close_code is not None:
            return f"closed {client.close_code}"
        if client.closed:
            return "dropped"
        return ""
    finally:
        client.close()


# --- RTMP -------------------------------------------------------------------------------------------
class RtmpClient:
    """A publisher as ffmpeg's rtmpproto.c behaves (handshake, connect, releaseStream,
    FCPublish, createStream, publish), over a blocking socket, using our own chunk codec."""

    def __init__(self, port: int, source: str = GOOD, timeout: float = 10.0) -> None:
        self.port, self.timeout = port, timeout
        self.sock = tcp(port, source, timeout)
        self.reader, self.writer = ChunkReader(), ChunkWriter()
        self.stream_id = 0
        self.statuses: list[str] = []  # onStatus codes received
        self.results: dict[float, list[Any]] = {}  # transaction → _result/_error values

    def handshake(self) -> None:
        self.sock.sendall(b"\x03" + struct.pack(">II", 0, 0) + os.urandom(1528))
        s0s1s2 = self._exactly(1 + 2 * 1536)
        self.sock.sendall(s0s1s2[1 : 1 + 1536])  # C2 echoes S1

    def _exactly(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            data = self.sock.recv(n - len(out))
            if not data:
                raise ConnectionError("closed during the handshake")
            out += data
        return bytes(out)

    def _command(self, stream_id: int, *values: Any) -> None:
        self.sock.sendall(
            self.writer.write(3 if stream_id == 0 else 8, COMMAND_AMF0, stream_id, 0, amf0.encode(*values))
        )

    def read_available(self, wait: float = 0.0) -> bool:
        """Read what the server sent (up to ``wait`` s for the first bytes); False once closed."""
        self.sock.settimeout(max(wait, 0.0001))
        try:
            data = self.sock.recv(65536)
        except (TimeoutError, BlockingIOError):
            return True
        if not data:
            return False
        self.reader.feed(data)
        while (msg := self.reader.next_message()) is not None:
            if msg.type_id == SET_CHUNK_SIZE:
                self.reader.set_chunk_size(struct.unpack(">I", msg.payload[:4])[0])
            elif msg.type_id == USER_CONTROL and msg.payload[:2] == b"\x00\x06":  # ping request
                self.sock.sendall(self.writer.write(2, USER_CONTROL, 0, 0, b"\x00\x07" + msg.payload[2:6]))
            elif msg.type_id == COMMAND_AMF0:
                values = amf0.decode_all(msg.payload)
                if values and values[0] in ("_result", "_error") and len(values) > 1:
                    self.results[values[1]] = values
                elif values and values[0] == "onStatus" and len(values) > 3 and isinstance(values[3], dict):
                    self.statuses.append(str(values[3].get("code", "")))
        return True

    def _await(self, done: Any, what: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer to {what} in {self.timeout:.0f} s")
            if not self.read_available(deadline - time.monotonic()):
                raise ConnectionError(f"closed before answering {what}")

    def publish(self, key: str, app: str = "live") -> str:
        """Handshake, connect and publish ``key``: the onStatus code (or why there was none)."""
        try:
            self.handshake()
            tc_url = f"rtmp://127.0.0.1:{self.port}/{app}"
            self._command(
                0, "connect", 1.0, {"app": app, "type": "nonprivate", "flashVer": "FMLE/3.0", "tcUrl": tc_url}
            )
            self._await(lambda: 1.0 in self.results, "connect")
            self._command(0, "releaseStream", 2.0, None, key)
            self._command(0, "FCPublish", 3.0, None, key)
            self._command(0, "createStream", 4.0, None)
            self._await(lambda: 4.0 in self.results, "createStream")
            created = self.results[4.0]
            if created[0] != "_result" or not isinstance(created[-1], float):
                return "createStream refused"
            self.stream_id = int(created[-1])
            self._command(self.stream_id, "publish", 5.0, None, key, "live")
            self._await(lambda: bool(self.statuses), "publish")
            return self.statuses[0]
        except (OSError, ConnectionError) as exc:
            return f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a garbled answer: report it, never crash the bench
            return f"error: {exc}"

    def send_audio(self, payload: bytes, timestamp_ms: int) -> None:
        self.sock.sendall(self.writer.write(4, 8, self.stream_id, timestamp_ms, payload))

    def unpublish(self) -> None:
        with contextlib.suppress(OSError):
            self._command(self.stream_id, "FCUnpublish", 6.0, None, "")
            self._command(0, "deleteStream", 7.0, None, float(self.stream_id))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def ingest_probe(port: int, key: str) -> str:
    """A valid publisher: "" if its publish is accepted, else the status or error it got."""
    client = None
    try:
        client = RtmpClient(port, GOOD, timeout=10)
        status = client.publish(key)
        return "" if status == "NetStream.Publish.Start" else status
    except OSError as exc:
        return f"{type(exc).__name__}"
    finally:
        if client is not None:
            client.unpublish()
            client.close()


def flv_audio_tags(flv: Path) -> list[tuple[int, bytes]]:
    """(timestamp ms, RTMP audio message payload) of every audio tag of an FLV file."""
    data = flv.read_bytes()
    pos = struct.unpack(">I", data[5:9])[0] + 4
    out = []
    while pos + 11 <= len(data):
        kind, size = data[pos], int.from_bytes(data[pos + 1 : pos + 4], "big")
        ts = int.from_bytes(data[pos + 4 : pos + 7], "big") | (data[pos + 7] << 24)
        body = data[pos + 11 : pos + 11 + size]
        if kind == 8 and body:
            out.append((ts, body))
        pos += 11 + size + 4
    return out


def looped(tags: list[tuple[int, bytes]], seconds: float) -> Iterator[tuple[int, bytes]]:
    """The tags over and over for ``seconds``: the AAC sequence header once, then the frames, the
    timestamps running on across loops."""
    header = [t for t in tags if len(t[1]) > 1 and t[1][1] == 0][:1]
    frames = [t for t in tags if t not in header]
    period = frames[-1][0] + 23 if frames else 1000
    yield from ((0, body) for _ts, body in header)
    loop = 0
    while True:
        for ts, body in frames:
            at = loop * period + ts
            if at > seconds * 1000:
                return
            yield at, body
        loop += 1


# --- the live event ---------------------------------------------------------------------------------
def caption_reader(url: str, token: str, conn: Any) -> None:
    """Child process: Kaltura's caption client on the live task (transcript responses) until the
    end of stream or "stop"; sends back every response with its arrival time, and when the
    client's connection count changed (a reconnect: a valid client dropped)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the bench stops us

    async def go() -> dict[str, Any]:
        client = CaptionClient(url=url, token=token, types="transcript", ping_interval=20)
        runner = asyncio.create_task(client.run(), name="caption-client")
        changes: list[tuple[float, int]] = []
        seen = 0
        while not client.finished.is_set():
            if conn.poll() and conn.recv() == "stop":
                break
            if client.connections != seen:
                seen = client.connections
                changes.append((time.time(), seen))
            await asyncio.sleep(0.2)
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        return {
            "done": client.done.is_set(),
            "received": [(r.response["response"], r.at) for r in client.received],
            "closes": client.closes[:20],
            "connections": changes,
            "errors": client.errors[:5],
        }

    conn.send(asyncio.run(go()))


def start_publisher(url: str, log: Path) -> subprocess.Popen[bytes]:
    """The live event's encoder: ffmpeg publishing the speech sample in a loop, in real time."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [
                *(FFMPEG, "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(JFK_FLAC)),
                *("-vn", "-c:a", "aac", "-b:a", "128k", "-f", "flv", url),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )


@dataclass
class LoopCheck:
    loop: int
    start: float  # wall clock when its first sample reached the ingest
    missing: int  # reference words not received
    extra: int  # received words beyond the reference's count (repeated under new ids)


def check_loops(result: dict[str, Any], published_until: float) -> tuple[list[LoopCheck], float]:
    """Each complete loop of the sample the live event published, its received words against the
    reference transcript (by the items' media time: loop k is [11 k, 11 k + 11) s). Responses
    are taken once per id (a resume may repeat one). Returns the loops and T0 (the wall clock of
    media time 0: a publisher in real time delivers media time t at T0 + t, the ingest stamping
    ``start_epoch`` when it read it, so the smallest ``start_epoch - start`` is T0)."""
    seen: set[str] = set()
    items: list[tuple[float, str]] = []
    offsets = []
    for resp, _at in result["received"]:
        if resp["id"] in seen or resp["is_end_of_stream"]:
            continue
        seen.add(resp["id"])
        offsets.append(resp["start_epoch"] - resp["start"])
        for item in resp["alternatives"][0]["items"] if resp["alternatives"] else []:
            if item["kind"] == "text":
                items += [((item["start"] + item["end"]) / 2, w) for w in words(item["value"])]
    if not offsets:
        return [], 0.0
    t0 = min(offsets)
    items.sort()
    complete = int((published_until - t0 - 1.0) // SAMPLE_SECONDS)
    loops = []
    for k in range(max(0, complete)):
        lo, hi = k * SAMPLE_SECONDS, (k + 1) * SAMPLE_SECONDS
        # The emulator's word times are within half a second or so, and the sample's first and
        # last words sit close to its ends: a word is looked for a second either side of its
        # loop (a neighbour's word there is simply not matched), counted as extra only inside.
        near = [w for t, w in items if lo - 1.0 <= t < hi + 1.0]
        inside = [w for t, w in items if lo <= t < hi]
        blocks = difflib.SequenceMatcher(None, REFERENCE, near, autojunk=False).get_matching_blocks()
        missing = len(REFERENCE) - sum(b.size for b in blocks)
        loops.append(LoopCheck(k, t0 + lo, missing, max(0, len(inside) - len(REFERENCE))))
    return loops, t0
