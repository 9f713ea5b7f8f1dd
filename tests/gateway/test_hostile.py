"""Hostile and careless clients against a real gateway over real sockets (issue 19): a PING flood
that never reads, control frames past the inbound rate, bad tokens from an address a good client
shares (directly and behind a proxy), and one token opening connection after connection.

Each test reproduces the attack; none asserts memory or time (bench/ measures those): they assert
what the gateway did — the connection aborted or closed, the count on a metric, a good client
still served."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import threading

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from services.gateway import metrics
from services.gateway.auth import TaskRef
from tests.gateway.conftest import ws_url
from tests.gateway.helpers import add_caption, make_task
from tests.support.polling import eventually as wait_for

FLOOD_LIMIT_BYTES = 48 * 2**20  # far beyond the kernel's socket buffers: only userspace can hold it


def handshake(port: int, query: str = "", headers: dict[str, str] | None = None) -> socket.socket:
    """A raw-socket WebSocket opening handshake; returns the socket after the 101. Its receive
    buffer is small, so what the gateway writes backs up into the gateway quickly."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    sock.sendall(
        f"GET /v1/captions{query} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, "closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def masked(opcode: int, payload: bytes) -> bytes:
    """One client frame (clients must mask, RFC 6455 section 5.3), payload < 126 bytes."""
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + body


PING = 0x9


def flood(sock: socket.socket, frame: bytes, stop: threading.Event) -> str:
    """Send ``frame`` over and over, never reading; how it ended: "closed" (the gateway dropped
    the connection), "stalled" (nothing taken for 30 s) or "open" (the limit or ``stop`` came)."""
    batch = frame * max(1, 65536 // len(frame))
    sent = 0
    try:
        while sent < FLOOD_LIMIT_BYTES and not stop.is_set():
            sock.sendall(batch)
            sent += len(batch)
    except TimeoutError:
        return "stalled"
    except OSError:  # ECONNRESET / EPIPE: aborted by the gateway
        return "closed"
    return "open"


async def recv_json(ws, timeout: float = 10.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def expect_close(ws, code: int) -> str:
    with pytest.raises(ConnectionClosed) as info:
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    assert info.value.rcvd is not None, "closed without a close frame"
    assert info.value.rcvd.code == code
    return info.value.rcvd.reason


# --- 1. PING floods and the write cap ------------------------------------------------------------
@pytest.mark.parametrize("with_token", [False, True])
async def test_ping_flood_that_never_reads_is_aborted_by_the_write_cap(start_gateway, redis_client, with_token):
    """The rate limit set out of the way (a huge rate): the write cap alone ends the flood. A
    reading client of the same gateway keeps getting its captions."""
    token = make_task(redis_client)
    good = make_task(redis_client, "E1", "T2")
    gw = await start_gateway(messages_per_second=1e9)
    before = metrics.WRITE_BUFFER_ABORTS._value.get() if hasattr(metrics, "WRITE_BUFFER_ABORTS") else 0
    async with connect(ws_url(gw, f"?token={good}")) as reader:
        sock = await asyncio.to_thread(handshake, gw.port, f"?token={token}" if with_token else "")
        stop = threading.Event()
        flooding = asyncio.create_task(asyncio.to_thread(flood, sock, masked(PING, b"p" * 125), stop))
        try:
            add_caption(redis_client, "E1", "T2", 0)
            assert (await recv_json(reader))["response"]["start"] == 0.0
            outcome = await flooding
        finally:
            stop.set()
            await asyncio.gather(flooding, return_exceptions=True)
            sock.close()
        assert outcome == "closed", f"the gateway kept the flooding connection ({outcome})"
        add_caption(redis_client, "E1", "T2", 1)
        assert (await recv_json(reader))["response"]["start"] == 1.0
    assert metrics.WRITE_BUFFER_ABORTS._value.get() >= before + 1


async def test_ping_flood_before_authentication_is_dropped_by_the_rate_limit(start_gateway, redis_client):
    """No token yet (the first message would carry it): control frames count in the inbound
    rate, and a flood is dropped at once (nothing would read a polite close)."""
    make_task(redis_client)
    gw = await start_gateway(messages_per_second=5.0)
    before = metrics.INBOUND_REFUSED._value.get()
    sock = await asyncio.to_thread(handshake, gw.port)
    try:
        outcome = await asyncio.to_thread(flood, sock, masked(PING, b""), threading.Event())
    finally:
        sock.close()
    assert outcome == "closed"
    assert metrics.INBOUND_REFUSED._value.get() == before + 1
    await wait_for(lambda: not gw.connections)


async def test_pings_past_the_inbound_rate_close_1008(start_gateway, redis_client):
    """A client that reads (and so gets its pongs) but pings faster than the message rate is
    closed like one flooding messages."""
    token = make_task(redis_client)
    gw = await start_gateway(messages_per_second=5.0)
    before = metrics.INBOUND_REFUSED._value.get()
    async with connect(ws_url(gw, f"?token={token}"), ping_interval=None) as ws:
        for _ in range(30):
            try:
                await ws.ping()
            except ConnectionClosed:
                break
        reason = await expect_close(ws, 1008)
    assert "too many" in reason
    assert metrics.INBOUND_REFUSED._value.get() == before + 1


async def test_pongs_to_the_gateways_own_pings_are_not_counted(start_gateway, redis_client):
    """The gateway pings after frames (its pongs prove delivery): those pongs never count, even
    with a message rate below the ping rate."""
    token = make_task(redis_client)
    gw = await start_gateway(messages_per_second=1.0, ack_interval_seconds=0.05)
    before = metrics.INBOUND_REFUSED._value.get()
    async with connect(ws_url(gw, f"?token={token}")) as ws:
        for n in range(30):
            add_caption(redis_client, "E1", "T1", n)
            assert (await recv_json(ws))["response"]["start"] == float(n)
            await asyncio.sleep(0.06)  # a ping (and its pong) after each frame
    assert metrics.INBOUND_REFUSED._value.get() == before


# --- 2. Failed-auth limits never refuse a valid token ----------------------------------------
async def bad_attempts(gw, n: int, headers: dict[str, str] | None = None) -> None:
    for _ in range(n):
        async with connect(ws_url(gw, "?token=wrong"), additional_headers=headers or {}) as ws:
            await expect_close(ws, 4001)


async def refused_429(gw, headers: dict[str, str] | None = None) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(ws_url(gw, "?token=still-wrong"), additional_headers=headers or {}):
            pass
    assert info.value.response.status_code == 429


@pytest.mark.parametrize("transport", ["query", "bearer", "message"])
async def test_a_valid_token_is_served_from_an_address_over_the_failure_limit(start_gateway, redis_client, transport):
    token = make_task(redis_client)
    add_caption(redis_client, "E1", "T1", 0)
    gw = await start_gateway(auth_failures_per_minute=3)
    await bad_attempts(gw, 3)
    await refused_429(gw)  # the bad attempts are still limited
    headers, query = {}, ""
    if transport == "query":
        query = f"?token={token}"
    elif transport == "bearer":
        headers = {"Authorization": f"Bearer {token}"}
    async with connect(ws_url(gw, query), additional_headers=headers) as ws:
        if transport == "message":
            await ws.send(json.dumps({"token": token}))
        assert (await recv_json(ws))["response"]["start"] == 0.0
    # A bad token in the first message from that address is refused as ever.
    async with connect(ws_url(gw)) as ws:
        await ws.send(json.dumps({"token": "wrong"}))
        await expect_close(ws, 4001)


async def test_behind_a_proxy_each_forwarded_client_is_limited_on_its_own(start_gateway, redis_client):
    """REACHLIVE_GATEWAY_TRUSTED_PROXY_HOPS=1 (the shipped nginx / ingress-nginx append the
    address they saw): every request comes from the proxy's address, the limit follows
    X-Forwarded-For's rightmost entry, and entries a client writes to its left change nothing."""
    token = make_task(redis_client)
    add_caption(redis_client, "E1", "T1", 0)
    gw = await start_gateway(auth_failures_per_minute=3, trusted_proxy_hops=1)
    attacker = {"X-Forwarded-For": "203.0.113.9"}
    await bad_attempts(gw, 3, attacker)
    await refused_429(gw, attacker)
    # The attacker prepends other addresses (the proxy appends the real one): still limited.
    await refused_429(gw, {"X-Forwarded-For": "198.51.100.1, 10.0.0.7, 203.0.113.9"})
    # Another client behind the same proxy is not: its bad token is a 4001, its good one served.
    other = {"X-Forwarded-For": "198.51.100.1"}
    async with connect(ws_url(gw, "?token=wrong"), additional_headers=other) as ws:
        await expect_close(ws, 4001)
    async with connect(ws_url(gw, f"?token={token}"), additional_headers=other) as ws:
        assert (await recv_json(ws))["response"]["start"] == 0.0
    # Nor is the victim whose address the attacker wrote on the left.
    async with connect(ws_url(gw, "?token=wrong"), additional_headers={"X-Forwarded-For": "198.51.100.2"}) as ws:
        await expect_close(ws, 4001)


# --- 3. Connections per task -----------------------------------------------------------------
async def test_connections_per_task_are_capped_with_a_1013_and_a_reason(start_gateway, redis_client):
    token = make_task(redis_client)
    other = make_task(redis_client, "E1", "T2")
    add_caption(redis_client, "E1", "T1", 0)
    add_caption(redis_client, "E1", "T2", 0)
    gw = await start_gateway(max_connections_per_task=2)
    before = metrics.TASK_LIMIT_REFUSALS._value.get() if hasattr(metrics, "TASK_LIMIT_REFUSALS") else 0
    url = ws_url(gw, f"?token={token}")
    async with connect(url) as a, connect(url) as b:
        for ws in (a, b):
            assert (await recv_json(ws))["response"]["start"] == 0.0
        async with connect(url) as c:
            reason = await expect_close(c, 1013)
        assert "too many connections" in reason
        assert metrics.TASK_LIMIT_REFUSALS._value.get() == before + 1
        # Another task of the same event is not affected.
        async with connect(ws_url(gw, f"?token={other}")) as d:
            assert (await recv_json(d))["response"]["start"] == 0.0
        await a.close()
        await wait_for(lambda: gw.task_connections.count(TaskRef("E1", "T1")) == 1)
        async with connect(url) as e:  # room again
            assert (await recv_json(e))["response"]["start"] == 0.0
        add_caption(redis_client, "E1", "T1", 1)
        assert (await recv_json(b))["response"]["start"] == 1.0
