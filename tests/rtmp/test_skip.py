"""Messages the reader's owner has no use for (``Limits.skip``: the ingest skips video and data)
are dropped in the chunk layer as they arrive: never returned, never held, whatever the
interleaving with kept messages on other chunk streams, the chunk size changes between their
chunks, their extended timestamps or how the bytes are split (issue 22)."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.rtmp import ProtocolError, ServerConnection
from shared.rtmp.chunks import (
    AGGREGATE,
    AUDIO,
    DATA_AMF0,
    DATA_AMF3,
    SET_CHUNK_SIZE,
    VIDEO,
    ChunkReader,
    Limits,
)
from shared.rtmp.flv import split_aggregate
from tests.rtmp.helpers import Client, feed, handshake

SKIP_VIDEO = Limits(skip=frozenset({VIDEO}))
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MAX_HEADER = 3 + 11 + 4  # basic header, type-0 message header, extended timestamp


def header(fmt: int, csid: int, ts_field: int = 0, length: int = 0, type_id: int = 0, sid: int = 1) -> bytes:
    """One chunk header, written out by hand (the writer under test is not the reference)."""
    if csid < 64:
        out = bytes([fmt << 6 | csid])
    elif csid < 320:
        out = bytes([fmt << 6, csid - 64])
    else:
        out = bytes([fmt << 6 | 1, (csid - 64) & 0xFF, (csid - 64) >> 8])
    ext = ts_field >= 0xFFFFFF
    if fmt <= 2:
        out += (0xFFFFFF if ext else ts_field).to_bytes(3, "big")
    if fmt <= 1:
        out += length.to_bytes(3, "big") + bytes([type_id])
    if fmt == 0:
        out += struct.pack("<I", sid)
    if ext:
        out += struct.pack(">I", ts_field)
    return out


class Interleaver:
    """Chunks of messages on several chunk streams, emitted in any order that keeps each chunk
    stream's own order, at the chunk size in force when each chunk is emitted (a Set Chunk Size
    between two chunks of a message applies to the rest of it)."""

    def __init__(self, chunk_size: int = 128, repeat_extended: bool = True) -> None:
        self.repeat_extended = repeat_extended
        self.out = bytearray()
        self.queues: dict[int, list[tuple[int, int, bytes]]] = {}
        self.progress: dict[int, int] = {}  # csid → bytes of its current message sent
        self.chunk_size = 128  # the protocol's default until a Set Chunk Size
        if chunk_size != 128:
            self.set_chunk_size(chunk_size)

    def add(self, csid: int, type_id: int, ts: int, payload: bytes) -> None:
        self.queues.setdefault(csid, []).append((type_id, ts, payload))

    def pending(self) -> list[int]:
        return sorted(c for c, q in self.queues.items() if q)

    def chunk(self, csid: int) -> None:
        type_id, ts, payload = self.queues[csid][0]
        sent = self.progress.get(csid, 0)
        take = min(self.chunk_size, len(payload) - sent)
        if sent == 0:
            self.out += header(0, csid, ts, len(payload), type_id)
        else:
            self.out += header(3, csid)
            if ts >= 0xFFFFFF and self.repeat_extended:
                self.out += struct.pack(">I", ts)
        self.out += payload[sent : sent + take]
        if sent + take >= len(payload):
            self.queues[csid].pop(0)
            self.progress[csid] = 0
        else:
            self.progress[csid] = sent + take

    def set_chunk_size(self, size: int) -> None:
        """A whole Set Chunk Size message on chunk stream 2 (a 4-byte body: one chunk at >= 4)."""
        assert self.chunk_size >= 4
        self.out += header(0, 2, 0, 4, SET_CHUNK_SIZE, 0) + struct.pack(">I", size)
        self.chunk_size = size


def read(data: bytes, limits: Limits, pieces: list[bytes] | None = None, bound: int | None = None) -> list:
    """(csid, type, timestamp, payload) of every message returned, Set Chunk Size applied; with
    ``bound``, checks after every piece fed that the reader holds no more than that."""
    reader = ChunkReader(limits)
    got = []
    for piece in pieces if pieces is not None else [data]:
        reader.feed(piece)
        while (m := reader.next_message()) is not None:
            if m.type_id == SET_CHUNK_SIZE:
                reader.set_chunk_size(struct.unpack(">I", m.payload)[0])
            got.append((m.csid, m.type_id, m.timestamp, m.payload))
        if bound is not None:
            assert reader.pending_bytes + reader.buffered_bytes <= bound
    assert reader.buffered_bytes == 0  # every message ended: nothing partial held
    return got


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in itertools.pairwise([0, *points, len(data)])]


def test_video_over_many_chunks_interleaved_with_audio_is_skipped_and_audio_is_intact():
    il = Interleaver(chunk_size=128)
    video = bytes(range(256)) * 40  # 10240 bytes: 80 chunks
    audio = [bytes([i]) * (100 + i) for i in range(30)]
    il.add(6, VIDEO, 1000, video)
    for i, a in enumerate(audio):
        il.add(4, AUDIO, 1000 + 23 * i, a)
    # one video chunk, then one audio message (a single chunk), alternating while both last
    while il.pending():
        for csid in il.pending():
            il.chunk(csid)
    data = bytes(il.out)
    kept = read(data, Limits())
    assert [m for m in kept if m[1] == VIDEO] == [(6, VIDEO, 1000, video)]
    expected = [(4, AUDIO, 1000 + 23 * i, a) for i, a in enumerate(audio)]
    # fed whole, and a byte at a time: the reader never holds more than one audio chunk
    assert read(data, SKIP_VIDEO) == expected
    assert read(data, SKIP_VIDEO, [data[i : i + 1] for i in range(len(data))], bound=MAX_HEADER + 128) == expected
    reader = ChunkReader(SKIP_VIDEO)
    reader.feed(data)
    while reader.next_message() is not None:
        pass
    assert reader.messages == 31  # the skipped video counts as a message (Limits.max_messages)


def test_a_skipped_chunk_body_is_dropped_as_it_arrives():
    # One 4000-byte video message in one chunk: after its header the reader holds none of it.
    reader = ChunkReader(SKIP_VIDEO)
    reader.set_chunk_size(4096)
    data = header(0, 6, 40, 4000, VIDEO) + bytes(4000) + header(0, 4, 41, 3, AUDIO) + b"abc"
    for i in range(0, len(data), 700):
        reader.feed(data[i : i + 700])
        msg = reader.next_message()
        assert reader.pending_bytes + reader.buffered_bytes <= MAX_HEADER
        if i + 700 >= len(data):
            assert msg is not None and (msg.type_id, msg.timestamp, msg.payload) == (AUDIO, 41, b"abc")
        else:
            assert msg is None


@pytest.mark.parametrize("skip", [True, False])
def test_chunk_size_change_in_the_middle_of_a_message(skip):
    il = Interleaver(chunk_size=100)
    video = bytes(range(251)) * 20  # 5020 bytes
    il.add(6, VIDEO, 7, video)
    il.add(4, AUDIO, 8, b"x" * 250)
    il.chunk(6)  # 100 bytes of video at size 100
    il.chunk(4)  # 100 bytes of audio
    il.set_chunk_size(1000)  # the rest of both messages in 1000-byte chunks
    il.chunk(4)  # the last 150 audio bytes: one chunk now
    while il.pending():
        il.chunk(6)  # 4920 video bytes: 5 chunks
    il.add(4, AUDIO, 9, b"y" * 1500)
    il.chunk(4)
    il.set_chunk_size(4)
    while il.pending():
        il.chunk(4)  # 500 bytes, then 996 bytes in 4-byte chunks
    data = bytes(il.out)
    got = read(data, SKIP_VIDEO if skip else Limits(), split(data, list(range(0, len(data), 37))))
    media = [m for m in got if m[1] in (AUDIO, VIDEO)]
    expected = [(4, AUDIO, 8, b"x" * 250), (6, VIDEO, 7, video), (4, AUDIO, 9, b"y" * 1500)]
    assert media == [m for m in expected if not skip or m[1] != VIDEO]


@pytest.mark.parametrize("repeat_extended", [True, False])
def test_skipped_video_with_extended_timestamps(repeat_extended):
    # Timestamps past 0xFFFFFF ms: ffmpeg repeats the extended timestamp on continuation chunks,
    # old Flash peers do not; the skipped message's continuations parse alike either way.
    il = Interleaver(chunk_size=128, repeat_extended=repeat_extended)
    base = 0x1000000 + 77
    for i in range(6):
        il.add(6, VIDEO, base + 33 * i, bytes([i]) * 1000)
        il.add(4, AUDIO, base + 23 * i, bytes([0xA0 + i]) * 60)
    while il.pending():
        for csid in il.pending():
            il.chunk(csid)
    data = bytes(il.out)
    expected = [(4, AUDIO, base + 23 * i, bytes([0xA0 + i]) * 60) for i in range(6)]
    assert read(data, SKIP_VIDEO) == expected
    assert read(data, SKIP_VIDEO, split(data, list(range(0, len(data), 5)))) == expected
    kept = read(data, Limits())
    assert [(m[2], m[3]) for m in kept if m[1] == VIDEO] == [(base + 33 * i, bytes([i]) * 1000) for i in range(6)]


def test_skipped_messages_count_against_the_message_limit():
    il = Interleaver(chunk_size=64)
    for i in range(5):
        il.add(6, VIDEO, i, bytes(300))
    while il.pending():
        il.chunk(6)
    reader = ChunkReader(Limits(skip=frozenset({VIDEO}), max_messages=4))
    reader.feed(bytes(il.out))
    with pytest.raises(ProtocolError, match="messages"):
        while reader.next_message() is not None:
            pass


def test_server_connection_skips_video_and_data_after_the_publish_and_keeps_audio():
    client = Client(4096).publish_flow().media(n=40, video_every=2).unpublish()
    data = handshake() + bytes(client.out)
    results = {}
    for limits in (Limits(), Limits(skip=frozenset({VIDEO, DATA_AMF0}))):
        results[bool(limits.skip)] = feed(ServerConnection(limits=limits), data)
    assert [type(e).__name__ for e in results[False] if type(e).__name__ == "Metadata"] == ["Metadata"]
    assert not [e for e in results[True] if type(e).__name__ == "Metadata"]
    assert [e for e in results[True] if getattr(e, "type_id", None) == VIDEO] == []
    audio = [e for e in results[False] if getattr(e, "type_id", None) == AUDIO]
    assert len(audio) == 41
    assert [e for e in results[True] if getattr(e, "type_id", None) == AUDIO] == audio
    assert [type(e).__name__ for e in results[True] if getattr(e, "type_id", None) is None] == [
        type(e).__name__
        for e in results[False]
        if getattr(e, "type_id", None) is None and type(e).__name__ != "Metadata"
    ]


def test_aggregate_sub_messages_of_skipped_types_are_left_out():
    def tag(type_id: int, ts: int, body: bytes) -> bytes:
        head = bytes([type_id]) + len(body).to_bytes(3, "big") + (ts & 0xFFFFFF).to_bytes(3, "big")
        return head + bytes([ts >> 24]) + b"\x00\x00\x00" + body + (11 + len(body)).to_bytes(4, "big")

    payload = tag(AUDIO, 100, b"a1") + tag(VIDEO, 100, b"v" * 50) + tag(AUDIO, 123, b"a2")
    assert split_aggregate(payload, 5000, {AUDIO}) == [(AUDIO, 5000, b"a1"), (AUDIO, 5023, b"a2")]
    assert [t for t, _, _ in split_aggregate(payload, 5000)] == [AUDIO, VIDEO, AUDIO]
    # through the connection: an aggregate on the published stream yields its audio only
    client = Client(4096).publish_flow()
    client.raw(4, AGGREGATE, 1, 5000, payload)
    events = feed(ServerConnection(limits=SKIP_VIDEO), handshake() + bytes(client.out))
    assert [(e.type_id, e.timestamp, e.payload) for e in events if hasattr(e, "payload")] == [
        (AUDIO, 5000, b"a1"),
        (AUDIO, 5023, b"a2"),
    ]


# A stream of audio and video messages on several chunk streams, their chunks interleaved in
# any order each chunk stream's own order allows, chunk size changes anywhere between chunks.
@st.composite
def interleaved(draw: st.DrawFn) -> tuple[bytes, list[tuple[int, int, int, bytes]], int]:
    # Extended timestamps repeated on continuations (ffmpeg): without the repeat, a continuation
    # whose body starts with the same 4 bytes is ambiguous (chunks.py), which arbitrary audio
    # bytes could hit; test_skipped_video_with_extended_timestamps covers the other kind.
    il = Interleaver(chunk_size=draw(st.sampled_from([4, 64, 128, 4096])))
    audio_csids = draw(st.lists(st.sampled_from([3, 4, 70, 400]), min_size=1, max_size=2, unique=True))
    video_csids = draw(st.lists(st.sampled_from([6, 7, 90, 500]), min_size=1, max_size=2, unique=True))
    stamps = st.one_of(st.integers(0, 0xFFFFF0), st.integers(0xFFFFFF, 0xFFFFFFFF))
    audio: list[tuple[int, int, int, bytes]] = []
    for _ in range(draw(st.integers(1, 12))):
        csid = draw(st.sampled_from(audio_csids))
        payload = draw(st.binary(min_size=1, max_size=300))
        ts = draw(stamps)
        il.add(csid, AUDIO, ts, payload)
        audio.append((csid, AUDIO, ts, payload))
    for _ in range(draw(st.integers(1, 6))):
        size = draw(st.integers(2000, 9000))
        il.add(draw(st.sampled_from(video_csids)), VIDEO, draw(stamps), bytes([size % 251]) * size)
    while il.pending():
        if draw(st.integers(0, 9)) == 0 and il.chunk_size >= 4:
            il.set_chunk_size(draw(st.sampled_from([4, 50, 128, 1000, 4096])))
        il.chunk(draw(st.sampled_from(il.pending())))
    # Audio of one chunk stream stays in order; across chunk streams, completion order decides.
    return bytes(il.out), audio, 300


@FAST
@given(stream=interleaved(), cuts=st.lists(st.integers(min_value=0), max_size=40))
def test_any_interleaving_and_split_skips_video_and_keeps_audio(stream, cuts):
    data, audio, largest_audio = stream
    reference = read(data, Limits())
    expected_audio = [m for m in reference if m[1] == AUDIO]
    assert sorted(expected_audio) == sorted(audio)  # the reference reader got every audio message
    got = read(data, SKIP_VIDEO, split(data, cuts), bound=MAX_HEADER + 3 * largest_audio)
    assert [m for m in got if m[1] != SET_CHUNK_SIZE] == expected_audio


# The ingest's limits (video and data skipped) against hostile input: anything parses or raises
# ProtocolError, and what the connection holds stays within one chunk and the partial messages.
INGEST_LIMITS = Limits(
    max_message_size=1 << 16, max_buffered_bytes=1 << 18, skip=frozenset({VIDEO, DATA_AMF0, DATA_AMF3})
)
VALID = bytes(handshake() + Client(4096).publish_flow().media(n=20, video_every=1).unpublish().out)


def run_hostile(data: bytes) -> None:
    conn = ServerConnection(limits=INGEST_LIMITS)
    try:
        for i in range(0, len(data), 997):
            feed(conn, data[i : i + 997])
            assert conn.held_bytes <= 997 + (1 << 18) + (1 << 16)
    except ProtocolError:
        pass


@FAST
@given(data=st.binary(max_size=3000))
def test_random_bytes_after_a_publish_only_raise_protocol_error(data):
    run_hostile(VALID[: len(VALID) // 2] + data)


@FAST
@given(
    flips=st.lists(
        st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)), min_size=1, max_size=8
    ),
)
def test_corrupted_streams_with_skips_only_raise_protocol_error(flips):
    data = bytearray(VALID)
    for pos, value in flips:
        data[3073 + pos % (len(data) - 3073)] = value  # corrupt after the handshake
    run_hostile(bytes(data))
