"""The websockets internals the gateway uses (services/gateway/wsadapter.py): the installed
websockets has every one, each does what the gateway relies on, and no other gateway module
reaches below websockets' public API."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import websockets
from websockets.asyncio.client import connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.frames import Frame

from services.gateway import wsadapter
from services.gateway.wsadapter import CaptionServerConnection, Wire

GATEWAY = Path(wsadapter.__file__).parent
# How an internal reads in source: an attribute of INTERNALS, or the override.
INTERNAL_USE = re.compile(
    r"\.(protocol|send_in_progress|transport|connection_lost_waiter|send_data|handler_tasks|close_task"
    r"|close_rcvd_then_sent|close_sent)\b|\bprocess_event\b"
)


async def _one_connection(check) -> None:
    """Run ``check(ws, server)`` inside the handler of a real server, against a real client."""
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    holder: dict[str, Server] = {}

    async def handler(ws: ServerConnection) -> None:
        try:
            await check(ws, holder["server"])
        except BaseException as exc:
            done.set_exception(exc)
            raise
        else:
            done.set_result(None)

    async with serve(handler, "127.0.0.1", 0, create_connection=CaptionServerConnection) as server:
        holder["server"] = server
        port = next(iter(server.sockets)).getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}", ping_interval=None) as client, asyncio.TaskGroup() as tg:
            consumer = tg.create_task(_drain(client))
            try:
                await asyncio.wait_for(asyncio.shield(done), 30)
            finally:
                consumer.cancel()
    await done


async def _drain(client) -> None:
    """The client reads (and so answers pings and closes) and echoes text back."""
    async for message in client:
        if message == "echo me":
            await client.send("echoed")


async def test_installed_websockets_has_every_internal_the_gateway_uses():
    async def check(ws: ServerConnection, server: Server) -> None:
        missing = wsadapter.missing_internals(ws, server)
        assert not missing, (
            f"websockets {websockets.__version__} lacks {missing}: see services/gateway/wsadapter.py "
            "(INTERNALS says which releases have each) and pyproject.toml's websockets range"
        )

    await _one_connection(check)


def test_a_missing_internal_is_reported():
    class Bare:
        protocol = object()

    assert "ServerConnection.send_in_progress" in wsadapter.missing_internals(Bare(), Bare())  # type: ignore[arg-type]
    assert "Server.handler_tasks" in wsadapter.missing_internals(Bare(), Bare())  # type: ignore[arg-type]


async def test_each_internal_does_what_the_gateway_relies_on():
    async def check(ws: ServerConnection, server: Server) -> None:
        wire = Wire(ws)
        loop = asyncio.get_running_loop()
        frames: asyncio.Queue[Frame] = asyncio.Queue()
        pongs: asyncio.Queue[bytes] = asyncio.Queue()
        lost = loop.create_future()
        wire.take_frames(frames.put_nowait)
        wire.take_pongs(pongs.put_nowait)
        wire.on_lost(lambda _f: lost.set_result(None))
        assert wire.open and wire.writable(2**15)
        assert asyncio.current_task() in wsadapter.handler_tasks(server)
        assert wsadapter.close_task(server) is None

        wire.ping(b"\x00\x00\x00\x07")  # synchronous; its pong comes to the callback
        assert await asyncio.wait_for(pongs.get(), 10) == b"\x00\x00\x00\x07"
        wire.text(b"echo me")  # a synchronous text frame; the client answers it
        frame = await asyncio.wait_for(frames.get(), 10)  # a data frame: to the callback, not recv
        assert bytes(frame.data) == b"echoed"

        await ws.close(1000, "bye")
        assert wire.close_answered and wire.close_sent_code == 1000 and not wire.open
        await asyncio.wait_for(lost, 10)

    await _one_connection(check)


def test_no_other_gateway_module_uses_websockets_internals():
    offenders = [
        f"{path.name}:{n}: {line.strip()}"
        for path in sorted(GATEWAY.glob("*.py"))
        if path.name != "wsadapter.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if INTERNAL_USE.search(line.replace("wsadapter.", ""))
    ]
    assert not offenders, "websockets internals outside wsadapter.py:\n" + "\n".join(offenders)
