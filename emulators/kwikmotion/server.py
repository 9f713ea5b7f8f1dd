"""The KWIKmotion EMULATOR: a WebSocket server that speaks the seed's protocol to the letter, with
faults on demand, recording every session's audio (docs/design.md section 4). Transcripts are the words of
the reference recording heard in each chunk (``align.py``), or the reference transcript replayed
in step with the session's audio time (``align="time"``).

One coroutine per connection: authenticate (Error then close, "immediately after connection"),
refuse at capacity (1008), then answer StartRecognition, every binary chunk (AudioAdded,
AddTranscript, one AddTranslation per target) and EndOfStream (EndOfTranscript). Replies go in
order, one chunk at a time, which keeps the recorded conversation deterministic for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from emulators.kwikmotion import protocol as p
from emulators.kwikmotion.align import AudioAligner, ReferenceAudio, decode_pcm, reference_audio
from emulators.kwikmotion.faults import Faults, parse_fault_query
from emulators.kwikmotion.variants import HOLD_SECONDS, ResultShaper, Variant, parse_variant_query, variant_from
from emulators.media import JFK_FLAC, JFK_TEXT
from shared.kwikmotion.languages import SUPPORTED_LANGUAGES

log = logging.getLogger("emulators.kwikmotion")
BANNER = "KWIKmotion EMULATOR"
MAX_CHUNK_BYTES = 4 * 1024 * 1024  # 10 s of pcm_f32le at 48 kHz is 1.9 MB
ALIGN_MODES = ("auto", "audio", "time")


@dataclass
class SessionRecord:
    """Everything one connection did, for tests and ``GET /admin/sessions``."""

    index: int
    remote: str = ""
    auth: str = "ok"  # ok | missing | format | expired | forbidden
    auth_via: str = "none"  # header | query | none
    session_id: str | None = None
    start: dict[str, Any] | None = None
    language: str | None = None
    targets: list[str] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    # Per chunk: seconds from taking the chunk to having sent its results (the emulator's own
    # time, which the pipeline benchmark subtracts from the end-to-end figure).
    reply_seconds: list[float] = field(default_factory=list)
    received: list[str] = field(default_factory=list)  # text messages, in order
    sent: list[dict[str, Any]] = field(default_factory=list)  # messages sent, in order
    end_of_stream: dict[str, Any] | None = None
    faults: list[str] = field(default_factory=list)  # faults that fired here
    closed_code: int | None = None  # the code we closed with, the client's, or 1006 (no close frame)
    closed_reason: str = ""
    done: bool = False  # EndOfTranscript sent
    finished: bool = False  # the connection is over and this record final
    align: str | None = None  # how this session's words were found: audio | time
    aligner: AudioAligner | None = field(default=None, repr=False, compare=False)
    variant: Variant | None = None  # the seed's reading this session plays (fixed at StartRecognition)
    shaper: ResultShaper | None = field(default=None, repr=False, compare=False)
    taken_at: dict[int, float] = field(default_factory=dict, repr=False)  # chunk → arrival, until answered

    @property
    def token_ok(self) -> bool:
        return self.auth == "ok"

    @property
    def audio(self) -> bytes:
        return b"".join(self.chunks)

    def summary(self) -> dict[str, Any]:
        audio = self.audio
        return {
            "index": self.index,
            "session_id": self.session_id,
            "auth": self.auth,
            "auth_via": self.auth_via,
            "language": self.language,
            "targets": self.targets,
            "chunks": len(self.chunks),
            "audio_bytes": len(audio),
            "audio_sha256": hashlib.sha256(audio).hexdigest(),
            "messages_sent": len(self.sent),
            "end_of_stream": self.end_of_stream is not None,
            "faults": self.faults,
            "closed_code": self.closed_code,
            "closed_reason": self.closed_reason,
            "done": self.done,
            "finished": self.finished,
            "align": self.align,
            "variant": self.variant.to_dict() if self.variant else None,
            "searches": self.aligner.searches if self.aligner else 0,
            "reply_seconds": [round(x, 6) for x in self.reply_seconds],
        }


class _Closed(Exception):
    """The session ended on our side (error sent, fault fired): stop reading."""


class KwikmotionEmulator:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str = "secret-token",
        max_sessions: int = 100,
        reference_text: str = JFK_TEXT,
        reference_seconds: float = 11.0,
        languages: Sequence[str] = SUPPORTED_LANGUAGES,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 30.0,
        forbidden_tokens: Sequence[str] = (),
        extra_tokens: Sequence[str] = (),
        ssl_context: ssl.SSLContext | None = None,
        reference_audio: str | Path | None = None,
        align: str = "auto",
        variant: Variant | str | None = None,
        times: str | None = None,
        reorder: bool | None = None,
        empty_translations: str | None = None,
        sparse: bool | None = None,
        boundary: bool | None = None,
        extra_messages: bool | None = None,
        hold_seconds: float = HOLD_SECONDS,
    ) -> None:
        """``align``: "audio" recognises where in ``reference_audio`` each chunk is (as a real
        engine transcribes what it hears, so a session opened mid-speech gets the words of that
        audio); "time" replays ``reference_text`` spread over ``reference_seconds`` of the
        session's audio time, whatever the audio; "auto" is "audio" when there is reference audio.
        ``reference_audio`` defaults to the JFK sample when ``reference_text`` is its transcript.

        ``variant`` (a :class:`Variant` or a name of ``VARIANTS``) and the fields after it pick
        the reading of the seed the sessions play (``variants.py``; a field given overrides the
        variant's); ``hold_seconds``: held results go out when nothing arrived for that long."""
        if align not in ALIGN_MODES:
            raise ValueError(f"align must be one of {ALIGN_MODES}")
        if reference_audio is None and reference_text.split() == JFK_TEXT.split():
            reference_audio = JFK_FLAC
        if align == "audio" and reference_audio is None:
            raise ValueError("align='audio' needs reference_audio")
        self.reference_audio = Path(reference_audio) if reference_audio is not None else None
        self.align = "time" if align == "time" or self.reference_audio is None else "audio"
        self.ssl_context = ssl_context  # the seed's endpoint is wss://; tests mostly use ws://
        self.host, self.port = host, port
        self.tokens = {token, *extra_tokens}
        self.forbidden_tokens = set(forbidden_tokens)
        self.max_sessions = max_sessions
        self.script = p.ReferenceScript(reference_text, reference_seconds)
        self.languages = tuple(languages)
        self.ping_interval, self.ping_timeout = ping_interval, ping_timeout
        self.faults = Faults()
        self.variant = variant_from(
            variant,
            times=times,
            reorder=reorder,
            empty_translations=empty_translations,
            sparse=sparse,
            boundary=boundary,
            extra_messages=extra_messages,
        )
        self.hold_seconds = hold_seconds
        self.sessions: list[SessionRecord] = []
        self.active = 0  # authenticated sessions open now (the capacity count)
        self._server: Server | None = None
        self._last_id = 0
        self._silent: set[ServerConnection] = set()

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        if self.align == "audio":
            self._reference(16000)  # the seed's rate: decode it now, not in the first session
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._process_request,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
            max_size=MAX_CHUNK_BYTES,
            server_header=f"{BANNER}",
            ssl=self.ssl_context,
        )
        sock = next(iter(self._server.sockets))
        self.port = sock.getsockname()[1]
        log.info("%s listening on %s", BANNER, self.url)

    @property
    def url(self) -> str:
        return f"{'wss' if self.ssl_context else 'ws'}://{self.host}:{self.port}/"

    async def stop(self) -> None:
        if self._server is not None:
            for conn in list(self._silent):
                # A silent connection cannot complete a close handshake: cut it.
                if conn.transport is not None:
                    conn.transport.abort()
            self._server.close()
            await self._server.wait_closed()
            self._server = None
            log.info("%s stopped", BANNER)

    async def __aenter__(self) -> KwikmotionEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @contextlib.contextmanager
    def running_in_thread(self) -> Iterator[KwikmotionEmulator]:
        """Run the emulator on its own event loop in a background thread (for sync code)."""
        ready = threading.Event()
        state: dict[str, Any] = {}

        async def main() -> None:
            state["loop"] = asyncio.get_running_loop()
            state["stop"] = asyncio.Event()
            try:
                await self.start()
            except BaseException as exc:
                state["error"] = exc
                ready.set()
                raise
            ready.set()
            await state["stop"].wait()
            await self.stop()

        thread = threading.Thread(target=asyncio.run, args=(main(),), name="kwikmotion-emulator", daemon=True)
        thread.start()
        ready.wait(30)
        if "error" in state:
            thread.join(5)
            raise RuntimeError(f"{BANNER} failed to start") from state["error"]
        try:
            yield self
        finally:
            state["loop"].call_soon_threadsafe(state["stop"].set)
            thread.join(30)

    def reset(self) -> None:
        self.sessions.clear()
        self.faults.clear()

    def audio(self, session_index: int) -> bytes:
        """All audio session ``session_index`` received, in order."""
        return self.sessions[session_index].audio

    def started_sessions(self) -> list[SessionRecord]:
        """Sessions that got as far as a valid StartRecognition."""
        return [s for s in self.sessions if s.session_id is not None]

    # -- admin over HTTP (same port) --------------------------------------------------------

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path == "/healthz":
            return conn.respond(200, f"{BANNER} ok\n")
        if not url.path.startswith("/admin/"):
            return None  # a WebSocket handshake (websockets answers 426 to plain HTTP)
        method = request.method
        if url.path == "/admin/sessions" and method == "GET":
            return _json(conn, 200, {"emulator": BANNER, "sessions": [s.summary() for s in self.sessions]})
        if url.path == "/admin/faults" and method in ("GET", "POST"):
            if method == "POST":
                # websockets' HTTP parser takes no request body, hence query parameters.
                try:
                    self.faults.update(parse_fault_query(dict(parse_qsl(url.query, keep_blank_values=True))))
                except KeyError as exc:
                    return _json(conn, 400, {"error": f"unknown fault field {exc.args[0]!r}"})
                except ValueError as exc:
                    return _json(conn, 400, {"error": str(exc)})
                log.info("%s faults set: %s", BANNER, self.faults.to_dict())
            return _json(conn, 200, self.faults.to_dict())
        if url.path == "/admin/variant" and method in ("GET", "POST"):
            if method == "POST":
                try:
                    self.variant = parse_variant_query(dict(parse_qsl(url.query, keep_blank_values=True)), self.variant)
                except KeyError as exc:
                    return _json(conn, 400, {"error": f"unknown variant field {exc.args[0]!r}"})
                except ValueError as exc:
                    return _json(conn, 400, {"error": str(exc)})
                log.info("%s variant for new sessions: %s", BANNER, self.variant.describe())
            return _json(conn, 200, {**self.variant.to_dict(), "describe": self.variant.describe()})
        if (url.path, method) in (("/admin/faults", "DELETE"), ("/admin/faults/clear", "POST")):
            self.faults.clear()
            log.info("%s faults cleared", BANNER)
            return _json(conn, 200, self.faults.to_dict())
        if url.path == "/admin/reset" and method == "POST":
            self.reset()
            return _json(conn, 200, {"reset": True})
        return _json(conn, 404, {"error": "not found"})

    # -- one connection ---------------------------------------------------------------------

    async def _handle(self, conn: ServerConnection) -> None:
        rec = SessionRecord(index=len(self.sessions), remote=str(conn.remote_address))
        self.sessions.append(rec)
        counted = False
        try:
            await self._authenticate(conn, rec)
            if self.active >= self.max_sessions or self.faults.due("refuse_capacity"):
                if self.active < self.max_sessions:
                    rec.faults.append("refuse_capacity")
                await self._fail(conn, rec, *p.POLICY_VIOLATION, "Server at capacity (session limit)")
            self.active += 1
            counted = True
            config: p.StartConfig | None = None
            samples = 0
            loop = asyncio.get_running_loop()
            quiet_since = loop.time()
            while True:
                shaper = rec.shaper
                if shaper is not None and shaper.holding:
                    # Held results (variants) go out once nothing arrived for hold_seconds.
                    try:
                        async with asyncio.timeout_at(quiet_since + self.hold_seconds):
                            message = await conn.recv()  # websockets: cancelling recv() loses nothing
                    except TimeoutError:
                        await self._send_results(conn, rec, shaper.flush())
                        continue
                else:
                    message = await conn.recv()
                quiet_since = loop.time()
                if rec.faults and rec.faults[-1] == "silent":
                    if isinstance(message, bytes):
                        rec.chunks.append(message)
                    else:
                        rec.received.append(message)
                    continue
                if isinstance(message, bytes):
                    samples = await self._audio(conn, rec, config, message, samples)
                else:
                    rec.received.append(message)
                    config = await self._text(conn, rec, config, message)
        except _Closed:
            pass  # closed_code/closed_reason set where we closed
        except ConnectionClosed as exc:
            # The client's close frame, or 1006 when the TCP connection just ended.
            rec.closed_code = exc.rcvd.code if exc.rcvd else 1006
            rec.closed_reason = exc.rcvd.reason if exc.rcvd else ""
        finally:
            if counted:
                self.active -= 1
            self._silent.discard(conn)
            if rec.closed_code is None:  # the loop ended on the client's close frame
                rcvd = conn.protocol.close_rcvd
                rec.closed_code = rcvd.code if rcvd is not None else 1006
                rec.closed_reason = rcvd.reason if rcvd is not None else ""
            rec.finished = True
            log.info(
                "%s session %s closed (code %s, %d chunks)", BANNER, rec.session_id, rec.closed_code, len(rec.chunks)
            )

    async def _authenticate(self, conn: ServerConnection, rec: SessionRecord) -> None:
        """Seed: the token "is validated during the initial WebSocket handshake"; a failure is
        an Error message "immediately after connection", then the connection closes."""
        assert conn.request is not None
        query = dict(parse_qsl(urlsplit(conn.request.path).query))
        failure, token, rec.auth_via = p.check_authorization(
            conn.request.headers.get_all("Authorization"), query.get("token")
        )
        if failure is None and token in self.forbidden_tokens:
            failure = p.AUTH_FORBIDDEN
        elif failure is None and token not in self.tokens:
            failure = p.AUTH_EXPIRED
        refuse = self.faults.refuse_auth
        if failure is None and refuse is not None and self.faults.due("refuse_auth"):
            # A valid token refused on demand, with the seed's own payload for that status.
            failure = p.AUTH_EXPIRED if refuse == 401 else p.AUTH_FORBIDDEN
            rec.faults.append(f"refuse_auth_{refuse}")
        if failure is None:
            return
        rec.auth = failure
        payload, (close_code, close_reason) = p.AUTH_ERRORS[failure]
        log.info("%s refused a connection: authentication %s", BANNER, failure)
        await self._send(conn, rec, p.error_payload(payload["code"], payload["type"], payload["reason"],
                                                    payload.get("details")))  # fmt: skip
        rec.closed_code, rec.closed_reason = close_code, close_reason
        await conn.close(close_code, close_reason)
        raise _Closed

    async def _fail(self, conn: ServerConnection, rec: SessionRecord, code: int, type_: str, reason: str) -> None:
        """Send an Error and close with its code (seed error codes double as close codes)."""
        await self._send(conn, rec, p.error_payload(code, type_, reason))
        rec.closed_code, rec.closed_reason = code, type_
        await conn.close(code, type_)
        raise _Closed

    async def _send(self, conn: ServerConnection, rec: SessionRecord, text: str) -> None:
        rec.sent.append(json.loads(text))
        await conn.send(text)

    async def _delay(self) -> None:
        if self.faults.delay_seconds > 0:
            await asyncio.sleep(self.faults.delay_seconds)

    async def _text(
        self, conn: ServerConnection, rec: SessionRecord, config: p.StartConfig | None, text: str
    ) -> p.StartConfig | None:
        try:
            msg = json.loads(text)
        except ValueError:
            await self._fail(conn, rec, *p.INVALID_MESSAGE, "Malformed JSON message")
        if not isinstance(msg, dict) or not isinstance(msg.get("message"), str):
            await self._fail(conn, rec, *p.INVALID_MESSAGE, "Invalid message format: missing 'message' field")
        name = msg["message"]
        if name == "StartRecognition":
            if config is not None:
                await self._fail(conn, rec, *p.INVALID_MESSAGE, "StartRecognition already received")
            try:
                config = p.parse_start(msg, self.languages)
            except p.InvalidStart as exc:
                await self._fail(conn, rec, exc.code, exc.type, exc.reason)
            assert config is not None
            refused = self.faults.refused_language([config.language, *config.targets])
            if refused is not None:
                # On demand, exactly what an unsupported code gets (seed: 4004 invalid_model).
                rec.faults.append("refuse_language")
                await self._fail(conn, rec, *p.INVALID_MODEL, f"Unsupported language: {refused}")
            rec.start, rec.language, rec.targets = msg, config.language, config.targets
            rec.align = self.align
            if self.align == "audio":
                try:
                    rec.aligner = AudioAligner(self._reference(config.sample_rate))
                except Exception:  # e.g. a rate too low to hold the reference: replay by time
                    log.warning("%s: no reference audio at %d Hz, words by time", BANNER, config.sample_rate)
                    rec.align = "time"
            rec.session_id = self._session_id()
            rec.variant = self.variant
            rec.shaper = ResultShaper(self.variant, config.language, config.targets, config.sample_rate)
            await self._delay()
            await self._send(conn, rec, json.dumps({"message": "RecognitionStarted", "session_id": rec.session_id}))
            await self._send_results(conn, rec, rec.shaper.started())
            log.info("%s session %s started (%s → %s)", BANNER, rec.session_id, config.language, config.targets)
            return config
        if name == "EndOfStream":
            if config is None:
                await self._fail(conn, rec, *p.INVALID_MESSAGE, "EndOfStream before StartRecognition")
            if rec.end_of_stream is not None:
                await self._fail(conn, rec, *p.INVALID_MESSAGE, "EndOfStream already received")
            last = msg.get("last_seq_no")
            if not isinstance(last, int) or isinstance(last, bool):
                await self._fail(conn, rec, *p.INVALID_MESSAGE, "Missing required field: last_seq_no")
            if last != len(rec.chunks):
                # Seed: last_seq_no is the "Number of segments sent"; TCP delivered them all
                # before this message, so any other number is the client's accounting error.
                await self._fail(
                    conn,
                    rec,
                    *p.INVALID_MESSAGE,
                    f"last_seq_no {last} does not match {len(rec.chunks)} chunks received",
                )
            rec.end_of_stream = msg
            await self._delay()
            if rec.shaper is not None:
                await self._send_results(conn, rec, rec.shaper.flush())  # nothing held past the end
            await self._send(conn, rec, json.dumps({"message": "EndOfTranscript", "reason": "no_more_audio"}))
            rec.done = True
            return config
        await self._fail(conn, rec, *p.INVALID_MESSAGE, f"Unknown message type: {name[:40]}")
        return config

    async def _audio(
        self, conn: ServerConnection, rec: SessionRecord, config: p.StartConfig | None, chunk: bytes, samples: int
    ) -> int:
        taken = time.perf_counter()
        rec.chunks.append(chunk)
        if config is None:
            await self._fail(conn, rec, *p.INVALID_MESSAGE, "Audio received before StartRecognition")
        assert config is not None
        if rec.end_of_stream is not None:
            await self._fail(conn, rec, *p.INVALID_MESSAGE, "Audio received after EndOfStream")
        if not chunk or len(chunk) % config.width:
            await self._fail(conn, rec, *p.INVALID_MESSAGE, f"Invalid audio chunk: {len(chunk)} bytes")
        seq = len(rec.chunks) - 1
        start, end = samples, samples + len(chunk) // config.width
        if rec.aligner is not None:
            # The words heard in this chunk, wherever it sits in the reference.
            words = rec.aligner.feed(decode_pcm(chunk, config.encoding))
        else:
            words = self.script.words_between(start, end, config.sample_rate)
        await self._delay()
        # Seed: AudioAdded "after each audio chunk is received and queued for processing", then
        # the chunk's AddTranscript and "one [AddTranslation] per target language per transcript"
        # (when, and in what shape, is the variant's reading: variants.py).
        await self._send(conn, rec, json.dumps({"message": "AudioAdded", "seq_no": seq}))
        rec.taken_at[seq] = taken
        assert rec.shaper is not None
        await self._send_results(conn, rec, rec.shaper.chunk(seq, start, end, words))
        await self._chunk_faults(conn, rec)
        return end

    async def _send_results(self, conn: ServerConnection, rec: SessionRecord, messages: list[dict[str, Any]]) -> None:
        answered = []
        for msg in messages:
            await self._send(conn, rec, json.dumps(msg))
            if msg["message"] == "AddTranscript":
                answered.append(msg["metadata"]["chunk_index"])
        for index in answered:  # after the chunk's translations too
            taken = rec.taken_at.pop(index, None)
            if taken is not None:
                rec.reply_seconds.append(time.perf_counter() - taken)

    async def _chunk_faults(self, conn: ServerConnection, rec: SessionRecord) -> None:
        n = len(rec.chunks)
        if self.faults.due("drop_after_chunks", n):
            rec.faults.append("drop")
            log.info("%s fault: dropping session %s after %d chunks", BANNER, rec.session_id, n)
            assert conn.transport is not None
            rec.closed_code = 1006
            conn.transport.abort()  # no close frame: what a crashed server or a cut cable looks like
            raise _Closed
        if self.faults.due("error_1011_after_chunks", n):
            rec.faults.append("error_1011")
            log.info("%s fault: internal error in session %s after %d chunks", BANNER, rec.session_id, n)
            await self._fail(conn, rec, *p.INTERNAL_ERROR, "Server processing error")
        if self.faults.due("silent_after_chunks", n):
            rec.faults.append("silent")
            log.info("%s fault: session %s goes silent after %d chunks", BANNER, rec.session_id, n)
            self._silent.add(conn)
            _silence(conn)

    def _reference(self, rate: int) -> ReferenceAudio:
        assert self.reference_audio is not None
        return reference_audio(str(self.reference_audio), rate, tuple(self.script.words))

    def _session_id(self) -> str:
        # The seed's shape, "session_<epoch ms>", kept unique within this emulator.
        ms = max(int(time.time() * 1000), self._last_id + 1)
        self._last_id = ms
        return f"session_{ms}"


def _silence(conn: ServerConnection) -> None:
    """Stop every outgoing byte (replies, pongs, pings, close frames) while still reading, so
    the client sees a peer that went quiet, and the handler still ends when the client leaves."""
    transport = conn.transport
    assert transport is not None
    transport.write = lambda data: None  # type: ignore[method-assign]
    transport.writelines = lambda data: None  # type: ignore[method-assign]
    transport.write_eof = lambda: None  # type: ignore[method-assign]
    keepalive = getattr(conn, "keepalive_task", None)  # websockets' own pinger: stop it too
    if keepalive is not None:
        keepalive.cancel()


def _json(conn: ServerConnection, status: int, body: Any) -> Response:
    response = conn.respond(status, json.dumps(body) + "\n")
    del response.headers["Content-Type"]  # Headers is multi-valued: replace, do not add
    response.headers["Content-Type"] = "application/json"
    return response
