"""The RTMP handshake, server side (Adobe RTMP 1.0 section 5.2).

We answer with the simple handshake: S0 = version 3, S1 = our time + zeros + random, S2 = an
echo of C1. Publishers that offer the digest ("complex") handshake accept it: ffmpeg checks the
server's digest only when it plays (rtmpproto.c checks ``is_input``), and a publisher never
plays from us. C2 is read and not checked, as most servers do, because digest clients do not
echo S1 in it.
"""

from __future__ import annotations

import os
import struct

from shared.rtmp.errors import ProtocolError

VERSION = 3
PACKET = 1536


class ServerHandshake:
    """States: wait C0+C1 → (send S0 S1 S2) → wait C2 → done."""

    def __init__(self, epoch_ms: int = 0, random: bytes | None = None) -> None:
        self._buf = bytearray()
        self._sent_s = False
        self.done = False
        self._time = epoch_ms & 0xFFFFFFFF
        self._random = random if random is not None else os.urandom(PACKET - 8)

    def feed(self, data: bytes) -> tuple[bytes, bytes]:
        """Consume handshake bytes; return (bytes to send, bytes left over after C2)."""
        self._buf += data
        out = b""
        if not self._sent_s:
            if len(self._buf) < 1 + PACKET:
                if self._buf and self._buf[0] != VERSION:
                    raise ProtocolError("handshake", f"unsupported RTMP version {self._buf[0]}")
                return b"", b""
            if self._buf[0] != VERSION:
                raise ProtocolError("handshake", f"unsupported RTMP version {self._buf[0]}")
            c1 = bytes(self._buf[1 : 1 + PACKET])
            del self._buf[: 1 + PACKET]
            s1 = struct.pack(">II", self._time, 0) + self._random
            s2 = c1[:4] + struct.pack(">I", self._time) + c1[8:]
            out = bytes((VERSION,)) + s1 + s2
            self._sent_s = True
        if len(self._buf) < PACKET:
            return out, b""
        rest = bytes(self._buf[PACKET:])
        self._buf.clear()
        self.done = True
        return out, rest
