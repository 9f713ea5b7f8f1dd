"""Token transports, bad tokens, revocation and the failed-attempt limit, with a real client."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from services.gateway import metrics
from shared.registry import revoke_task
from tests.gateway.conftest import ws_url
from tests.gateway.helpers import add_caption, check_schema, make_task


async def expect_close(ws, code: int) -> str:
    """The next thing on the socket is a close with ``code``: no frame at all before it."""
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(ws.recv(), 10)
    assert info.value.rcvd is not None, "closed without a close frame"
    assert info.value.rcvd.code == code
    return info.value.rcvd.reason


@pytest.mark.parametrize("transport", ["bearer", "query", "message"])
async def test_each_token_transport_delivers_captions(start_gateway, redis_client, transport):
    token = make_task(redis_client)
    sent = [add_caption(redis_client, "E1", "T1", n) for n in range(3)]
    gw = await start_gateway()
    headers, query = {}, ""
    if transport == "bearer":
        headers = {"Authorization": f"Bearer {token}"}
    elif transport == "query":
        query = f"?token={token}"
    async with connect(ws_url(gw, query), additional_headers=headers) as ws:
        if transport == "message":
            await ws.send(json.dumps({"token": token}))
        frames = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in sent]
        live = add_caption(redis_client, "E1", "T1", 3)
        frames.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
    assert [f["response"]["start"] for f in frames] == [0.0, 1.0, 2.0, 3.0]
    assert live
    for f in frames:
        check_schema(f)


async def test_frames_are_the_stream_json_byte_for_byte_as_text(start_gateway, redis_client):
    token = make_task(redis_client)
    add_caption(redis_client, "E1", "T1", 0, text="héllo wörld, ça va?")
    gw = await start_gateway()
    async with connect(ws_url(gw, f"?token={token}")) as ws:
        frame = await asyncio.wait_for(ws.recv(), 5)
    assert isinstance(frame, str)  # a text frame
    ((_sid, fields),) = redis_client.xrange("rl:{E1}:captions:T1")
    assert frame == fields[b"json"].decode()
    check_schema(json.loads(frame))


@pytest.mark.parametrize(
    "how",
    [
        "unknown-query",
        "unknown-bearer",
        "unknown-message",
        "not-json",
        "json-without-token",
        "empty-query",
        "other-task-hash",
        "oversized-token",
    ],
)
async def test_bad_tokens_close_4001_and_send_nothing(start_gateway, redis_client, how):
    make_task(redis_client)
    add_caption(redis_client, "E1", "T1", 0)
    gw = await start_gateway()
    before = metrics.AUTH_FAILURES.labels("invalid")._value.get() + metrics.AUTH_FAILURES.labels("missing")._value.get()
    headers, query, first = {}, "", None
    if how == "unknown-query":
        query = "?token=nope"
    elif how == "unknown-bearer":
        headers = {"Authorization": "Bearer nope"}
    elif how == "unknown-message":
        first = json.dumps({"token": "nope"})
    elif how == "not-json":
        first = "hello"
    elif how == "json-without-token":
        first = json.dumps({"tok": "x"})
    elif how == "empty-query":
        query = "?token="
        first = "{}"
    elif how == "other-task-hash":
        # A token index entry whose task holds another hash (e.g. a rotated token) is refused.
        from shared import keys
        from shared.hashing import secret_hash

        redis_client.hset(keys.caption_token(secret_hash("stale")), mapping={"event": "E1", "task": "T1"})
        query = "?token=stale"
    elif how == "oversized-token":
        query = "?token=" + "x" * 2000
    async with connect(ws_url(gw, query), additional_headers=headers) as ws:
        if first is not None:
            await ws.send(first)
        reason = await expect_close(ws, 4001)
    assert reason.startswith("unauthorized")
    after = metrics.AUTH_FAILURES.labels("invalid")._value.get() + metrics.AUTH_FAILURES.labels("missing")._value.get()
    assert after == before + 1


async def test_no_token_within_auth_timeout_closes_4001(start_gateway, redis_client):
    make_task(redis_client)
    add_caption(redis_client, "E1", "T1", 0)
    gw = await start_gateway(auth_timeout_seconds=0.3)
    async with connect(ws_url(gw)) as ws:
        reason = await expect_close(ws, 4001)
    assert "no token" in reason


async def test_revoked_token_is_refused(start_gateway, redis_client):
    token = make_task(redis_client)
    add_caption(redis_client, "E1", "T1", 0)
    revoke_task(redis_client, "E1", "T1")
    gw = await start_gateway()
    async with connect(ws_url(gw, f"?token={token}")) as ws:
        await expect_close(ws, 4001)


async def test_revocation_closes_open_connections_at_once(start_gateway, redis_client):
    token = make_task(redis_client)
    other = make_task(redis_client, "E1", "T2")
    add_caption(redis_client, "E1", "T1", 0)
    gw = await start_gateway(ping_interval_seconds=60.0)  # the periodic re-check is far away
    async with connect(ws_url(gw, f"?token={token}")) as ws, connect(ws_url(gw, f"?token={other}")) as ws2:
        await asyncio.wait_for(ws.recv(), 5)
        revoke_task(redis_client, "E1", "T1")
        reason = await expect_close(ws, 4003)
        assert "cancelled" in reason
        # The other task of the event is untouched.
        add_caption(redis_client, "E1", "T2", 0)
        assert json.loads(await asyncio.wait_for(ws2.recv(), 5))["response"]["start"] == 0.0
    async with connect(ws_url(gw, f"?token={token}")) as ws:
        await expect_close(ws, 4001)


async def test_failed_attempts_are_rate_limited_per_address(start_gateway, redis_client):
    make_task(redis_client)
    gw = await start_gateway(auth_failures_per_minute=3)
    for _ in range(3):
        async with connect(ws_url(gw, "?token=wrong")) as ws:
            await expect_close(ws, 4001)
    with pytest.raises(InvalidStatus) as info:
        async with connect(ws_url(gw, "?token=wrong-again")):
            pass
    assert info.value.response.status_code == 429
    assert int(info.value.response.headers["Retry-After"]) >= 1
    # A valid token from the same address is served all the same: tests/gateway/test_hostile.py.


async def test_bad_types_parameter_is_refused(start_gateway, redis_client):
    token = make_task(redis_client)
    gw = await start_gateway(caption_types="captions")
    async with connect(ws_url(gw, f"?token={token}&types=transcript")) as ws:
        reason = await expect_close(ws, 1008)
    assert "captions" in reason
