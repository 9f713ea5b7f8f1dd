"""Hostile and careless peers against a real ingest over real sockets (issue 19): pre-publish
limits, the handshake deadline over writes, the write buffer bound, connection caps overall and
per address, and the cap on publishers per task. Legitimate publishers are unaffected."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time

from services.ingest import metrics
from shared.rtmp.chunks import AUDIO, COMMAND_AMF0, USER_CONTROL
from shared.rtmp.handshake import PACKET
from tests.ingest.conftest import end_window, ffmpeg_publish, make_event, wait_for
from tests.ingest.test_interop import check_audio
from tests.rtmp.helpers import AAC_CONFIG, Client, commands, handshake


def count(metric, **labels) -> float:
    return metric.labels(**labels)._value.get()


async def open_from(port: int, source: str = "127.0.0.1", rcvbuf: int = 0) -> tuple:
    """A client connection to the ingest from ``source`` (any 127/8 address is loopback), with
    a small receive buffer if asked (a peer that reads nothing fills it at once)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((source, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return await asyncio.open_connection(sock=sock)


async def closed_by_server(reader: asyncio.StreamReader, timeout: float) -> bool:
    """Read (and drop) until the server closes or resets the connection; False at ``timeout``."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), deadline - time.monotonic())
            except TimeoutError:
                return False
            if not chunk:
                return True
    except ConnectionError:
        return True
    return False


def server_side_established(server_port: int, client_port: int) -> bool:
    """The kernel's view: the ingest's end of this connection is still ESTABLISHED (Linux)."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            if (
                int(local.split(":")[1], 16) == server_port
                and int(remote.split(":")[1], 16) == client_port
                and state == "01"
            ):
                return True
    return False


def ping_flood(n: int) -> bytes:
    """Ping requests (user control 6): each is answered, before any connect."""
    c = Client()
    for i in range(n):
        c.raw(2, USER_CONTROL, 0, 0, struct.pack(">HI", 6, i))
    return bytes(c.out)


def small_send_buffers(server) -> None:
    """Accepted sockets inherit the listener's SO_SNDBUF: with a small one, a peer that reads
    nothing fills the kernel's buffers after a few kB of our answers instead of a few MB, and the
    ingest's own write buffer grows (what happens anyway, with more bytes, on a real host)."""
    for listener in server._server.sockets:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)


# --- pre-publish limits ---------------------------------------------------------------------
async def test_large_prepublish_messages_are_refused_while_a_publisher_publishes(start_ingest, redis_client):
    """The issue's attack: 20 connections set a 4 MiB chunk size and send most of an 8 MiB
    message before connect. Each is closed at the message's header (they were held until the
    handshake timeout, 8 MiB each), and a real publisher publishes meanwhile."""
    make_event(redis_client)
    server = await start_ingest(handshake_timeout_seconds=60.0)
    before = count(metrics.PROTOCOL_ERRORS, kind="message_size")
    good = asyncio.create_task(ffmpeg_publish(f"rtmp://127.0.0.1:{server.port}/live/key-1"))
    header = bytes([3]) + bytes(3) + (8 << 20).to_bytes(3, "big") + bytes([COMMAND_AMF0]) + bytes(4)
    attack = handshake() + bytes(Client().set_chunk_size(4 << 20).out) + header + bytes(1 << 20)
    peers = [await open_from(server.port, rcvbuf=4096) for _ in range(20)]
    for _reader, writer in peers:
        writer.write(attack)
    closed = await asyncio.gather(*(closed_by_server(reader, 20.0) for reader, _w in peers))
    assert all(closed), f"{closed.count(False)} of 20 still open"
    assert count(metrics.PROTOCOL_ERRORS, kind="message_size") == before + 20
    for _reader, writer in peers:
        writer.close()
    code, err = await good
    assert code == 0, err[-2000:]
    await end_window(redis_client, server)
    check_audio(redis_client)


async def test_a_publisher_with_a_huge_chunk_size_still_publishes(start_ingest, redis_client):
    """A chunk size far above the pre-publish limit is honoured up to it (no chunk is larger than
    its message): a publisher that declares 4 MiB before connect is accepted, and its media, sent
    as whole messages in single chunks, is read under the normal limits."""
    make_event(redis_client)
    server = await start_ingest()
    c = Client(4 << 20).publish_flow()
    reader, writer = await open_from(server.port)
    writer.write(handshake() + bytes(c.out))
    writer.write(c.w.write(4, AUDIO, 1, 0, b"\xaf\x00" + AAC_CONFIG))
    received = b""
    while b"NetStream.Publish" not in received:
        received += await asyncio.wait_for(reader.read(65536), 10)
    assert commands(received)[-1][3]["code"] == "NetStream.Publish.Start"
    writer.close()


# --- writes: the handshake deadline and the write buffer --------------------------------------
async def test_a_preauth_peer_that_does_not_read_is_closed_at_the_handshake_deadline(start_ingest, redis_client):
    """A peer that floods pings (each answered) and reads nothing blocks our writes; it used to
    outlive the handshake deadline, waiting on them (for the idle timeout, then a close that
    waits for the buffer to drain: for ever)."""
    # (pings answered without the pre-publish message count, which would end this at once)
    server = await start_ingest(
        handshake_timeout_seconds=1.0, max_write_buffer_bytes=4 << 20, prepublish_max_messages=1 << 20
    )
    small_send_buffers(server)
    before = count(metrics.CLOSED, cause="handshake_timeout")
    _reader, writer = await open_from(server.port, rcvbuf=4096)
    client_port = writer.get_extra_info("sockname")[1]
    writer.write(handshake() + ping_flood(50_000))
    await wait_for(lambda: server_side_established(server.port, client_port), 5)
    try:
        await wait_for(lambda: not server_side_established(server.port, client_port), 15)
        assert count(metrics.CLOSED, cause="handshake_timeout") == before + 1
    finally:
        writer.transport.abort()


async def test_a_peer_that_does_not_read_is_aborted_past_the_write_buffer(start_ingest, redis_client):
    """Before and after its publish: what a peer has not read of ours is bounded."""
    make_event(redis_client)
    server = await start_ingest(
        handshake_timeout_seconds=60.0, max_write_buffer_bytes=8192, prepublish_max_messages=1 << 20
    )
    small_send_buffers(server)
    for prefix in (b"", bytes(Client().publish_flow().out)):
        before = count(metrics.CLOSED, cause="write_buffer")
        _reader, writer = await open_from(server.port, rcvbuf=4096)
        client_port = writer.get_extra_info("sockname")[1]
        writer.write(handshake() + prefix + ping_flood(50_000))
        try:
            await wait_for(lambda: count(metrics.CLOSED, cause="write_buffer") == before + 1, 15)  # noqa: B023
            await wait_for(lambda: not server_side_established(server.port, client_port), 5)  # noqa: B023
        finally:
            writer.transport.abort()


async def test_a_preauth_ping_flood_is_cut_at_the_message_count(start_ingest, redis_client):
    """Each ping is answered: before its publish a peer gets at most a few hundred messages'
    worth of our work and answers (it used to get them all until the handshake deadline)."""
    server = await start_ingest(handshake_timeout_seconds=60.0)
    before = count(metrics.PROTOCOL_ERRORS, kind="messages")
    reader, writer = await open_from(server.port)
    writer.write(handshake() + ping_flood(50_000))
    assert await closed_by_server(reader, 10.0)
    assert count(metrics.PROTOCOL_ERRORS, kind="messages") == before + 1
    writer.close()


# --- connection caps --------------------------------------------------------------------------
async def partial_handshake(port: int, source: str) -> tuple:
    """A pending connection: C0 and half of C1, then nothing."""
    reader, writer = await open_from(port, source)
    writer.write(b"\x03" + bytes(700))
    return reader, writer


async def served(port: int, source: str) -> tuple:
    """A connection whose handshake the ingest answers (S0 S1 S2), then left pending."""
    reader, writer = await open_from(port, source)
    writer.write(handshake())
    got = b""
    while len(got) < 1 + 2 * PACKET:
        chunk = await asyncio.wait_for(reader.read(65536), 10)
        assert chunk, "refused"
        got += chunk
    return reader, writer


async def publish_from(port: int, source: str) -> tuple:
    reader, writer = await open_from(port, source)
    writer.write(handshake() + bytes(Client().publish_flow().out))
    received = b""
    while b"NetStream.Publish" not in received:
        chunk = await asyncio.wait_for(reader.read(65536), 10)
        assert chunk, "refused"
        received += chunk
    assert commands(received)[-1][3]["code"] == "NetStream.Publish.Start"
    return reader, writer


async def test_per_address_cap_refuses_that_address_only(start_ingest, redis_client, caplog):
    make_event(redis_client)
    server = await start_ingest(handshake_timeout_seconds=60.0, max_pending_per_address=3)
    before = count(metrics.CONNECTIONS_REFUSED, cap="per_address")
    held = [await partial_handshake(server.port, "127.0.0.2") for _ in range(3)]
    caplog.set_level(logging.WARNING, logger="services.ingest.server")
    for _ in range(4):
        reader, writer = await open_from(server.port, "127.0.0.2")
        writer.write(handshake())
        assert await closed_by_server(reader, 10.0)
        writer.close()
    assert count(metrics.CONNECTIONS_REFUSED, cap="per_address") == before + 4
    lines = [r for r in caplog.records if "refusing connections" in r.getMessage()]
    assert len(lines) == 1 and "127.0.0.2" in lines[0].getMessage()  # once per address and interval
    # Another address is served: a whole publish from 127.0.0.3.
    other = await publish_from(server.port, "127.0.0.3")
    # One of 127.0.0.2's pending connections goes away: the address is served again, and its
    # accepted publisher no longer counts against it: a third pending connection is served.
    held.pop()[1].close()
    published = await wait_until_served(lambda: publish_from(server.port, "127.0.0.2"))
    refused = count(metrics.CONNECTIONS_REFUSED, cap="per_address")
    held.append(await served(server.port, "127.0.0.2"))
    assert count(metrics.CONNECTIONS_REFUSED, cap="per_address") == refused
    for _r, w in [*held, other, published]:
        w.close()


async def wait_until_served(attempt, timeout: float = 10.0):
    """Retry ``attempt`` (a refused one raises) until served: the ingest sees a close a moment
    after the peer's."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await attempt()
        except (AssertionError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_total_cap(start_ingest, redis_client):
    server = await start_ingest(handshake_timeout_seconds=60.0, max_connections=2)
    before = count(metrics.CONNECTIONS_REFUSED, cap="total")
    held = [await partial_handshake(server.port, f"127.0.0.{i}") for i in (4, 5)]
    reader, writer = await open_from(server.port, "127.0.0.6")
    assert await closed_by_server(reader, 10.0)
    assert count(metrics.CONNECTIONS_REFUSED, cap="total") == before + 1
    writer.close()
    held.pop()[1].close()
    held.append(await wait_until_served(lambda: served(server.port, "127.0.0.6")))
    for _r, w in held:
        w.close()


# --- publishers per task ----------------------------------------------------------------------
class RawPublisher:
    """A publisher of our own over a raw socket that keeps sending (AAC sequence headers)."""

    def __init__(self, port: int, key: str) -> None:
        self.port = port
        self.key = key
        self.status: dict = {}
        self._task: asyncio.Task | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def start(self) -> str:
        reader, writer = await open_from(self.port)
        self._writer = writer
        c = Client().publish_flow(key=self.key)
        writer.write(handshake() + bytes(c.out))
        received = b""
        while b"NetStream.Publish" not in received:
            chunk = await asyncio.wait_for(reader.read(65536), 10)
            if not chunk:
                break
            received += chunk
        self.status = [x for x in commands(received) if x and x[0] == "onStatus"][-1][3]
        if self.status["code"] == "NetStream.Publish.Start":
            self._task = asyncio.create_task(self._keep_sending(c, writer))
        return self.status["code"]

    async def _keep_sending(self, c: Client, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while True:
                writer.write(c.w.write(4, AUDIO, 1, 0, b"\xaf\x00" + AAC_CONFIG))
                await writer.drain()
                await asyncio.sleep(0.2)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._writer is not None:
            self._writer.close()


async def test_publishers_per_task_are_capped(start_ingest, redis_client):
    """The default cap (4) leaves room for failover (a second restream, a restarted encoder while
    its old connection lingers); a fifth publisher of the task is refused with the status every
    refusal uses, counted; other tasks are untouched; a publisher that leaves frees its slot."""
    make_event(redis_client)
    make_event(redis_client, "ev2", "t2", "key-2")
    server = await start_ingest()
    assert server.settings.max_publishers_per_task == 4
    before = count(metrics.REJECTED, reason="too_many_publishers")
    pubs = [RawPublisher(server.port, "key-1") for _ in range(5)]
    try:
        assert [await p.start() for p in pubs[:4]] == ["NetStream.Publish.Start"] * 4
        assert await pubs[4].start() == "NetStream.Publish.BadName"
        assert pubs[4].status["description"] == "Too many publishers for this stream key"
        assert count(metrics.REJECTED, reason="too_many_publishers") == before + 1
        other = RawPublisher(server.port, "key-2")
        pubs.append(other)
        assert await other.start() == "NetStream.Publish.Start"
        await pubs[0].close()

        async def again() -> None:
            pubs.append(RawPublisher(server.port, "key-1"))
            assert await pubs[-1].start() == "NetStream.Publish.Start"

        await wait_until_served(again)
    finally:
        for p in pubs:
            await p.close()
