"""The publishing side of an RTMP connection, sans-I/O (docs/design.md section 3): the load
generator's client (bench/loadgen.py), the counterpart of ``ServerConnection``.

``ClientConnection`` says what a publisher says, in the order ffmpeg's rtmpproto.c says it: C0
C1, then C2 (an echo of S1) and ``connect``; on its ``_result`` ``releaseStream``, ``FCPublish``
and ``createStream``; on that ``_result`` ``publish``; then waits for the ``onStatus``. It answers
what a server asks of a publisher (pings, acknowledgements) and, as ffmpeg does, adopts the
server's Set Chunk Size for what it sends (echoing it), unless told to set its own. Every answer
is an event: ``PublishStarted``, or ``Refused`` (an ``_error`` or an ``error``-level onStatus:
what the server said, at which step), so a driver reports a refused publish instead of waiting.

Media goes out through a ``MediaChunker`` made for the connection once the publish started (its
chunk size and stream id): a chunk writer of its own on chunk stream ids the connection never
uses otherwise, so its header compression depends only on the media. That is what lets a load
generator chunk a file once and send the same bytes on every connection that agreed the same
chunk size and stream id (``chunk_media``). No sockets, no clocks.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from shared.rtmp import amf0
from shared.rtmp.chunks import (
    ACKNOWLEDGEMENT,
    AUDIO,
    COMMAND_AMF0,
    DATA_AMF0,
    DEFAULT_CHUNK_SIZE,
    SET_CHUNK_SIZE,
    USER_CONTROL,
    VIDEO,
    WINDOW_ACK_SIZE,
    ChunkReader,
    ChunkWriter,
    Limits,
)
from shared.rtmp.errors import ProtocolError
from shared.rtmp.handshake import PACKET, VERSION
from shared.rtmp.server import PING_REQUEST, PING_RESPONSE

# Chunk stream ids. Control must be 2 (RTMP 1.0 section 5.4); commands and media follow ffmpeg's
# habit of one chunk stream per kind. The media ids belong to the MediaChunker alone.
CSID_CONTROL, CSID_COMMAND, CSID_STREAM = 2, 3, 8
CSID_AUDIO, CSID_VIDEO, CSID_DATA = 4, 6, 5
_MEDIA_CSID = {AUDIO: CSID_AUDIO, VIDEO: CSID_VIDEO, DATA_AMF0: CSID_DATA}

# Transaction ids of the publish sequence (ffmpeg numbers them the same way).
_CONNECT, _RELEASE, _FCPUBLISH, _CREATE, _PUBLISH = 1.0, 2.0, 3.0, 4.0, 5.0

# What a server may make a publisher hold: its answers are a few hundred bytes each.
SERVER_LIMITS = Limits(max_message_size=1 << 20, max_buffered_bytes=2 << 20)


# --- events ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PublishStarted:
    stream_id: int
    description: str


@dataclass(frozen=True, slots=True)
class Refused:
    """The server said no: ``stage`` is the command it answered (connect, createStream, publish)."""

    stage: str
    code: str
    description: str


@dataclass(frozen=True, slots=True)
class Status:
    """An onStatus after the publish started (e.g. the server ending it: NetStream.Unpublish.*)."""

    level: str
    code: str
    description: str


ClientEvent = PublishStarted | Refused | Status


def split_url(url: str) -> tuple[str, str, int, str, str]:
    """``rtmp://host[:port]/app/key`` → (scheme, host, port, app, key). The key is the last path
    segment and the app what comes before it (``<mediaUrl>/<mediaKey>``, docs/design.md section 2);
    ffmpeg splits a two-segment path the same way."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("rtmp", "rtmps"):
        raise ValueError("an rtmp:// or rtmps:// URL is expected")
    hostport, _, path = rest.partition("/")
    app, _, key = path.rpartition("/")
    if not app or not key:
        raise ValueError("the URL needs an app and a stream key: rtmp://host[:port]/app/key")
    host, _, port = hostport.rpartition(":") if hostport.count(":") == 1 else (hostport, "", "")
    return scheme, host or hostport, int(port) if port else (443 if scheme == "rtmps" else 1935), app, key


class ClientConnection:
    """States: handshake → connecting → creating → publishing (requested) → publishing | refused."""

    def __init__(
        self,
        app: str,
        key: str,
        *,
        tc_url: str = "",
        chunk_size: int | None = None,
        flash_ver: str = "FMLE/3.0 (compatible; reachlive loadgen)",
        epoch_ms: int = 0,
        random: bytes | None = None,
    ) -> None:
        self.app, self.key, self.tc_url, self.flash_ver = app, key, tc_url, flash_ver
        self.state = "handshake"
        self._own_chunk_size = chunk_size  # None: adopt the server's, as ffmpeg does
        self.chunk_size = DEFAULT_CHUNK_SIZE  # of what we send
        self.stream_id = 0
        self._reader = ChunkReader(SERVER_LIMITS)
        self._writer = ChunkWriter()
        self._hs = bytearray()
        self._out = bytearray((VERSION,))
        self._out += struct.pack(">II", epoch_ms & 0xFFFFFFFF, 0) + (random or os.urandom(PACKET - 8))
        self.bytes_received = 0
        self._window = 0  # the server's Window Acknowledgement Size: we acknowledge per window
        self._last_ack = 0

    # --- input ------------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> list[ClientEvent]:
        """Feed the server's bytes; returns the events they complete (raises ProtocolError)."""
        self.bytes_received += len(data)
        if self.state == "handshake":
            self._hs += data
            if len(self._hs) < 1 + 2 * PACKET:
                return []
            if self._hs[0] != VERSION:
                raise ProtocolError("handshake", f"server answered RTMP version {self._hs[0]}")
            s1 = bytes(self._hs[1 : 1 + PACKET])
            data = bytes(self._hs[1 + 2 * PACKET :])
            self._hs.clear()
            self._out += s1  # C2: the echo of S1
            self.state = "connecting"
            if self._own_chunk_size is not None:
                self._set_chunk_size(self._own_chunk_size)
            self._command(
                0,
                "connect",
                _CONNECT,
                {
                    "app": self.app,
                    "type": "nonprivate",
                    "flashVer": self.flash_ver,
                    "tcUrl": self.tc_url,
                },
            )
        events: list[ClientEvent] = []
        if data:
            self._reader.feed(data)
        while (msg := self._reader.next_message()) is not None:
            t, payload = msg.type_id, msg.payload
            if t == SET_CHUNK_SIZE:
                size = _u32(payload, "Set Chunk Size") & 0x7FFFFFFF
                self._reader.set_chunk_size(size)
                if self._own_chunk_size is None and size != self.chunk_size:
                    self._set_chunk_size(size)
            elif t == WINDOW_ACK_SIZE:
                self._window = max(_u32(payload, "Window Acknowledgement Size"), 4096)
            elif t == USER_CONTROL and len(payload) >= 6 and struct.unpack_from(">H", payload)[0] == PING_REQUEST:
                self._control(USER_CONTROL, struct.pack(">H", PING_RESPONSE) + payload[2:6])
            elif t == COMMAND_AMF0:
                self._answer(amf0.decode_all(payload), events)
        if self._window and self.bytes_received - self._last_ack >= self._window:
            self._last_ack = self.bytes_received
            self._control(ACKNOWLEDGEMENT, struct.pack(">I", self.bytes_received & 0xFFFFFFFF))
        return events

    def _answer(self, values: list[Any], events: list[ClientEvent]) -> None:
        if len(values) < 2 or not isinstance(values[0], str):
            return
        name, txn = values[0], values[1]
        info = values[3] if len(values) > 3 and isinstance(values[3], dict) else {}
        if name in ("_result", "_error"):
            if txn == _CONNECT and self.state == "connecting":
                if name == "_error":
                    self._refuse("connect", info, events)
                    return
                self.state = "creating"
                self._command(0, "releaseStream", _RELEASE, None, self.key)
                self._command(0, "FCPublish", _FCPUBLISH, None, self.key)
                self._command(0, "createStream", _CREATE, None)
            elif txn == _CREATE and self.state == "creating":
                sid = values[3] if len(values) > 3 else None
                if name == "_error" or not isinstance(sid, float) or not 0 < sid < 2**32:
                    self._refuse("createStream", info, events)
                    return
                self.stream_id = int(sid)
                self.state = "requested"
                self._command(self.stream_id, "publish", _PUBLISH, None, self.key, "live")
            # releaseStream / FCPublish answers (either kind) change nothing, as for ffmpeg.
        elif name == "onStatus":
            level, code = str(info.get("level", "")), str(info.get("code", ""))
            description = str(info.get("description", ""))
            if self.state == "requested":
                if level == "error" or not code.startswith("NetStream.Publish.Start"):
                    if level == "error":
                        self._refuse("publish", info, events)
                    return  # other statuses before Start (e.g. an onFCPublish notice): wait on
                self.state = "publishing"
                events.append(PublishStarted(self.stream_id, description))
            elif self.state == "publishing":
                events.append(Status(level, code, description))

    def _refuse(self, stage: str, info: dict[str, Any], events: list[ClientEvent]) -> None:
        self.state = "refused"
        events.append(Refused(stage, str(info.get("code", "")), str(info.get("description", ""))))

    # --- output -----------------------------------------------------------------------------
    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def media_chunker(self) -> MediaChunker:
        """A chunker of this connection's media (once the publish started)."""
        if self.state != "publishing":
            raise RuntimeError("media before the publish started")
        return MediaChunker(self.chunk_size, self.stream_id)

    def unpublish(self) -> None:
        """The end of a publish as ffmpeg ends it: FCUnpublish, deleteStream (then close)."""
        if self.stream_id:
            self._command(0, "FCUnpublish", 6.0, None, self.key)
            self._command(0, "deleteStream", 7.0, None, float(self.stream_id))
        self.state = "closed"

    def _set_chunk_size(self, size: int) -> None:
        self._control(SET_CHUNK_SIZE, struct.pack(">I", size))
        self.chunk_size = self._writer.chunk_size = size

    def _control(self, type_id: int, payload: bytes) -> None:
        self._out += self._writer.write(CSID_CONTROL, type_id, 0, 0, payload)

    def _command(self, stream_id: int, *values: Any) -> None:
        csid = CSID_COMMAND if stream_id == 0 else CSID_STREAM
        self._out += self._writer.write(csid, COMMAND_AMF0, stream_id, 0, amf0.encode(*values))


class MediaChunker:
    """Chunks a publish's audio, video and data messages (each kind on its own chunk stream)."""

    def __init__(self, chunk_size: int, stream_id: int) -> None:
        self.stream_id = stream_id
        self._writer = ChunkWriter(chunk_size)

    def chunk(self, type_id: int, timestamp: int, payload: bytes) -> bytes:
        return self._writer.write(_MEDIA_CSID[type_id], type_id, self.stream_id, timestamp, payload)


def chunk_media(messages: Iterable[tuple[int, int, bytes]], chunk_size: int, stream_id: int) -> tuple[bytes, list[int]]:
    """(type id, timestamp ms, payload) messages chunked as one ``MediaChunker`` sends them: the
    bytes, and the offset in them where each message ends."""
    chunker = MediaChunker(chunk_size, stream_id)
    out = bytearray()
    ends = []
    for type_id, timestamp, payload in messages:
        out += chunker.chunk(type_id, timestamp, payload)
        ends.append(len(out))
    return bytes(out), ends


def _u32(payload: bytes, what: str) -> int:
    if len(payload) < 4:
        raise ProtocolError("control", f"{what} message of {len(payload)} bytes")
    return struct.unpack_from(">I", payload)[0]
