"""RTMP chunk streams (Adobe RTMP 1.0 section 5.3): demultiplexing chunks into messages, and
chunking messages for sending.

The reader handles the four chunk header types, 1-3 byte basic headers, extended timestamps
(including on type-3 continuation chunks, which ffmpeg and the spec's errata send, and which
old Flash peers omit: we skip them only when they repeat the header's value), 32-bit
timestamp arithmetic that wraps, Abort, and a chunk size changed between chunks. Every
length is bounded by ``Limits`` before anything is allocated, and the limits can be changed
between messages (a server holds an unauthenticated peer to much smaller ones: ``PREPUBLISH``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from shared.rtmp.errors import ProtocolError

# Message type ids (RTMP 1.0 sections 5.4, 6.2, 7.1).
SET_CHUNK_SIZE, ABORT, ACKNOWLEDGEMENT, USER_CONTROL = 1, 2, 3, 4
WINDOW_ACK_SIZE, SET_PEER_BANDWIDTH = 5, 6
AUDIO, VIDEO = 8, 9
DATA_AMF3, SHARED_OBJECT_AMF3, COMMAND_AMF3 = 15, 16, 17
DATA_AMF0, SHARED_OBJECT_AMF0, COMMAND_AMF0 = 18, 19, 20
AGGREGATE = 22
_MEDIA = frozenset((AUDIO, VIDEO, AGGREGATE))

DEFAULT_CHUNK_SIZE = 128  # section 5.4.1: until a Set Chunk Size, chunks carry 128 bytes
EXTENDED = 0xFFFFFF
_MASK32 = 0xFFFFFFFF
_HEADER_LEN = (11, 7, 3, 0)


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what a peer may make us hold (a hostile peer must not allocate without bound).

    A Set Chunk Size above ``max_chunk_size`` is refused; one up to it is honoured only up to
    ``max_message_size``: no chunk is larger than its message (RTMP 1.0 section 5.4.1), and a
    longer message is refused at its header, so a larger chunk size parses every acceptable
    message exactly alike, and the bytes waiting for a chunk to complete stay within the limit.
    """

    max_chunk_size: int = 1 << 24  # 16 MiB: far above any real encoder (ffmpeg 4096, OBS 4096)
    max_message_size: int = 8 << 20  # a 3 Mbps keyframe is well under 1 MiB
    max_control_size: int = 64 << 10  # commands, metadata, user control
    max_buffered_bytes: int = 16 << 20  # all partial messages of one connection together
    max_chunk_streams: int = 64  # distinct chunk stream ids with state
    media: bool = True  # audio, video and aggregate messages; False: skipped as they arrive, never held
    max_messages: int = 0  # messages of the connection so far (0: no limit)
    # Message type ids the reader's owner has no use for (the ingest: video): skipped as they
    # arrive like media before a publish, their bodies never copied nor held (issue 22).
    skip: frozenset[int] = frozenset()

    def skipped(self) -> frozenset[int]:
        """Every message type skipped under these limits."""
        return self.skip if self.media else self.skip | _MEDIA


# Before a publish is accepted the peer is unauthenticated: what it may send then (handshake,
# connect, releaseStream, FCPublish, createStream, publish: each a few hundred bytes, a dozen
# messages with the control ones) needs no more than this, and no media (skipped unheld). 20
# peers that set a 4 MiB chunk size and each sent most of an 8 MiB message took an ingest from
# 75 to 482 MiB under the normal limits (issue 19); under these a peer holds at most two such
# messages' worth. The count of messages bounds the work (and the answers: pings) an
# unauthenticated peer gets out of us.
PREPUBLISH_MESSAGE_SIZE = 16 << 10
PREPUBLISH_MESSAGES = 256


def prepublish_limits(
    max_message_size: int = PREPUBLISH_MESSAGE_SIZE, max_messages: int = PREPUBLISH_MESSAGES
) -> Limits:
    """The limits before a publish is accepted (a driver's settings)."""
    return Limits(
        max_message_size=max_message_size,
        max_control_size=min(max_message_size, 64 << 10),
        max_buffered_bytes=2 * max_message_size,
        max_chunk_streams=16,
        media=False,
        max_messages=max_messages,
    )


PREPUBLISH = prepublish_limits()


@dataclass(frozen=True, slots=True)
class Message:
    csid: int
    type_id: int
    stream_id: int
    timestamp: int  # 32-bit milliseconds, as on the wire (wraps)
    payload: bytes


class _Stream:
    """Per chunk stream id: the last header (for header compression) and a message in progress."""

    __slots__ = (
        "active",
        "delta",
        "ext_value",
        "extended",
        "got",
        "length",
        "partial",
        "skip",
        "stream_id",
        "timestamp",
        "type_id",
    )

    def __init__(self) -> None:
        self.timestamp = 0
        self.delta = 0  # the timestamp field of the last header: what a type-3 new message adds
        self.length = 0
        self.type_id = 0
        self.stream_id = 0
        self.extended = False
        self.ext_value = 0
        self.active = False  # a message is in progress (its next chunk is a continuation)
        self.partial: bytearray | None = None  # the kept message in progress, past its first chunk
        self.got = 0  # bytes of the message in progress received (or skipped) so far
        self.skip = False  # the message in progress is skipped, not held (Limits.skipped)


class ChunkReader:
    """Fed raw bytes (after the handshake), yields complete messages one at a time.

    ``next_message`` returns one message or None when more bytes are needed; the caller applies
    Set Chunk Size / Abort before asking for the next, because they change how the following
    chunks parse.

    The read path does the least per byte (issue 22): the input is one bytearray consumed from
    an offset; a message in one chunk is copied once, out of it; a longer one is gathered in a
    bytearray from views of it, copied once more when complete; a skipped message (video the
    owner has no use for, media before a publish) is never copied: each of its chunks is dropped
    once its header is parsed, the part of its body not received yet as it arrives (``feed``).
    """

    def __init__(self, limits: Limits | None = None) -> None:
        self._limits = limits or Limits()
        self._skipped = self._limits.skipped()
        self.declared_chunk_size = DEFAULT_CHUNK_SIZE  # the peer's last Set Chunk Size
        # What parsing uses: the declared size, honoured up to the message size limit (equivalent
        # for every message we accept, see ``Limits``).
        self.chunk_size = min(DEFAULT_CHUNK_SIZE, self._limits.max_message_size)
        self._buf = bytearray()
        self._pos = 0
        # A view of _buf while parsing copies out of it; released before _buf changes size.
        self._view: memoryview | None = None
        # Body bytes of a skipped chunk not received yet: the next bytes fed are dropped.
        self._skip_left = 0
        self._streams: dict[int, _Stream] = {}
        self._buffered = 0
        self.messages = 0  # complete messages read (skipped ones too)

    def feed(self, data: bytes) -> None:
        if self._view is not None:
            self._view.release()
            self._view = None
        if self._skip_left and data:
            # The rest of a skipped chunk: dropped here, never appended (_buf is all parsed).
            n = min(self._skip_left, len(data))
            self._skip_left -= n
            if n == len(data):
                return
            data = memoryview(data)[n:]  # type: ignore[assignment]
        if self._pos:
            del self._buf[: self._pos]  # O(1) in CPython for a prefix of a bytearray
            self._pos = 0
        self._buf += data

    @property
    def pending_bytes(self) -> int:
        """Bytes fed and not yet parsed (at most one chunk's worth once parsing is done)."""
        return len(self._buf) - self._pos

    @property
    def buffered_bytes(self) -> int:
        """Bytes of partly received messages held (``Limits.max_buffered_bytes`` bounds it)."""
        return self._buffered

    @property
    def limits(self) -> Limits:
        return self._limits

    @limits.setter
    def limits(self, limits: Limits) -> None:
        """Other limits from the next message on (ServerConnection: the publish was accepted)."""
        self._limits = limits
        self._skipped = limits.skipped()
        self.chunk_size = min(self.declared_chunk_size, limits.max_message_size)

    def set_chunk_size(self, size: int) -> None:
        # Section 5.4.1: 1 .. 0x7FFFFFFF; we refuse sizes no encoder uses (Limits).
        if not 1 <= size <= self._limits.max_chunk_size:
            raise ProtocolError("chunk_size", f"chunk size {size} outside 1..{self._limits.max_chunk_size}")
        self.declared_chunk_size = size
        self.chunk_size = min(size, self._limits.max_message_size)

    def abort(self, csid: int) -> None:
        """Abort Message (section 5.4.2): drop the partly received message of a chunk stream."""
        st = self._streams.get(csid)
        if st is not None and st.active:
            if st.partial is not None:
                self._buffered -= len(st.partial)
                st.partial = None
            st.active = False

    def next_message(self) -> Message | None:
        while True:
            result = self._one_chunk()
            if result is None:
                return None
            if isinstance(result, Message):
                return result

    def _complete(self, st: _Stream) -> None:
        """The last chunk of ``st``'s message is here (its body may still be arriving if skipped)."""
        st.active = False
        self.messages += 1
        if self._limits.max_messages and self.messages > self._limits.max_messages:
            raise ProtocolError("messages", f"more than {self._limits.max_messages} messages")

    def _one_chunk(self) -> Message | bool | None:
        """Parse one chunk: a finished Message, True (chunk consumed, message not done), or None."""
        if self._skip_left:
            return None  # the rest of a skipped chunk is still to come (feed drops it)
        buf, pos, lim = self._buf, self._pos, self._limits
        avail = len(buf) - pos
        if avail < 1:
            return None
        b0 = buf[pos]
        fmt, csid = b0 >> 6, b0 & 0x3F
        hl = 1
        if csid == 0:
            if avail < 2:
                return None
            csid, hl = 64 + buf[pos + 1], 2
        elif csid == 1:
            if avail < 3:
                return None
            csid, hl = 64 + buf[pos + 1] + (buf[pos + 2] << 8), 3
        mh = _HEADER_LEN[fmt]
        if avail < hl + mh:
            return None
        st = self._streams.get(csid)
        if st is None:
            if fmt != 0:
                raise ProtocolError("chunk_header", f"type {fmt} header on chunk stream {csid} with no type 0 before")
            if len(self._streams) >= lim.max_chunk_streams:
                raise ProtocolError("chunk_streams", f"more than {lim.max_chunk_streams} chunk streams")
        h = pos + hl
        new_message = st is None or not st.active
        if fmt != 3 and not new_message:
            raise ProtocolError("chunk_header", f"type {fmt} header in the middle of a message on stream {csid}")
        field = length = type_id = stream_id = 0
        if fmt <= 2:
            field = (buf[h] << 16) | (buf[h + 1] << 8) | buf[h + 2]
        if fmt <= 1:
            length = (buf[h + 3] << 16) | (buf[h + 4] << 8) | buf[h + 5]
            type_id = buf[h + 6]
        if fmt == 0:
            stream_id = struct.unpack_from("<I", buf, h + 7)[0]
        off = hl + mh
        extended = field == EXTENDED if fmt <= 2 else (st.extended if st else False)
        ext_value = 0
        if extended:
            if avail < off + 4:
                return None
            ext_value = struct.unpack_from(">I", buf, pos + off)[0]
            if fmt == 3 and not new_message:
                # Continuation chunk: the spec's errata (and ffmpeg) repeat the extended
                # timestamp here; old Flash peers do not. Skip it only when it repeats.
                if ext_value == st.ext_value:  # type: ignore[union-attr]
                    off += 4
            else:
                off += 4
        if new_message:
            if fmt <= 1 and length > lim.max_message_size:
                raise ProtocolError("message_size", f"message of {length} bytes (limit {lim.max_message_size})")
            remaining = length if fmt <= 1 else st.length  # type: ignore[union-attr]
            skip = (type_id if fmt <= 1 else st.type_id) in self._skipped  # type: ignore[union-attr]
        else:
            remaining = st.length - st.got  # type: ignore[union-attr]
            skip = st.skip  # type: ignore[union-attr]
        take = min(self.chunk_size, remaining)
        body = avail - off  # body bytes at hand
        # A kept chunk is parsed whole; a skipped one as soon as its header is here.
        if body < take and not skip:
            return None
        # Header complete: commit the state.
        if st is None:
            st = self._streams[csid] = _Stream()
        if new_message:
            if fmt == 0:
                st.timestamp = ext_value if extended else field
                st.delta = st.timestamp
            elif fmt in (1, 2):
                st.delta = ext_value if extended else field
                st.timestamp = (st.timestamp + st.delta) & _MASK32
            else:
                if extended:
                    st.delta = ext_value
                st.timestamp = (st.timestamp + st.delta) & _MASK32
            if fmt <= 1:
                st.length, st.type_id = length, type_id
            if fmt == 0:
                st.stream_id = stream_id
            if fmt <= 2:
                st.extended = extended
                st.ext_value = ext_value
            if st.length > lim.max_message_size:
                raise ProtocolError("message_size", f"message of {st.length} bytes")
            st.active = True
            st.got = 0
            st.skip = skip
        start = pos + off
        st.got += take
        done = st.got >= st.length
        if done:
            self._complete(st)
        if skip:
            if body < take:  # the rest of this chunk is dropped as it is fed
                self._pos = len(buf)
                self._skip_left = take - body
                return True
            pos = start + take
            if not done and not st.extended and csid < 64:
                # A sender writes a message's chunks back to back (ffmpeg, OBS): the type-3
                # continuations that follow are dropped here, without the general header parse.
                marker, end = 0xC0 | csid, len(buf)
                while pos < end and buf[pos] == marker:
                    take = min(self.chunk_size, st.length - st.got)
                    st.got += take
                    if st.got >= st.length:
                        self._complete(st)
                    if end - pos - 1 < take:
                        self._pos = end
                        self._skip_left = take - (end - pos - 1)
                        return True
                    pos += 1 + take
                    if not st.active:
                        break
            self._pos = pos
            return True
        if take and self._buffered + take > lim.max_buffered_bytes:
            raise ProtocolError("buffered", "partial messages exceed the connection's buffer limit")
        self._pos = start + take
        view = self._view
        if view is None:
            view = self._view = memoryview(buf)
        partial = st.partial
        if partial is None:
            if done:  # the whole message in this one chunk: one copy, out of the input
                return Message(csid, st.type_id, st.stream_id, st.timestamp, bytes(view[start : start + take]))
            partial = st.partial = bytearray()
        partial += view[start : start + take]
        self._buffered += take
        if not done:
            return True
        self._buffered -= len(partial)
        st.partial = None
        return Message(csid, st.type_id, st.stream_id, st.timestamp, bytes(partial))


class ChunkWriter:
    """Chunks outgoing messages, compressing headers (types 1-3) the way the spec describes."""

    def __init__(self, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        self.chunk_size = chunk_size
        self._last: dict[int, tuple[int, int, int, int, int, int]] = {}  # csid → (ts, delta, len, type, sid, fmt)

    @staticmethod
    def _basic(fmt: int, csid: int) -> bytes:
        if 2 <= csid <= 63:
            return bytes((fmt << 6 | csid,))
        if 64 <= csid <= 319:
            return bytes((fmt << 6, csid - 64))
        if 64 <= csid <= 65599:
            v = csid - 64
            return bytes((fmt << 6 | 1, v & 0xFF, v >> 8))
        raise ValueError(f"chunk stream id {csid} out of range")

    def write(self, csid: int, type_id: int, stream_id: int, timestamp: int, payload: bytes) -> bytes:
        timestamp &= _MASK32
        length = len(payload)
        if length > 0xFFFFFF:
            raise ValueError("message longer than 16 MiB")
        last = self._last.get(csid)
        if last is None or last[4] != stream_id or timestamp < last[0]:
            fmt, field = 0, timestamp
        else:
            delta = timestamp - last[0]
            if last[2] != length or last[3] != type_id:
                fmt = 1
            elif delta == last[1] and last[5] != 0:
                fmt = 3
            else:
                fmt = 2
            field = delta
        ext = field >= EXTENDED
        out = bytearray(self._basic(fmt, csid))
        f3 = EXTENDED if ext else field
        if fmt <= 2:
            out += f3.to_bytes(3, "big")
        if fmt <= 1:
            out += length.to_bytes(3, "big") + bytes((type_id,))
        if fmt == 0:
            out += struct.pack("<I", stream_id)
        if ext:
            out += struct.pack(">I", field)
        self._last[csid] = (timestamp, field, length, type_id, stream_id, fmt if fmt != 3 else last[5])  # type: ignore[index]
        pos = 0
        first = True
        while first or pos < length:
            if not first:
                out += self._basic(3, csid)
                if ext:
                    out += struct.pack(">I", field)
            take = min(self.chunk_size, length - pos)
            out += payload[pos : pos + take]
            pos += take
            first = False
        return bytes(out)
