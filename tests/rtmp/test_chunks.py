"""Chunk streams: header types, extended and wrapping timestamps, limits; AMF0; FLV helpers."""

from __future__ import annotations

import struct

import pytest

from shared.rtmp import amf0
from shared.rtmp.chunks import AUDIO, ChunkReader, ChunkWriter, Limits
from shared.rtmp.errors import ProtocolError
from shared.rtmp.flv import TimestampUnwrapper, parse_audio_tag, split_aggregate


def read_all(reader: ChunkReader, data: bytes) -> list:
    reader.feed(data)
    out = []
    while (m := reader.next_message()) is not None:
        out.append(m)
    return out


def test_all_four_header_types_round_trip():
    w = ChunkWriter(64)
    data = b"".join(
        [
            w.write(4, AUDIO, 1, 1000, b"a" * 100),  # type 0 + type-3 continuation
            w.write(4, AUDIO, 1, 1020, b"b" * 100),  # type 2 (same length and type)
            w.write(4, AUDIO, 1, 1040, b"c" * 100),  # type 3 (same delta)
            w.write(4, AUDIO, 1, 1060, b"d" * 10),  # type 1 (new length)
            w.write(70, AUDIO, 1, 5, b"e"),  # 2-byte basic header
            w.write(400, AUDIO, 1, 6, b"f"),  # 3-byte basic header
        ]
    )
    first_bytes = {data[0] >> 6}
    assert first_bytes == {0}
    r = ChunkReader()
    r.set_chunk_size(64)
    msgs = read_all(r, data)
    assert [(m.csid, m.timestamp, m.payload[:1], len(m.payload)) for m in msgs] == [
        (4, 1000, b"a", 100),
        (4, 1020, b"b", 100),
        (4, 1040, b"c", 100),
        (4, 1060, b"d", 10),
        (70, 5, b"e", 1),
        (400, 6, b"f", 1),
    ]


def test_type3_after_type0_adds_the_type0_timestamp_as_delta():
    # RTMP 1.0 5.3.1.2.4: a type 3 chunk after a type 0 uses the type 0's timestamp as its delta.
    t0 = bytes([0x04]) + (40).to_bytes(3, "big") + (1).to_bytes(3, "big") + bytes([AUDIO]) + struct.pack("<I", 1) + b"x"
    t3 = bytes([0xC4]) + b"y"
    msgs = read_all(ChunkReader(), t0 + t3)
    assert [m.timestamp for m in msgs] == [40, 80]


@pytest.mark.parametrize("continuation_has_extended", [True, False])
def test_extended_timestamps_on_continuations_with_and_without_repeat(continuation_has_extended):
    ts = 0x01000000 + 5  # past 0xFFFFFF ms (~4.66 h)
    payload = bytes(range(200))
    head = bytes([0x04]) + b"\xff\xff\xff" + (200).to_bytes(3, "big") + bytes([AUDIO]) + struct.pack("<I", 1)
    data = head + struct.pack(">I", ts) + payload[:128] + bytes([0xC4])
    if continuation_has_extended:
        data += struct.pack(">I", ts)
    data += payload[128:]
    msgs = read_all(ChunkReader(), data)
    assert len(msgs) == 1 and msgs[0].timestamp == ts and msgs[0].payload == payload


def test_writer_and_reader_agree_on_extended_and_wrapping_timestamps():
    w = ChunkWriter(128)
    stamps = [0xFFFFF0, 0x1000000, 0x1000017, 0xFFFFFFF0, 0xFFFFFFFF, 0x5, 0x1C]  # crosses 2^32
    data = b"".join(w.write(4, AUDIO, 1, t, bytes(300)) for t in stamps)
    msgs = read_all(ChunkReader(), data)
    assert [m.timestamp for m in msgs] == stamps
    unwrap = TimestampUnwrapper()
    assert [unwrap(t) for t in stamps] == [
        0xFFFFF0,
        0x1000000,
        0x1000017,
        0xFFFFFFF0,
        0xFFFFFFFF,
        (1 << 32) + 5,
        (1 << 32) + 0x1C,
    ]


def test_delta_headers_wrap_modulo_2_32():
    head = bytes([0x04]) + b"\xff\xff\xff" + (1).to_bytes(3, "big") + bytes([AUDIO]) + struct.pack("<I", 1)
    data = head + struct.pack(">I", 0xFFFFFFF0) + b"a" + bytes([0x84]) + (0x20).to_bytes(3, "big") + b"b"
    msgs = read_all(ChunkReader(), data)
    assert [m.timestamp for m in msgs] == [0xFFFFFFF0, 0x10]


def test_abort_drops_partial_message():
    w = ChunkWriter(128)
    full = w.write(4, AUDIO, 1, 0, bytes(300))
    r = ChunkReader()
    r.feed(full[:140])  # the first chunk: header + 128 bytes
    assert r.next_message() is None
    r.abort(4)
    msgs = read_all(r, ChunkWriter(128).write(5, AUDIO, 1, 0, b"ok"))
    assert [m.payload for m in msgs] == [b"ok"]


def test_first_header_must_be_type0():
    with pytest.raises(ProtocolError):
        read_all(ChunkReader(), bytes([0x44]) + bytes(10))


def test_header_change_mid_message_is_refused():
    w = ChunkWriter(128)
    data = w.write(4, AUDIO, 1, 0, bytes(300))[:140] + bytes([0x84, 0, 0, 1])
    with pytest.raises(ProtocolError):
        read_all(ChunkReader(), data)


def test_limits_on_message_size_chunk_streams_and_buffer():
    lim = Limits(max_message_size=1000, max_chunk_streams=4, max_buffered_bytes=2000)
    huge = bytes([0x04]) + (0).to_bytes(3, "big") + (0xFFFFFF).to_bytes(3, "big") + bytes([AUDIO]) + bytes(4)
    with pytest.raises(ProtocolError) as err:
        read_all(ChunkReader(lim), huge)
    assert err.value.kind == "message_size"
    w = ChunkWriter(128)
    many = b"".join(w.write(3 + i, AUDIO, 1, 0, b"x") for i in range(5))
    with pytest.raises(ProtocolError) as err:
        read_all(ChunkReader(lim), many)
    assert err.value.kind == "chunk_streams"
    partial = b"".join(ChunkWriter(128).write(3 + i, AUDIO, 1, 0, bytes(900))[:200] for i in range(4))
    with pytest.raises(ProtocolError) as err:
        read_all(ChunkReader(Limits(max_buffered_bytes=300)), partial)
    assert err.value.kind == "buffered"


def test_amf0_round_trip_and_bounds():
    values = [
        "connect",
        1.0,
        {"app": "live", "n": None, "u": amf0.UNDEFINED_VALUE, "b": True},
        amf0.EcmaArray({"x": 1.0}),
        [1.0, "a"],
        "é" * 40000,
    ]
    assert amf0.decode_all(amf0.encode(*values)) == values
    with pytest.raises(ProtocolError):
        amf0.decode_all(b"\x0c\xff\xff\xff\xffabc")  # long string claiming 4 GiB
    with pytest.raises(ProtocolError):
        amf0.decode_all(b"\x0a\x7f\xff\xff\xff")  # strict array claiming 2^31 elements
    with pytest.raises(ProtocolError):
        amf0.decode_all(b"\x03\x00\x01a" * 40)  # nested 40 deep
    with pytest.raises(ProtocolError):
        amf0.decode_all(b"\x11\x00")  # switch to AMF3
    with pytest.raises(ProtocolError):
        amf0.decode_all(b"\x02\x00\x02\xff\xfe")  # not UTF-8


def tag(type_id: int, ts: int, body: bytes) -> bytes:
    return (
        bytes([type_id])
        + len(body).to_bytes(3, "big")
        + (ts & 0xFFFFFF).to_bytes(3, "big")
        + bytes([ts >> 24])
        + bytes(3)
        + body
        + struct.pack(">I", 11 + len(body))
    )


def test_aggregate_messages_split_with_shifted_timestamps():
    body = tag(8, 100, b"\xaf\x01a") + tag(9, 110, b"\x17v") + tag(8, 123, b"\xaf\x01b")
    assert split_aggregate(body, 5000) == [(8, 5000, b"\xaf\x01a"), (9, 5010, b"\x17v"), (8, 5023, b"\xaf\x01b")]
    with pytest.raises(ProtocolError):
        split_aggregate(body[:-10], 0)
    with pytest.raises(ProtocolError):
        split_aggregate(b"\x08\xff\xff\xff" + bytes(7), 0)


def test_audio_tag_header():
    t = parse_audio_tag(b"\xaf\x00\x12\x10")
    assert t.codec == "aac" and t.aac_packet_type == 0 and t.data == b"\x12\x10" and t.stereo
    assert parse_audio_tag(b"\x2f\xff").codec == "mp3"
    assert parse_audio_tag(b"") is None
    with pytest.raises(ProtocolError):
        parse_audio_tag(b"\xaf")
