"""The server side of an RTMP publishing connection, sans-I/O (docs/design.md sections 3 and 8).

``ServerConnection.receive_data(bytes)`` returns events; ``data_to_send()`` returns the bytes
to write. It answers the protocol itself (handshake, acknowledgements, pings, connect,
releaseStream, FCPublish, createStream) and leaves the one decision that needs the outside
world, whether a publish is allowed, to the driver: ``PublishRequested`` →
``accept_publish`` / ``reject_publish``. No sockets, no clocks: times are passed in.

Until a publish is accepted the peer has proven nothing, and the chunk reader holds it to
``prepublish_limits`` (small messages, a chunk size honoured only up to them, no audio or video);
the normal ``limits`` apply from the accepted publish on.

Answers follow what publishers (ffmpeg's rtmpproto.c, OBS via librtmp) expect from
FMS/Wowza/nginx-rtmp: Window Acknowledgement Size, Set Peer Bandwidth and Set Chunk Size
before the connect ``_result``; StreamBegin and ``onStatus NetStream.Publish.Start`` (or an
``error``-level ``onStatus`` such as ``NetStream.Publish.BadName``) for publish.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from shared.rtmp import amf0
from shared.rtmp.chunks import (
    ABORT,
    ACKNOWLEDGEMENT,
    AGGREGATE,
    AUDIO,
    COMMAND_AMF0,
    COMMAND_AMF3,
    DATA_AMF0,
    DATA_AMF3,
    PREPUBLISH,
    SET_CHUNK_SIZE,
    SET_PEER_BANDWIDTH,
    USER_CONTROL,
    VIDEO,
    WINDOW_ACK_SIZE,
    ChunkReader,
    ChunkWriter,
    Limits,
    Message,
)
from shared.rtmp.errors import ProtocolError
from shared.rtmp.flv import split_aggregate
from shared.rtmp.handshake import ServerHandshake

# User control event types (RTMP 1.0 section 7.1.7).
STREAM_BEGIN, STREAM_EOF, SET_BUFFER_LENGTH, PING_REQUEST, PING_RESPONSE = 0, 1, 3, 6, 7

# Chunk stream ids we send on: protocol control must use 2 (section 5.4); the rest follow
# common practice (3 for connection commands, 5 for stream status).
CSID_CONTROL, CSID_COMMAND, CSID_STATUS = 2, 3, 5

_AV = frozenset((AUDIO, VIDEO))
MIN_ACK_WINDOW = 4096  # a tiny window would make us acknowledge every few bytes
MAX_STREAMS = 8  # createStream calls per connection


# --- events ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Connected:
    app: str
    tc_url: str
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PublishRequested:
    stream_id: int
    name: str  # the stream key as sent (may carry a ?query)
    publish_type: str


@dataclass(frozen=True, slots=True)
class Metadata:
    stream_id: int
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class MediaMessage:
    """An audio (type 8) or video (type 9) message; aggregates are already split."""

    stream_id: int
    type_id: int
    timestamp: int  # 32-bit ms as on the wire
    payload: bytes


@dataclass(frozen=True, slots=True)
class Unpublished:
    stream_id: int
    command: str  # FCUnpublish | deleteStream | closeStream


@dataclass(frozen=True, slots=True)
class PingResponse:
    timestamp: int


Event = Connected | PublishRequested | Metadata | MediaMessage | Unpublished | PingResponse


def _u32(payload: bytes, what: str) -> int:
    if len(payload) < 4:
        raise ProtocolError("control", f"{what} message of {len(payload)} bytes")
    return struct.unpack_from(">I", payload)[0]


class ServerConnection:
    def __init__(
        self,
        *,
        limits: Limits | None = None,
        prepublish_limits: Limits | None = None,
        chunk_size: int = 4096,
        window_ack_size: int = 2_500_000,
        epoch_ms: int = 0,
        handshake_random: bytes | None = None,
    ) -> None:
        self.limits = limits or Limits()
        pre = prepublish_limits or PREPUBLISH
        # Never looser than the normal limits (the reader only ever widens its limits; a count of
        # messages applies before the publish only).
        self.prepublish_limits = Limits(
            max_chunk_size=min(pre.max_chunk_size, self.limits.max_chunk_size),
            max_message_size=min(pre.max_message_size, self.limits.max_message_size),
            max_control_size=min(pre.max_control_size, self.limits.max_control_size),
            max_buffered_bytes=min(pre.max_buffered_bytes, self.limits.max_buffered_bytes),
            max_chunk_streams=min(pre.max_chunk_streams, self.limits.max_chunk_streams),
            media=pre.media and self.limits.media,
            max_messages=pre.max_messages,
            skip=pre.skip | self.limits.skip,
        )
        self._handshake = ServerHandshake(epoch_ms, handshake_random)
        self._reader = ChunkReader(self.prepublish_limits)
        self._writer = ChunkWriter()
        self._out = bytearray()
        self._chunk_size = chunk_size
        self._window = window_ack_size
        self.app: str | None = None
        self.tc_url = ""
        self.peer_window = 0  # the peer's Window Acknowledgement Size: we acknowledge per window
        self.bytes_received = 0
        self._last_ack = 0
        self.streams: set[int] = set()
        self._next_stream = 1
        self.publishing: dict[int, str] = {}  # stream id → name, once accepted
        self._requested: dict[int, tuple[float, str]] = {}  # stream id → (transaction, name)
        self.closed = False

    # --- input ------------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes; returns the events they complete.

        Parsing pauses after a ``PublishRequested`` until the driver calls ``accept_publish`` or
        ``reject_publish``, so what follows the publish (media, FCUnpublish) is read knowing the
        decision; the driver then calls ``receive_data(b"")`` to go on with buffered bytes.
        """
        if self.closed:
            return []
        self.bytes_received += len(data)
        events: list[Event] = []
        if not self._handshake.done:
            out, data = self._handshake.feed(data)
            self._out += out
            if not self._handshake.done:
                return events
        if data:
            self._reader.feed(data)
        while not self._requested and (msg := self._reader.next_message()) is not None:
            self._handle(msg, events)
        self._maybe_ack()
        return events

    @property
    def held_bytes(self) -> int:
        """What the peer's input holds here: bytes not parsed yet and partly received messages."""
        return self._reader.pending_bytes + self._reader.buffered_bytes

    def _maybe_ack(self) -> None:
        # Section 5.4.3: acknowledge after receiving a window's worth of bytes.
        if self.peer_window and self.bytes_received - self._last_ack >= self.peer_window:
            self._last_ack = self.bytes_received
            self._control(ACKNOWLEDGEMENT, struct.pack(">I", self.bytes_received & 0xFFFFFFFF))

    def _handle(self, msg: Message, events: list[Event]) -> None:
        t = msg.type_id
        if t in (AUDIO, VIDEO):
            if msg.stream_id in self.publishing:
                events.append(MediaMessage(msg.stream_id, t, msg.timestamp, msg.payload))
            return
        if t == AGGREGATE:
            if msg.stream_id in self.publishing:
                # Sub-messages of a type the limits skip are not copied out (the ingest: video).
                wanted = _AV - self._reader.limits.skip
                for sub_type, ts, body in split_aggregate(msg.payload, msg.timestamp, wanted):
                    events.append(MediaMessage(msg.stream_id, sub_type, ts, body))
            return
        if len(msg.payload) > self._reader.limits.max_control_size:
            raise ProtocolError("message_size", f"type {t} message of {len(msg.payload)} bytes")
        if t == SET_CHUNK_SIZE:
            size = _u32(msg.payload, "Set Chunk Size")
            if size & 0x80000000:
                raise ProtocolError("chunk_size", "Set Chunk Size with the top bit set")
            self._reader.set_chunk_size(size)
        elif t == ABORT:
            self._reader.abort(_u32(msg.payload, "Abort"))
        elif t == ACKNOWLEDGEMENT:
            _u32(msg.payload, "Acknowledgement")
        elif t == WINDOW_ACK_SIZE:
            size = _u32(msg.payload, "Window Acknowledgement Size")
            if size == 0 or size & 0x80000000:
                raise ProtocolError("control", f"Window Acknowledgement Size {size}")
            self.peer_window = max(size, MIN_ACK_WINDOW)
        elif t == SET_PEER_BANDWIDTH:
            if len(msg.payload) < 5:
                raise ProtocolError("control", "short Set Peer Bandwidth")
        elif t == USER_CONTROL:
            self._user_control(msg.payload, events)
        elif t in (COMMAND_AMF0, COMMAND_AMF3):
            body = msg.payload[1:] if t == COMMAND_AMF3 and msg.payload[:1] == b"\x00" else msg.payload
            self._command(msg.stream_id, amf0.decode_all(body), events)
        elif t in (DATA_AMF0, DATA_AMF3):
            body = msg.payload[1:] if t == DATA_AMF3 and msg.payload[:1] == b"\x00" else msg.payload
            self._data(msg.stream_id, amf0.decode_all(body), events)
        # Shared objects and unknown types are ignored: publishers do not need them.

    def _user_control(self, payload: bytes, events: list[Event]) -> None:
        if len(payload) < 2:
            raise ProtocolError("control", "short user control message")
        kind = struct.unpack_from(">H", payload)[0]
        if kind == PING_REQUEST:
            self._control(USER_CONTROL, struct.pack(">HI", PING_RESPONSE, _u32(payload[2:], "ping")))
        elif kind == PING_RESPONSE:
            events.append(PingResponse(_u32(payload[2:], "ping response")))

    def _data(self, stream_id: int, values: list[Any], events: list[Event]) -> None:
        if values and values[0] == "@setDataFrame":
            values = values[1:]
        if len(values) >= 2 and values[0] == "onMetaData":
            meta = values[1].items if isinstance(values[1], amf0.EcmaArray) else values[1]
            if isinstance(meta, dict):
                events.append(Metadata(stream_id, meta))

    def _command(self, stream_id: int, values: list[Any], events: list[Event]) -> None:
        if len(values) < 2 or not isinstance(values[0], str) or not isinstance(values[1], float):
            raise ProtocolError("command", "command without a name and transaction id")
        name, txn = values[0], values[1]
        args = values[3:] if len(values) > 3 else []
        if name == "connect":
            if self.app is not None:
                raise ProtocolError("command", "second connect")
            props = values[2] if len(values) > 2 and isinstance(values[2], dict) else {}
            app = props.get("app")
            if not isinstance(app, str):
                raise ProtocolError("command", "connect without an app")
            self.app = app
            self.tc_url = props.get("tcUrl") if isinstance(props.get("tcUrl"), str) else ""
            encoding = props.get("objectEncoding", 0.0)
            self._control(WINDOW_ACK_SIZE, struct.pack(">I", self._window))
            self._control(SET_PEER_BANDWIDTH, struct.pack(">IB", self._window, 2))
            self._control(SET_CHUNK_SIZE, struct.pack(">I", self._chunk_size))
            self._writer.chunk_size = self._chunk_size
            self._invoke(
                0,
                "_result",
                txn,
                {"fmsVer": "FMS/3,5,7,7009", "capabilities": 31.0},
                {
                    "level": "status",
                    "code": "NetConnection.Connect.Success",
                    "description": "Connection succeeded.",
                    "objectEncoding": encoding if isinstance(encoding, float) else 0.0,
                },
            )
            events.append(Connected(app, self.tc_url, {k: v for k, v in props.items() if isinstance(v, str | float)}))
            return
        if self.app is None:
            raise ProtocolError("command", f"{name} before connect")
        if name in ("releaseStream", "FCPublish"):
            if txn:
                self._invoke(0, "_result", txn, None, amf0.UNDEFINED_VALUE)
        elif name == "createStream":
            if len(self.streams) >= MAX_STREAMS:
                raise ProtocolError("command", "too many streams")
            sid = self._next_stream
            self._next_stream += 1
            self.streams.add(sid)
            self._invoke(0, "_result", txn, None, float(sid))
        elif name == "publish":
            if stream_id not in self.streams:
                raise ProtocolError("command", f"publish on stream {stream_id} that was not created")
            if stream_id in self._requested or stream_id in self.publishing:
                raise ProtocolError("command", "second publish on one stream")
            key = args[0] if args and isinstance(args[0], str) else ""
            kind = args[1] if len(args) > 1 and isinstance(args[1], str) else "live"
            self._requested[stream_id] = (txn, key)
            events.append(PublishRequested(stream_id, key, kind))
        elif name in ("FCUnpublish", "closeStream"):
            sid = stream_id if name == "closeStream" else self._stream_named(args)
            if sid is not None and sid in self.publishing:
                self.publishing.pop(sid)
                events.append(Unpublished(sid, name))
        elif name == "deleteStream":
            sid = int(args[0]) if args and isinstance(args[0], float) and 0 < args[0] < 2**32 else stream_id
            self.streams.discard(sid)
            if sid in self.publishing:
                self.publishing.pop(sid)
                events.append(Unpublished(sid, name))
        # Other commands (getStreamLength, _checkbw, ...) need no answer from a publish server.

    def _stream_named(self, args: list[Any]) -> int | None:
        name = args[0] if args and isinstance(args[0], str) else None
        for sid, published in self.publishing.items():
            if name is None or published == name:
                return sid
        return None

    # --- decisions of the driver ------------------------------------------------------------
    def accept_publish(self, stream_id: int, description: str = "Publishing.") -> None:
        _txn, name = self._requested.pop(stream_id)
        self.publishing[stream_id] = name
        # The peer holds a valid key now: media, and the normal limits, from the next message on.
        self._reader.limits = self.limits
        self._control(USER_CONTROL, struct.pack(">HI", STREAM_BEGIN, stream_id))
        self._status(stream_id, "status", "NetStream.Publish.Start", description)

    def reject_publish(self, stream_id: int, description: str, code: str = "NetStream.Publish.BadName") -> None:
        """Refuse a publish; the driver closes the connection after sending (docs/design.md section 3)."""
        self._requested.pop(stream_id, None)
        self._status(stream_id, "error", code, description)
        self.closed = True

    def stop_publish(self, stream_id: int, description: str, code: str = "NetStream.Unpublish.Success") -> None:
        """End a publish from our side (task revoked, window over); the driver then closes."""
        self.publishing.pop(stream_id, None)
        self._status(stream_id, "error" if "Unpublish" not in code else "status", code, description)
        self.closed = True

    def ping(self, timestamp_ms: int) -> None:
        """Send a ping request (user control 6); a live peer answers with a PingResponse event."""
        self._control(USER_CONTROL, struct.pack(">HI", PING_REQUEST, timestamp_ms & 0xFFFFFFFF))

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    # --- output helpers ---------------------------------------------------------------------
    def _control(self, type_id: int, payload: bytes) -> None:
        self._out += self._writer.write(CSID_CONTROL, type_id, 0, 0, payload)

    def _invoke(self, stream_id: int, *values: Any) -> None:
        csid = CSID_COMMAND if stream_id == 0 else CSID_STATUS
        self._out += self._writer.write(csid, COMMAND_AMF0, stream_id, 0, amf0.encode(*values))

    def _status(self, stream_id: int, level: str, code: str, description: str) -> None:
        self._invoke(stream_id, "onStatus", 0.0, None, {"level": level, "code": code, "description": description})
