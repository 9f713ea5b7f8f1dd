"""Before a publish is accepted the peer is held to small limits (issue 19): a chunk size honoured
only up to the small message size, no media held, and the normal limits once the publish is
accepted."""

from __future__ import annotations

import struct

import pytest

from shared.rtmp import Connected, MediaMessage, ProtocolError, PublishRequested, ServerConnection
from shared.rtmp.chunks import AUDIO, COMMAND_AMF0, PREPUBLISH, USER_CONTROL, VIDEO, ChunkReader, prepublish_limits
from tests.rtmp.helpers import AAC_CONFIG, Client, commands, feed, handshake

BIG_CHUNKS = 4 << 20  # what the attacker set


def header(csid: int, length: int, type_id: int, stream_id: int = 0) -> bytes:
    """A type 0 chunk header announcing a message of ``length`` bytes."""
    return bytes([csid]) + bytes(3) + length.to_bytes(3, "big") + bytes([type_id]) + struct.pack("<I", stream_id)


def test_a_large_message_before_connect_is_refused_at_its_header():
    """The issue's attack: Set Chunk Size 4 MiB, then most of an 8 MiB message, before connect.
    Under the normal limits that message was held (8 MiB a connection)."""
    conn = ServerConnection()
    data = handshake() + bytes(Client().set_chunk_size(BIG_CHUNKS).out) + header(3, 8 << 20, COMMAND_AMF0)
    with pytest.raises(ProtocolError) as err:
        conn.receive_data(data + bytes(256 << 10))
    assert err.value.kind == "message_size"


def test_a_large_chunk_size_is_honoured_up_to_the_message_size():
    """A peer that declares a huge chunk size (joy4 declares 128 MiB, some servers 0x7FFFFFFF;
    within our 16 MiB bound it is accepted) still parses: no chunk is larger than its message."""
    conn = ServerConnection()
    c = Client(BIG_CHUNKS).command("connect", 1.0, {"app": "live"})
    events = feed(conn, handshake() + bytes(c.out))
    assert isinstance(events[0], Connected)
    assert conn._reader.chunk_size == PREPUBLISH.max_message_size  # honoured up to the small limit
    c.out.clear()
    c.command("createStream", 4.0, None).command("publish", 5.0, None, "key-1", "live", stream_id=1, csid=4)
    assert any(isinstance(e, PublishRequested) for e in feed(conn, bytes(c.out)))
    # After the publish: the normal limits, so the same chunk size now carries a 1 MiB message.
    assert conn._reader.chunk_size == BIG_CHUNKS
    big = c.w.write(4, VIDEO, 1, 0, b"\x17\x01" + bytes(1 << 20))
    events = feed(conn, big + c.w.write(4, AUDIO, 1, 0, b"\xaf\x00" + AAC_CONFIG))
    assert [(e.type_id, len(e.payload)) for e in events] == [(VIDEO, 2 + (1 << 20)), (AUDIO, 4)]


def test_media_before_a_publish_is_skipped_not_held():
    conn = ServerConnection()
    c = Client(BIG_CHUNKS).command("connect", 1.0, {"app": "live"}).command("createStream", 2.0, None)
    feed(conn, handshake() + bytes(c.out))
    body = b"\xaf\x01" + bytes(PREPUBLISH.max_message_size - 2)
    msg = c.w.write(4, AUDIO, 1, 0, body)
    # Half of it: the chunk waits unparsed (bounded by the message size), nothing is copied.
    assert feed(conn, msg[: len(msg) // 2]) == []
    assert conn._reader.buffered_bytes == 0
    assert feed(conn, msg[len(msg) // 2 :]) == []
    # Many of them, in pieces: never delivered, never more held than one message's worth.
    for _ in range(20):
        msg = c.w.write(4, AUDIO, 1, 0, body)
        for i in range(0, len(msg), 1000):
            assert not any(isinstance(e, MediaMessage) for e in feed(conn, msg[i : i + 1000]))
            assert conn.held_bytes <= PREPUBLISH.max_message_size + 64
    # A larger one is refused outright.
    with pytest.raises(ProtocolError) as err:
        feed(conn, c.w.write(4, AUDIO, 1, 0, b"\xaf\x01" + bytes(PREPUBLISH.max_message_size)))
    assert err.value.kind == "message_size"


def test_partial_messages_before_a_publish_are_bounded():
    """Many chunk streams each holding most of a message: the connection's total is bounded."""
    conn = ServerConnection()
    feed(conn, handshake() + bytes(Client().command("connect", 1.0, {"app": "live"}).out))
    size = PREPUBLISH.max_message_size
    with pytest.raises(ProtocolError) as err:
        for csid in range(10, 10 + PREPUBLISH.max_chunk_streams):
            # 128-byte chunks (the default chunk size): each stream holds size - 128 bytes.
            part = header(csid, size, COMMAND_AMF0) + bytes(128)
            part += b"".join(bytes([0xC0 | csid]) + bytes(128) for _ in range(size // 128 - 2))
            feed(conn, part)
    assert err.value.kind == "buffered"
    assert conn._reader.buffered_bytes <= PREPUBLISH.max_buffered_bytes


def test_the_publish_decision_switches_the_limits():
    conn = ServerConnection(prepublish_limits=prepublish_limits(4096))
    assert conn.prepublish_limits.max_message_size == 4096
    c = Client(BIG_CHUNKS).publish_flow()
    events = feed(conn, handshake() + bytes(c.out))
    assert any(isinstance(e, PublishRequested) for e in events)
    assert conn._reader.limits == conn.limits
    # pre-publish limits are never looser than the normal ones
    tight = ServerConnection(limits=prepublish_limits(2048), prepublish_limits=prepublish_limits(8192))
    assert tight.prepublish_limits.max_message_size == 2048


def test_a_rejected_publish_keeps_the_small_limits():
    conn = ServerConnection()
    c = Client().publish_flow()
    batch = conn.receive_data(handshake() + bytes(c.out))
    assert any(isinstance(e, PublishRequested) for e in batch)
    conn.reject_publish(1, "Unknown or revoked stream key")
    assert conn._reader.limits == conn.prepublish_limits
    assert commands(conn.data_to_send())[-1][3]["code"] == "NetStream.Publish.BadName"


def test_messages_before_a_publish_are_counted():
    """Pings are answered: an unauthenticated peer gets a few hundred; a publisher any number."""
    pings = Client()
    for i in range(PREPUBLISH.max_messages + 1):
        pings.raw(2, USER_CONTROL, 0, 0, struct.pack(">HI", 6, i))
    with pytest.raises(ProtocolError) as err:
        feed(ServerConnection(), handshake() + bytes(pings.out))
    assert err.value.kind == "messages"
    conn = ServerConnection()
    c = Client().publish_flow()
    for i in range(5 * PREPUBLISH.max_messages):
        c.raw(2, USER_CONTROL, 0, 0, struct.pack(">HI", 6, i))
    feed(conn, handshake() + bytes(c.out))
    assert conn.data_to_send().count(struct.pack(">H", 7)) >= 5 * PREPUBLISH.max_messages


def test_chunk_reader_declared_and_effective_chunk_size():
    r = ChunkReader(prepublish_limits(4096))
    r.set_chunk_size(1 << 20)
    assert (r.declared_chunk_size, r.chunk_size) == (1 << 20, 4096)
    with pytest.raises(ProtocolError):
        r.set_chunk_size((1 << 24) + 1)  # the refusal bound is unchanged
    r.limits = PREPUBLISH.__class__()
    assert r.chunk_size == 1 << 20
