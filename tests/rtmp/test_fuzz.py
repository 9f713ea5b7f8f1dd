"""Property tests of the RTMP core: any split of a valid byte stream gives the same events and
answers; arbitrary or corrupted bytes never raise anything but ``ProtocolError``."""

from __future__ import annotations

import itertools
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.rtmp import ProtocolError, PublishRequested, ServerConnection, amf0
from shared.rtmp.chunks import AUDIO, VIDEO, ChunkReader, ChunkWriter, Limits
from tests.rtmp.helpers import Client, handshake

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RANDOM = os.urandom(1528)


def valid_stream(chunk_size: int) -> bytes:
    return bytes(handshake() + Client(chunk_size).publish_flow().media(ts0=0xFFFF00, n=30).unpublish().out)


STREAMS = {size: valid_stream(size) for size in (1, 128, 4096)}


def drive(pieces: list[bytes]) -> tuple[list, bytes]:
    conn = ServerConnection(epoch_ms=1, handshake_random=RANDOM)
    events: list = []
    out = bytearray()
    for piece in pieces:
        batch = conn.receive_data(piece)
        while batch:
            for ev in batch:
                events.append(ev)
                if isinstance(ev, PublishRequested):
                    conn.accept_publish(ev.stream_id)
            batch = conn.receive_data(b"")
        out += conn.data_to_send()
    return events, bytes(out)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


REFERENCE = {size: drive([data]) for size, data in STREAMS.items()}


@FAST
@given(size=st.sampled_from(sorted(STREAMS)), cuts=st.lists(st.integers(min_value=0), max_size=60))
def test_any_split_gives_the_same_events_and_answers(size, cuts):
    events, out = drive(split(STREAMS[size], cuts))
    ref_events, ref_out = REFERENCE[size]
    assert events == ref_events
    assert out == ref_out
    assert len([e for e in events if getattr(e, "type_id", None) == AUDIO]) == 31


def test_byte_at_a_time_split():
    data = STREAMS[128]
    assert drive([data[i : i + 1] for i in range(len(data))]) == REFERENCE[128]


messages = st.lists(
    st.tuples(
        st.sampled_from([3, 4, 5, 63, 64, 319, 320, 65599]),
        st.sampled_from([AUDIO, VIDEO]),
        st.integers(min_value=0, max_value=0xFFFFFFFF),
        st.binary(max_size=700),
    ),
    min_size=1,
    max_size=25,
)


@FAST
@given(msgs=messages, chunk_size=st.integers(min_value=1, max_value=1000), cuts=st.lists(st.integers(min_value=0)))
def test_writer_reader_round_trip_any_timestamps_and_splits(msgs, chunk_size, cuts):
    w = ChunkWriter(chunk_size)
    data = b"".join(w.write(c, t, 1, ts, p) for c, t, ts, p in msgs)
    r = ChunkReader()
    r.set_chunk_size(chunk_size)
    got = []
    for piece in split(data, cuts):
        r.feed(piece)
        while (m := r.next_message()) is not None:
            got.append((m.csid, m.type_id, m.timestamp, m.payload))
    assert got == msgs


def run_garbage(data: bytes, prefix: bytes = b"") -> None:
    conn = ServerConnection(limits=Limits(max_message_size=1 << 16, max_buffered_bytes=1 << 18))
    try:
        batch = conn.receive_data(prefix + data)
        while batch:
            for ev in batch:
                if isinstance(ev, PublishRequested):
                    conn.accept_publish(ev.stream_id)
            batch = conn.receive_data(b"")
    except ProtocolError:
        pass


HANDSHAKE = handshake()
CONNECTED = HANDSHAKE + bytes(Client().publish_flow().out)


@FAST
@given(data=st.binary(max_size=4000))
def test_random_bytes_only_raise_protocol_error(data):
    run_garbage(data)
    run_garbage(data, HANDSHAKE)
    run_garbage(data, CONNECTED)


@FAST
@given(
    size=st.sampled_from(sorted(STREAMS)),
    flips=st.lists(
        st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)), min_size=1, max_size=8
    ),
)
def test_corrupted_streams_only_raise_protocol_error(size, flips):
    data = bytearray(STREAMS[size])
    for pos, value in flips:
        data[3073 + pos % (len(data) - 3073)] = value  # corrupt after the handshake
    run_garbage(bytes(data))


@FAST
@given(data=st.binary(max_size=300))
def test_amf0_random_bytes_only_raise_protocol_error(data):
    try:
        amf0.decode_all(data)
    except ProtocolError:
        pass
