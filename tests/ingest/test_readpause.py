"""Read coalescing's timer (services/ingest/readpause.py) on real sockets: a paused connection's
bytes stay in the kernel until the pause ends, then the transport reads them with no task of ours
in between, and pauses that end close together end together."""

from __future__ import annotations

import asyncio

import pytest

from services.ingest.readpause import MIN_PAUSE_SECONDS, WAKE_GRID_SECONDS, ReadPause, wake_at


def test_pauses_end_on_the_grid_never_later_than_asked():
    assert wake_at(10.003, 0.1) == pytest.approx(10.1)
    assert wake_at(10.0, 0.1) == pytest.approx(10.1)
    for now in (5.0, 5.0013, 5.0049, 5.0091):
        at = wake_at(now, 0.05)
        assert at is not None and at <= now + 0.05 + 1e-9 and now + 0.05 - at < WAKE_GRID_SECONDS
    # pauses asked from different moments that end within one grid step end at the same time
    assert wake_at(7.0012, 0.1) == wake_at(7.0077, 0.095)
    # what rounding leaves shorter than a pause worth a timer is no pause at all: read now
    assert wake_at(3.0, MIN_PAUSE_SECONDS) is None
    assert wake_at(3.008, 0.004) is None


async def _pair() -> tuple[asyncio.StreamReader, asyncio.StreamWriter, asyncio.StreamWriter, asyncio.Server]:
    accepted: asyncio.Future = asyncio.get_running_loop().create_future()

    async def on_conn(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.set_result((r, w))

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    _r, client = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    reader, writer = await accepted
    return reader, writer, client, server


async def test_bytes_wait_in_the_socket_until_the_pause_ends_then_are_read_without_a_task():
    loop = asyncio.get_running_loop()
    reader, writer, client, server = await _pair()
    try:
        pause = ReadPause(writer.transport, loop)
        at = loop.time() + 0.2
        pause.until(at)
        assert pause.active
        pause.until(at + 5)  # a pause already running is not extended
        client.write(b"x" * 1000)
        await client.drain()
        await asyncio.sleep(0.1)
        # Not read: the kernel holds them (the StreamReader's buffer is empty).
        assert len(reader._buffer) == 0  # the buffer is the thing under test
        data = await asyncio.wait_for(reader.read(65536), 2)
        assert data == b"x" * 1000
        assert loop.time() >= at - 0.002  # read once the pause ended, not before
        assert loop.time() - at < 0.15  # and right then, not at some later wakeup
        assert not pause.active
        # The transport read them on its own: the buffer filled with nobody awaiting it.
        pause.until(loop.time() + 0.05)
        client.write(b"y" * 10)
        await client.drain()
        await asyncio.sleep(0.2)
        assert bytes(reader._buffer) == b"y" * 10
    finally:
        client.close()
        writer.close()
        server.close()


async def test_a_connection_closed_during_a_pause_is_not_resumed():
    loop = asyncio.get_running_loop()
    _reader, writer, client, server = await _pair()
    try:
        pause = ReadPause(writer.transport, loop)
        pause.until(loop.time() + 0.05)
        writer.close()
        await asyncio.sleep(0.15)  # the timer ran against a closing transport: no error, no read
        assert not pause.active
        assert writer.transport.is_closing()
        pause.until(loop.time() + 0.05)
        pause.cancel()
        assert not pause.active
    finally:
        client.close()
        server.close()
