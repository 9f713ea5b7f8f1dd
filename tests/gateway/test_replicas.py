"""Real ``reachlive gateway`` processes: a replica SIGKILLed mid-event (the client resumes on
another replica with nothing lost) and a SIGTERM drain (1001, clean exit)."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from shared.child import Service, free_port, wait_port
from tests.gateway.helpers import add_caption, make_task, sid_key, stream_ids_by_response
from tests.gateway.test_delivery import delivered

pytestmark = pytest.mark.slow


def start_replica(redis_url: str, tmp_path, name: str) -> tuple[Service, int]:
    port = free_port()
    env = {
        "REACHLIVE_REDIS_URL": redis_url,
        "REACHLIVE_GATEWAY_LISTEN": f"127.0.0.1:{port}",
        "REACHLIVE_GATEWAY_ACK_INTERVAL_SECONDS": "0.2",
        "REACHLIVE_GATEWAY_DRAIN_SECONDS": "3",
    }
    return Service(["gateway"], env, tmp_path, name=name), port


async def test_replica_killed_mid_event_client_resumes_on_another_with_nothing_lost(redis_url, redis_client, tmp_path):
    token = make_task(redis_client)
    a, port_a = start_replica(redis_url, tmp_path, "gateway-a")
    b, port_b = start_replica(redis_url, tmp_path, "gateway-b")
    with a, b:
        wait_port(port_a)
        wait_port(port_b)
        total = 60

        async def relay_writes():  # one caption every 30 ms, then the end of stream
            for n in range(total):
                add_caption(redis_client, "E1", "T1", n, eos=n == total - 1)
                await asyncio.sleep(0.03)

        writer = asyncio.create_task(relay_writes())
        first: list[str] = []
        bearer = {"Authorization": f"Bearer {token}"}
        ws = await connect(f"ws://127.0.0.1:{port_a}/v1/captions", additional_headers=bearer)
        with pytest.raises(ConnectionClosed) as info:
            while True:
                first.append(json.loads(await asyncio.wait_for(ws.recv(), 10))["response"]["id"])
                if len(first) == 20:
                    a.kill()  # SIGKILL mid-event: no close frame, no cursor save on the way out
        assert info.value.rcvd is None  # the socket died; nothing was closed cleanly
        cursor = delivered(redis_client)
        assert cursor is not None, "no pong ever moved the cursor"
        # The reconnect finds the killed replica's connection open in Redis: it takes it over
        # once that replica's heartbeat has stopped (lineage.DEAD_AFTER_SECONDS), not before.

        second: list[str] = []
        async with connect(f"ws://127.0.0.1:{port_b}/v1/captions?token={token}") as ws2:
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    second.append(json.loads(await asyncio.wait_for(ws2.recv(), 10))["response"]["id"])
            assert info.value.rcvd is not None and info.value.rcvd.code == 1000  # after end of stream
        await writer

    by_id = stream_ids_by_response(redis_client, "E1", "T1")
    everything = sorted(by_id, key=lambda rid: sid_key(by_id[rid]))
    assert len(everything) == total
    assert set(first) | set(second) == set(everything), "responses lost across the replica kill"
    assert second == [rid for rid in everything if sid_key(by_id[rid]) > sid_key(cursor)]
    assert all(sid_key(by_id[rid]) > sid_key(cursor) for rid in set(first) & set(second))
    assert first == everything[: len(first)]


async def test_sigterm_drains_with_1001_and_exits_cleanly(redis_url, redis_client, tmp_path):
    token = make_task(redis_client)
    svc, port = start_replica(redis_url, tmp_path, "gateway-drain")
    with svc:
        wait_port(port)
        add_caption(redis_client, "E1", "T1", 0)
        async with connect(f"ws://127.0.0.1:{port}/v1/captions?token={token}") as ws:
            await asyncio.wait_for(ws.recv(), 10)
            stopping = asyncio.get_running_loop().run_in_executor(None, svc.stop)
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 10)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1001
            code = await stopping
    assert code == 0, svc.log()
    assert "gateway draining" in svc.log()
    assert "Traceback" not in svc.log()
