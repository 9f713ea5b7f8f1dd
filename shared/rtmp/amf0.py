"""AMF0 (Adobe Action Message Format 0), the encoding of RTMP command and data messages.

Decoding is bounded: every length is checked against the bytes actually present (so a
4-byte long-string length cannot make us allocate), nesting is limited, and AMF3 switches,
references and unknown markers raise ``ProtocolError`` (RTMP 1.0 section 7.1.1; AMF0 spec
section 2).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from shared.rtmp.errors import ProtocolError

NUMBER, BOOLEAN, STRING, OBJECT, NULL, UNDEFINED = 0x00, 0x01, 0x02, 0x03, 0x05, 0x06
REFERENCE, ECMA_ARRAY, OBJECT_END, STRICT_ARRAY, DATE, LONG_STRING = 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C
UNSUPPORTED, XML_DOCUMENT, TYPED_OBJECT, AVMPLUS = 0x0D, 0x0F, 0x10, 0x11

MAX_DEPTH = 16
MAX_ITEMS = 4096  # properties per object / elements per array


class Undefined:
    """AMF0 ``undefined`` (distinct from ``null`` = None)."""

    _instance: Undefined | None = None

    def __new__(cls) -> Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNDEFINED"


UNDEFINED_VALUE = Undefined()


@dataclass(frozen=True, slots=True)
class EcmaArray:
    """An AMF0 ECMA array (associative); kept apart from objects so re-encoding is faithful."""

    items: dict[str, Any]


def _err(msg: str) -> ProtocolError:
    return ProtocolError("amf0", msg)


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise _err(f"value needs {n} bytes, {len(self.data) - self.pos} left")
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack(">H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def utf8(self, n: int) -> str:
        try:
            return self.take(n).decode("utf-8")
        except UnicodeDecodeError:
            raise _err("string is not UTF-8") from None

    def value(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise _err("nesting too deep")
        marker = self.u8()
        if marker == NUMBER:
            return struct.unpack(">d", self.take(8))[0]
        if marker == BOOLEAN:
            return self.u8() != 0
        if marker == STRING:
            return self.utf8(self.u16())
        if marker == LONG_STRING or marker == XML_DOCUMENT:
            return self.utf8(self.u32())
        if marker == NULL:
            return None
        if marker in (UNDEFINED, UNSUPPORTED):
            return UNDEFINED_VALUE
        if marker == OBJECT:
            return self.properties(depth)
        if marker == TYPED_OBJECT:
            self.utf8(self.u16())  # class name: irrelevant to RTMP commands
            return self.properties(depth)
        if marker == ECMA_ARRAY:
            self.u32()  # advisory count: never trusted for allocation
            return EcmaArray(self.properties(depth))
        if marker == STRICT_ARRAY:
            count = self.u32()
            if count > MAX_ITEMS or count > len(self.data) - self.pos:
                raise _err(f"strict array of {count} elements")
            return [self.value(depth + 1) for _ in range(count)]
        if marker == DATE:
            millis = struct.unpack(">d", self.take(8))[0]
            self.take(2)  # time zone, reserved
            return millis
        raise _err(f"unsupported marker 0x{marker:02x}")

    def properties(self, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        while True:
            name = self.utf8(self.u16())
            if not name and self.pos < len(self.data) and self.data[self.pos] == OBJECT_END:
                self.pos += 1
                return out
            if len(out) >= MAX_ITEMS:
                raise _err("too many properties")
            out[name] = self.value(depth + 1)


def decode_all(data: bytes) -> list[Any]:
    """Every AMF0 value in ``data`` (a command or data message body)."""
    reader = _Reader(bytes(data))
    values = []
    while reader.pos < len(reader.data):
        if len(values) >= MAX_ITEMS:
            raise _err("too many values")
        values.append(reader.value(0))
    return values


def _encode_string_body(text: str, out: bytearray) -> None:
    raw = text.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ValueError("property name longer than 65535 bytes")
    out += struct.pack(">H", len(raw)) + raw


def _encode(value: Any, out: bytearray) -> None:
    if value is None:
        out.append(NULL)
    elif value is UNDEFINED_VALUE:
        out.append(UNDEFINED)
    elif isinstance(value, bool):
        out += bytes((BOOLEAN, 1 if value else 0))
    elif isinstance(value, int | float):
        out.append(NUMBER)
        out += struct.pack(">d", float(value))
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        if len(raw) <= 0xFFFF:
            out.append(STRING)
            out += struct.pack(">H", len(raw)) + raw
        else:
            out.append(LONG_STRING)
            out += struct.pack(">I", len(raw)) + raw
    elif isinstance(value, EcmaArray):
        out.append(ECMA_ARRAY)
        out += struct.pack(">I", len(value.items))
        _encode_properties(value.items, out)
    elif isinstance(value, dict):
        out.append(OBJECT)
        _encode_properties(value, out)
    elif isinstance(value, list | tuple):
        out.append(STRICT_ARRAY)
        out += struct.pack(">I", len(value))
        for item in value:
            _encode(item, out)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as AMF0")


def _encode_properties(items: dict[str, Any], out: bytearray) -> None:
    for name, item in items.items():
        _encode_string_body(name, out)
        _encode(item, out)
    out += b"\x00\x00" + bytes((OBJECT_END,))


def encode(*values: Any) -> bytes:
    out = bytearray()
    for value in values:
        _encode(value, out)
    return bytes(out)
