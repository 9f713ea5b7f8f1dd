"""The sans-I/O server connection: the publish conversation, answers, control messages."""

from __future__ import annotations

import itertools
import struct

import pytest

from shared.rtmp import (
    Connected,
    MediaMessage,
    Metadata,
    PingResponse,
    ProtocolError,
    PublishRequested,
    ServerConnection,
    Unpublished,
)
from shared.rtmp.chunks import (
    ACKNOWLEDGEMENT,
    AUDIO,
    SET_CHUNK_SIZE,
    SET_PEER_BANDWIDTH,
    USER_CONTROL,
    VIDEO,
    WINDOW_ACK_SIZE,
)
from shared.rtmp.handshake import PACKET
from tests.rtmp.helpers import Client, commands, feed, handshake, server_messages


def run(data: bytes, accept: bool = True) -> tuple[ServerConnection, list, bytes]:
    conn = ServerConnection()
    events = feed(conn, data, accept)
    return conn, events, conn.data_to_send()


def test_handshake_answers_s0_s1_s2_echoing_c1():
    conn = ServerConnection(epoch_ms=1234)
    c = handshake()
    assert conn.receive_data(c[: 1 + PACKET]) == []
    out = conn.data_to_send()
    assert len(out) == 1 + 2 * PACKET and out[0] == 3
    assert struct.unpack(">I", out[1:5])[0] == 1234
    assert out[1 + PACKET + 8 : 1 + 2 * PACKET] == c[9 : 1 + PACKET]  # S2 echoes C1's random


def test_publish_conversation():
    data = handshake() + Client(4096).publish_flow().media().unpublish().out
    _conn, events, out = run(bytes(data))
    kinds = [type(e) for e in events]
    assert kinds[0] is Connected and events[0].app == "live"
    pub = [e for e in events if isinstance(e, PublishRequested)]
    assert pub == [PublishRequested(1, "key-1", "live")]
    assert any(isinstance(e, Metadata) and e.values["audiocodecid"] == 10.0 for e in events)
    audio = [e for e in events if isinstance(e, MediaMessage) and e.type_id == AUDIO]
    video = [e for e in events if isinstance(e, MediaMessage) and e.type_id == VIDEO]
    assert len(audio) == 21 and len(video) == 7
    assert [a.timestamp for a in audio[1:]] == [i * 23 for i in range(20)]
    assert audio[5].payload == b"\xaf\x01" + bytes([4]) * (50 + 4 * 7)
    assert events[-1] == Unpublished(1, "FCUnpublish")
    msgs = server_messages(out)
    types = [m.type_id for m in msgs]
    assert types[:3] == [WINDOW_ACK_SIZE, SET_PEER_BANDWIDTH, SET_CHUNK_SIZE]
    cmds = commands(out)
    assert cmds[0][0] == "_result" and cmds[0][1] == 1.0 and cmds[0][3]["code"] == "NetConnection.Connect.Success"
    create = next(c for c in cmds if c[1] == 4.0)
    assert create[0] == "_result" and create[3] == 1.0
    status = [c for c in cmds if c[0] == "onStatus"]
    assert status[0][3]["code"] == "NetStream.Publish.Start" and status[0][3]["level"] == "status"
    # StreamBegin for stream 1 precedes it
    assert any(m.type_id == USER_CONTROL and m.payload == struct.pack(">HI", 0, 1) for m in msgs)


def test_reject_sends_badname_error_and_closes():
    data = handshake() + Client().publish_flow().media().out
    conn, _events, out = run(bytes(data), accept=False)
    status = [c for c in commands(out) if c[0] == "onStatus"]
    assert status[-1][3]["code"] == "NetStream.Publish.BadName" and status[-1][3]["level"] == "error"
    assert "key-1" not in status[-1][3]["description"]
    assert conn.closed
    assert conn.receive_data(b"\x00" * 100) == []


def test_media_before_publish_accepted_is_not_delivered():
    c = Client()
    c.command("connect", 1.0, {"app": "live"}).command("createStream", 2.0, None)
    c.raw(4, AUDIO, 1, 0, b"\xaf\x01abc")
    _conn, events, _out = run(handshake() + bytes(c.out))
    assert not any(isinstance(e, MediaMessage) for e in events)


def test_ping_request_is_answered_and_pong_reported():
    c = Client().command("connect", 1.0, {"app": "live"})
    c.raw(2, USER_CONTROL, 0, 0, struct.pack(">HI", 6, 777))
    c.raw(2, USER_CONTROL, 0, 0, struct.pack(">HI", 7, 42))
    conn, events, out = run(handshake() + bytes(c.out))
    assert PingResponse(42) in events
    assert any(m.type_id == USER_CONTROL and m.payload == struct.pack(">HI", 7, 777) for m in server_messages(out))
    conn.ping(99)
    assert conn.data_to_send()[-6:] == struct.pack(">HI", 6, 99)


def test_acknowledgement_sent_per_peer_window():
    c = Client(4096).command("connect", 1.0, {"app": "live"})
    c.raw(2, WINDOW_ACK_SIZE, 0, 0, struct.pack(">I", 5000))
    conn = ServerConnection()
    conn.receive_data(handshake() + bytes(c.out))
    out = bytearray(conn.data_to_send())
    for i in range(10):
        # unknown message types (shared object, 19) are parsed and ignored: filler traffic
        conn.receive_data(c.w.write(7, 19, 0, i, bytes(3000)))
        out += conn.data_to_send()
    acks = [struct.unpack(">I", m.payload)[0] for m in server_messages(bytes(out)) if m.type_id == ACKNOWLEDGEMENT]
    assert len(acks) >= 5
    assert all(b - a >= 5000 for a, b in itertools.pairwise(acks))
    assert acks[-1] <= conn.bytes_received


def test_commands_before_connect_are_an_error():
    c = Client().command("createStream", 2.0, None)
    with pytest.raises(ProtocolError):
        run(handshake() + bytes(c.out))


def test_second_connect_and_publish_on_unknown_stream_are_errors():
    c = Client().command("connect", 1.0, {"app": "live"}).command("connect", 2.0, {"app": "live"})
    with pytest.raises(ProtocolError):
        run(handshake() + bytes(c.out))
    c = Client().command("connect", 1.0, {"app": "live"}).command("publish", 2.0, None, "k", "live", stream_id=9)
    with pytest.raises(ProtocolError):
        run(handshake() + bytes(c.out))


def test_wrong_version_is_refused():
    with pytest.raises(ProtocolError):
        ServerConnection().receive_data(b"\x06" + bytes(100))


def test_stop_publish_sends_status():
    data = handshake() + Client().publish_flow().out
    conn, _events, out = run(bytes(data))
    conn.stop_publish(1, "The caption order was cancelled", code="NetStream.Publish.BadName")
    status = commands(out + conn.data_to_send())
    assert status[-1][3]["code"] == "NetStream.Publish.BadName"
    assert conn.closed


def test_set_chunk_size_limits():
    for size in (0, 0x80000000, (1 << 24) + 1):
        c = Client().command("connect", 1.0, {"app": "live"})
        c.raw(2, SET_CHUNK_SIZE, 0, 0, struct.pack(">I", size))
        with pytest.raises(ProtocolError) as err:
            run(handshake() + bytes(c.out))
        assert err.value.kind == "chunk_size"
