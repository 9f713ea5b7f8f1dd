"""A publisher's side of RTMP, written for the tests from the spec: the bytes a client sends,
and a reader of what the server answers."""

from __future__ import annotations

import os
import struct
from typing import Any

from shared.rtmp import PublishRequested, ServerConnection, amf0
from shared.rtmp.chunks import (
    AUDIO,
    COMMAND_AMF0,
    DATA_AMF0,
    SET_CHUNK_SIZE,
    VIDEO,
    ChunkReader,
    ChunkWriter,
    Message,
)
from shared.rtmp.handshake import PACKET

AAC_CONFIG = bytes.fromhex("1210")  # AAC-LC, 44.1 kHz, stereo


def handshake() -> bytes:
    c1 = struct.pack(">II", 0, 0) + os.urandom(PACKET - 8)
    return b"\x03" + c1 + os.urandom(PACKET)  # C0 C1, then C2 (not checked by servers)


class Client:
    def __init__(self, chunk_size: int = 128) -> None:
        self.w = ChunkWriter(128)
        self.out = bytearray()
        if chunk_size != 128:
            self.set_chunk_size(chunk_size)

    def set_chunk_size(self, size: int) -> Client:
        self.out += self.w.write(2, SET_CHUNK_SIZE, 0, 0, struct.pack(">I", size))
        self.w.chunk_size = size
        return self

    def command(self, *values: Any, stream_id: int = 0, csid: int = 3) -> Client:
        self.out += self.w.write(csid, COMMAND_AMF0, stream_id, 0, amf0.encode(*values))
        return self

    def raw(self, csid: int, type_id: int, stream_id: int, ts: int, payload: bytes) -> Client:
        self.out += self.w.write(csid, type_id, stream_id, ts, payload)
        return self

    def publish_flow(self, app: str = "live", key: str = "key-1") -> Client:
        self.command("connect", 1.0, {"app": app, "type": "nonprivate", "tcUrl": f"rtmp://h/{app}"})
        self.command("releaseStream", 2.0, None, key)
        self.command("FCPublish", 3.0, None, key)
        self.command("createStream", 4.0, None)
        self.command("publish", 5.0, None, key, "live", stream_id=1, csid=4)
        return self

    def media(self, ts0: int = 0, n: int = 20, step: int = 23, video_every: int = 3) -> Client:
        self.out += self.w.write(
            4, DATA_AMF0, 1, 0, amf0.encode("@setDataFrame", "onMetaData", amf0.EcmaArray({"audiocodecid": 10.0}))
        )
        self.out += self.w.write(4, AUDIO, 1, ts0, b"\xaf\x00" + AAC_CONFIG)
        for i in range(n):
            ts = ts0 + i * step
            self.out += self.w.write(4, AUDIO, 1, ts, b"\xaf\x01" + bytes([i % 256]) * (50 + i * 7))
            if video_every and i % video_every == 0:
                self.out += self.w.write(6, VIDEO, 1, ts, b"\x17\x01" + bytes(300 + i * 97))
        return self

    def unpublish(self, key: str = "key-1") -> Client:
        self.command("FCUnpublish", 6.0, None, key)
        self.command("deleteStream", 7.0, None, 1.0)
        return self


def server_messages(data: bytes) -> list[Message]:
    """Parse what the server sent (after S0 S1 S2), applying its Set Chunk Size."""
    reader = ChunkReader()
    reader.feed(data[1 + 2 * PACKET :])
    out = []
    while (msg := reader.next_message()) is not None:
        if msg.type_id == SET_CHUNK_SIZE:
            reader.set_chunk_size(struct.unpack(">I", msg.payload)[0])
        out.append(msg)
    return out


def commands(data: bytes) -> list[list[Any]]:
    return [amf0.decode_all(m.payload) for m in server_messages(data) if m.type_id == COMMAND_AMF0]


def feed(conn: ServerConnection, data: bytes, accept: bool = True) -> list:
    """What a driver does: decide each publish, then resume with the buffered bytes."""
    events = []
    batch = conn.receive_data(data)
    while batch:
        for ev in batch:
            events.append(ev)
            if isinstance(ev, PublishRequested):
                if accept:
                    conn.accept_publish(ev.stream_id)
                else:
                    conn.reject_publish(ev.stream_id, "Unknown or revoked stream key")
        batch = conn.receive_data(b"")
    return events
