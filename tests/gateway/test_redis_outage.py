"""The gateway through Redis outages (issue 18), on a dedicated redis-server with AOF that the
test stops and restarts with its data, or freezes with SIGSTOP: open connections stay open and
get every caption once when Redis is back, new ones are told 1013 with a reason meanwhile,
``/readyz`` follows Redis, ``/livez`` does not, one log line lost / one back, no exit."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest
import redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from services.gateway.delivery import REASON_REDIS_DOWN, TRY_AGAIN
from services.gateway.server import Gateway
from shared import redis_health
from shared.settings import GatewaySettings, load
from tests.gateway.conftest import serve_probes
from tests.gateway.helpers import add_caption, make_task
from tests.gateway.test_delivery import http_get, wait_for
from tests.support.outage import OutageRedis

pytestmark = pytest.mark.slow

OUTAGE_SECONDS = 6.0


@pytest.fixture
def outage_redis(tmp_path):
    with OutageRedis(tmp_path) as server:
        yield server


@pytest.fixture
async def gateway(outage_redis):
    settings = load(GatewaySettings, ping_interval_seconds=5.0, ack_interval_seconds=0.2, drain_seconds=2.0)
    gw = Gateway(outage_redis.url, settings, "transcript,captions")
    await gw.start("127.0.0.1", 0)
    try:
        yield gw
    finally:
        if not gw.draining:
            await gw.drain()
        assert not gw.leftovers()


async def receive(ws, count: int, timeout: float = 20.0) -> list[str]:
    out = []
    for _ in range(count):
        out.append(json.loads(await asyncio.wait_for(ws.recv(), timeout))["response"]["id"])
    return out


async def refused_while_down(gw: Gateway, token: str) -> None:
    """A new connection gets 1013 and the reason at once (not a hang, not a 1011)."""
    async with connect(f"ws://127.0.0.1:{gw.port}/v1/captions?token={token}", open_timeout=10) as ws:
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 10)
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (TRY_AGAIN, REASON_REDIS_DOWN)


async def ride_through(gw: Gateway, server: OutageRedis, *, freeze: bool, caplog) -> dict[str, float]:
    client = redis.Redis.from_url(server.url)
    token = make_task(client)
    sent = [add_caption(client, "E1", "T1", n) for n in range(5)]
    ids: list[str] = []
    probe_port = serve_probes(gw)
    async with connect(f"ws://127.0.0.1:{gw.port}/v1/captions?token={token}") as ws:
        ids += await receive(ws, 5)
        await wait_for(lambda: gw.health.up, 10)
        caplog.clear()

        # The outage.
        (server.freeze if freeze else server.stop)()
        lost_at = time.monotonic()
        await wait_for(lambda: gw.health.down, 15)
        detected = time.monotonic() - lost_at
        assert (await http_get(probe_port, "/readyz"))[0] == 503
        assert (await http_get(probe_port, "/livez"))[0] == 200  # an outage is not a wedged process
        await refused_while_down(gw, token)
        # The open connection stays open through the outage: nothing arrives, nothing closes.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), max(0.5, OUTAGE_SECONDS - (time.monotonic() - lost_at)))

        # Redis back (with its data: AOF), and the relay writes on.
        if freeze:
            server.thaw()
        else:
            server.start()
        back_at = time.monotonic()
        client = redis.Redis.from_url(server.url)
        sent += [add_caption(client, "E1", "T1", n) for n in range(5, 10)]
        ids += await receive(ws, 5)
        resumed = time.monotonic() - back_at
        with pytest.raises(TimeoutError):  # and nothing twice
            await asyncio.wait_for(ws.recv(), 1.0)

    assert len(ids) == len(set(ids)) == 10
    await wait_for(lambda: gw.health.up, 15)
    # New connections are served again, resuming from the saved cursor.
    await wait_for(lambda: gw.accepting(), 15)
    async with connect(f"ws://127.0.0.1:{gw.port}/v1/captions?token={token}") as ws:
        add_caption(client, "E1", "T1", 10)
        (new_id,) = await receive(ws, 1)
    assert new_id not in ids
    assert (await http_get(probe_port, "/readyz"))[0] == 200

    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO and r.name == redis_health.__name__]
    assert [m.split(" (")[0].split(" after")[0] for m in lines] == ["redis lost", "redis back"], lines
    noisy = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name != redis_health.__name__]
    assert not noisy, noisy
    assert not [r for r in caplog.records if r.exc_info], "no traceback"
    client.close()
    return {"detected": detected, "resumed": resumed}


async def test_redis_restart_keeps_connections_and_refuses_new_ones_with_1013(gateway, outage_redis, caplog):
    caplog.set_level(logging.INFO)
    figures = await ride_through(gateway, outage_redis, freeze=False, caplog=caplog)
    print(f"restart: detected after {figures['detected']:.1f} s, resumed {figures['resumed']:.1f} s after restart")


async def test_redis_frozen_keeps_connections_and_refuses_new_ones_with_1013(gateway, outage_redis, caplog):
    caplog.set_level(logging.INFO)
    figures = await ride_through(gateway, outage_redis, freeze=True, caplog=caplog)
    print(f"freeze: detected after {figures['detected']:.1f} s, resumed {figures['resumed']:.1f} s after thaw")
