"""Every reachlive Redis connection names itself (``CLIENT SETNAME`` at connect,
``shared.redis_client.client_name``), checked on a real ingest against the real Redis."""

from __future__ import annotations

import redis


async def test_the_ingests_redis_connections_say_whose_they_are(start_ingest, redis_client: redis.Redis) -> None:
    """CLIENT LIST names the service, host and process of each connection (``CLIENT SETNAME`` at
    connect, shared.redis_client.client_name): what an operator looking at a busy Redis, and
    bench/pipeline.py --by-service, go by."""
    server = await start_ingest()
    await server.client.ping()
    names = [entry.get("name", "") for entry in redis_client.client_list()]
    ours = [name for name in names if name.startswith("reachlive:ingest:")]
    assert ours, names
    _, service, host, pid = ours[0].split(":")
    assert service == "ingest" and host and int(pid) > 0
