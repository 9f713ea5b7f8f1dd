"""The publisher's side of RTMP (shared/rtmp/client.py) against our server's state machine, in
memory: the publish sequence, the server's chunk size adopted, refusals as events, pings, and
media chunked apart from the connection's own messages."""

from __future__ import annotations

import struct

import pytest

from shared.rtmp import MediaMessage, PublishRequested, ServerConnection, amf0
from shared.rtmp.chunks import AUDIO, COMMAND_AMF0, DATA_AMF0, USER_CONTROL, VIDEO, ChunkWriter
from shared.rtmp.client import ClientConnection, PublishStarted, Refused, Status, chunk_media, split_url
from tests.rtmp.helpers import feed


def converse(client: ClientConnection, server: ServerConnection, accept: bool = True) -> tuple[list, list]:
    """Pass bytes both ways until neither has anything to say; (client events, server events)."""
    client_events, server_events = [], []
    while out := client.data_to_send():
        server_events += feed(server, out, accept=accept)
        client_events += client.receive_data(server.data_to_send())
    return client_events, server_events


def test_publish_sequence_as_ffmpeg_says_it():
    server = ServerConnection(chunk_size=4096)
    client = ClientConnection("live", "key-1", tc_url="rtmp://h/live")
    events, seen = converse(client, server)
    assert events == [PublishStarted(1, "Publishing.")]
    assert [type(e).__name__ for e in seen] == ["Connected", "PublishRequested"]
    assert seen[1] == PublishRequested(1, "key-1", "live") and seen[0].tc_url == "rtmp://h/live"
    assert client.state == "publishing" and client.stream_id == 1
    assert client.chunk_size == 4096  # the server's, echoed to it (ffmpeg does the same)
    assert server.publishing == {1: "key-1"}


def test_own_chunk_size_and_media_arrive_as_sent():
    server = ServerConnection(chunk_size=4096)
    client = ClientConnection("live", "key-1", chunk_size=1000)
    converse(client, server)
    assert client.chunk_size == 1000
    messages = [
        (DATA_AMF0, 0, amf0.encode("@setDataFrame", "onMetaData", {"duration": 1.0})),
        (AUDIO, 0, b"\xaf\x00\x12\x10"),
        (VIDEO, 0, b"\x17\x00" + bytes(40)),
        (VIDEO, 0, b"\x17\x01" + bytes(range(256)) * 40),  # chunked in 11 pieces
        (AUDIO, 23, b"\xaf\x01" + bytes(300)),
        (AUDIO, 46, b"\xaf\x01" + bytes(301)),
        (VIDEO, 33, b"\x27\x01" + bytes(5000)),
    ]
    chunker = client.media_chunker()
    sent = b"".join(chunker.chunk(*m) for m in messages)
    blob, ends = chunk_media(messages, client.chunk_size, client.stream_id)
    assert blob == sent and ends[-1] == len(blob)  # the same bytes for every such connection
    events = feed(server, client.data_to_send() + blob)
    media = [(e.type_id, e.timestamp, e.payload) for e in events if isinstance(e, MediaMessage)]
    assert media == [m for m in messages if m[0] != DATA_AMF0]
    client.unpublish()
    assert [type(e).__name__ for e in feed(server, client.data_to_send())] == ["Unpublished"]


def test_a_refused_publish_is_an_event():
    server = ServerConnection()
    client = ClientConnection("live", "nope")
    events, _ = converse(client, server, accept=False)
    assert events == [Refused("publish", "NetStream.Publish.BadName", "Unknown or revoked stream key")]
    assert client.state == "refused"
    with pytest.raises(RuntimeError):
        client.media_chunker()


def test_errors_and_statuses_of_the_server():
    client = ClientConnection("live", "k", random=bytes(1528))
    client.data_to_send()
    writer = ChunkWriter()

    def command(*values) -> bytes:
        return writer.write(3, COMMAND_AMF0, 0, 0, amf0.encode(*values))

    s0s1s2 = b"\x03" + bytes(2 * 1536)
    assert client.receive_data(s0s1s2) == []
    error = {"level": "error", "code": "NetConnection.Connect.Rejected", "description": "no"}
    assert client.receive_data(command("_error", 1.0, None, error)) == [
        Refused("connect", "NetConnection.Connect.Rejected", "no")
    ]
    # a publishing client hears later statuses and answers pings
    client = ClientConnection("live", "k")
    server = ServerConnection()
    converse(client, server)
    server.ping(1234)
    server.reject_publish(1, "Revoked", code="NetStream.Unpublish.Success")
    (status,) = client.receive_data(server.data_to_send())
    assert isinstance(status, Status) and (status.code, status.description) == (
        "NetStream.Unpublish.Success",
        "Revoked",
    )
    pong = client.data_to_send()
    assert struct.pack(">HI", 7, 1234) in pong and bytes([USER_CONTROL]) in pong


def test_split_url():
    assert split_url("rtmp://127.0.0.1:1936/live/k-1") == ("rtmp", "127.0.0.1", 1936, "live", "k-1")
    assert split_url("rtmp://host/a/b/key?x=1") == ("rtmp", "host", 1935, "a/b", "key?x=1")
    with pytest.raises(ValueError):
        split_url("rtmp://host/key")
