"""The emulated Kaltura caption client against a scripted vendor server: token passing, pings,
reconnects with backoff after a drop, schema checks, the final response, and closes after which
reconnecting cannot help."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from emulators.caption_client import CaptionClient


def response(n: int, *, eos: bool = False) -> str:
    item = {"start": n * 1.0, "end": n + 0.5, "kind": "text", "value": f"w{n}", "speaker_id": str(uuid.UUID(int=1))}
    alt = {
        "transcript": f"w{n}",
        "start": n * 1.0,
        "end": n + 1.0,
        "start_pts": n * 1.0,
        "start_epoch": 1e9 + n,
        "items": [] if eos else [item],
    }
    return json.dumps(
        {
            "response": {
                "id": str(uuid.UUID(int=n + 100)),
                "type": "captions",
                "service_type": "transcription",
                "language_code": "en-US",
                "start": n * 1.0,
                "end": n + 1.0,
                "start_pts": n * 1.0,
                "start_epoch": 1e9 + n,
                "is_final": True,
                "is_end_of_stream": eos,
                "speakers": [{"id": str(uuid.UUID(int=1)), "label": None}],
                "alternatives": [alt],
            }
        }
    )


Script = Callable[[ServerConnection, int], Any]


@pytest.fixture
async def server() -> AsyncIterator[Callable[[Script], Any]]:
    """A vendor server whose handler is ``script(conn, connection_number)``; yields its URL."""
    servers = []

    async def start(script: Script) -> tuple[str, dict[str, Any]]:
        seen: dict[str, Any] = {"connections": 0, "requests": [], "pings": 0}

        async def handler(conn: ServerConnection) -> None:
            seen["connections"] += 1
            seen["requests"].append(conn.request)
            await script(conn, seen["connections"])

        srv = await serve(handler, "127.0.0.1", 0, ping_interval=None)
        servers.append(srv)
        port = next(iter(srv.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}/v1/captions", seen

    yield start
    for srv in servers:
        srv.close()
        await srv.wait_closed()


async def test_reconnects_after_a_drop_and_stops_at_the_final_response(server) -> None:
    async def script(conn: ServerConnection, n: int) -> None:
        if n == 1:
            await conn.send(response(0))
            assert conn.transport is not None
            conn.transport.abort()  # dropped: no close frame
            return
        await conn.send(response(1))
        await conn.send(response(2, eos=True))
        await conn.close(1000)

    url, seen = await server(script)
    client = CaptionClient(url=url, token="tok", backoff_initial=0.05)
    await asyncio.wait_for(client.run(), 10)
    assert client.done.is_set() and client.errors == [] and not client.fatal
    assert [r["id"] for r in client.responses()] == [str(uuid.UUID(int=n + 100)) for n in (0, 1, 2)]
    assert [r.connection for r in client.received] == [1, 2, 2]
    assert seen["connections"] == 2 and client.connections == 2
    assert all(req.headers["Authorization"] == "Bearer tok" for req in seen["requests"])


async def test_backoff_grows_while_the_server_is_unreachable(unused_tcp_port: int) -> None:
    client = CaptionClient(url=f"ws://127.0.0.1:{unused_tcp_port}/", token="t", backoff_initial=0.05, backoff_max=0.4)
    stop = asyncio.Event()
    task = asyncio.create_task(client.run(stop))
    await asyncio.sleep(1.5)
    stop.set()
    await asyncio.wait_for(task, 5)
    failures = [reason for code, reason in client.closes if code is None]
    # 0.05, 0.1, 0.2, 0.4, 0.4 ... (with jitter 0.5-1.5x): a handful of tries in 1.5 s, not hundreds
    assert 3 <= len(failures) <= 15, client.closes
    assert client.connections == 0 and not client.done.is_set()


@pytest.mark.parametrize("code", [4001, 1008])
async def test_a_refused_token_is_not_retried(server, code: int) -> None:
    async def script(conn: ServerConnection, n: int) -> None:
        await conn.close(code, "unknown token")

    url, seen = await server(script)
    client = CaptionClient(url=url, token="bad", backoff_initial=0.05)
    await asyncio.wait_for(client.run(), 10)
    assert client.fatal.startswith(f"closed {code}") and seen["connections"] == 1
    assert not client.done.is_set()


async def test_going_away_after_two_hours_is_retried(server) -> None:
    async def script(conn: ServerConnection, n: int) -> None:
        if n == 1:
            await conn.close(1001, "connection duration limit")  # Kaltura seed: Kaltura reconnects
            return
        await conn.send(response(0, eos=True))
        await conn.close(1000)

    url, _seen = await server(script)
    client = CaptionClient(url=url, token="tok", backoff_initial=0.05)
    await asyncio.wait_for(client.run(), 10)
    assert client.done.is_set() and client.closes[0][0] == 1001 and client.connections == 2


async def test_token_in_query_or_first_message_while_pinging(server) -> None:
    got: list[Any] = []

    async def script(conn: ServerConnection, n: int) -> None:
        if n == 2:
            got.append(await conn.recv())  # the token message comes first
        await asyncio.sleep(0.5)  # the client pings meanwhile; websockets answers with pongs
        await conn.send(response(0, eos=True))
        await conn.close(1000)

    url, seen = await server(script)
    client = CaptionClient(url=url, token="q-tok", transport="query", types="captions", ping_interval=0.1)
    await asyncio.wait_for(client.run(), 10)
    assert "token=q-tok" in seen["requests"][0].path and "types=captions" in seen["requests"][0].path
    assert "Authorization" not in seen["requests"][0].headers
    client2 = CaptionClient(url=url, token="m-tok", transport="message")
    await asyncio.wait_for(client2.run(), 10)
    assert json.loads(got[0]) == {"token": "m-tok"}
    assert client.done.is_set() and client2.done.is_set()


async def test_malformed_responses_are_recorded_as_errors(server) -> None:
    async def script(conn: ServerConnection, n: int) -> None:
        await conn.send("not json")
        bad = json.loads(response(0))
        del bad["response"]["start_epoch"]
        bad["response"]["type"] = "subtitles"
        await conn.send(json.dumps(bad))
        await conn.send("pong")  # the answer to a text ping is not a response
        await conn.send(response(1, eos=True))
        await conn.close(1000)

    url, _seen = await server(script)
    client = CaptionClient(url=url, token="tok")
    await asyncio.wait_for(client.run(), 10)
    assert client.done.is_set()
    assert len(client.received) == 1  # only the valid final response
    assert any("not JSON" in e for e in client.errors)
    assert any("start_epoch" in e for e in client.errors)
