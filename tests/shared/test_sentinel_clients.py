"""Every kind of client shared/redis_client.py builds for a ``redis+sentinel://`` URL follows a
real failover (master SIGKILLed, replica promoted by three sentinels): the async command client,
an async blocking reader (XREAD BLOCK, as the relay's and the gateway's), the sync client, and a
Celery command sent through kombu's sentinel transport and read back after the failover."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis

from shared import commands, keys, redis_client
from tests.support.sentinel import SentinelCluster

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelCluster]:
    with SentinelCluster(tmp_path_factory.mktemp("sentinel")) as c:
        yield c


async def _retry(call, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await call()
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_clients_follow_a_failover(cluster: SentinelCluster) -> None:
    url = cluster.url
    command = redis_client.command_client(url, max_connections=4, socket_timeout=2.0, socket_connect_timeout=2.0)
    reader = redis_client.async_client(url, socket_connect_timeout=2.0)
    sync = redis_client.sync_client(url, socket_timeout=2.0, socket_connect_timeout=2.0)
    await command.xadd("s", {"n": "1"})
    assert sync.xlen("s") == 1
    first = await reader.xread({"s": "0-0"}, block=100)
    last_id = first[0][1][-1][0]
    old = cluster.master_port()
    # A blocked reader on the master when it dies, as the relay's audio reader is.
    blocked = asyncio.ensure_future(reader.xread({"s": last_id}, block=30_000))
    await asyncio.sleep(0.2)
    await asyncio.to_thread(cluster.kill_master)
    with pytest.raises((redis.ConnectionError, OSError)):
        await asyncio.wait_for(blocked, 20)
    await asyncio.to_thread(cluster.wait_failover, old)
    # The next commands go to the new master (the replica had the entry: written before the kill).
    await _retry(lambda: command.xadd("s", {"n": "2"}))
    got = await _retry(lambda: reader.xread({"s": last_id}, block=1000))
    assert [f[b"n"] for _id, f in got[0][1]] == [b"2"]
    assert sync.xlen("s") == 2
    assert sync.connection_pool.get_master_address()[1] != old
    # Celery commands (the relay's FINALIZE, the ingest's PROCESSING) go through kombu's transport.
    commands.send(url, commands.PROCESSING, "event-1")
    queue = f"{keys.BROKER_PREFIX}{commands.QUEUE}"
    assert sync.llen(queue) == 1, sync.keys("*")
    await command.aclose()
    await reader.aclose()
    sync.close()
