"""Redis clients for the asyncio services.

redis-py 8's default pool raises ``MaxConnectionsError`` past 100 connections; a service with
hundreds of concurrent publishers, sessions or subscribers must wait for a free connection
instead, so every service builds its command client here.
"""

from __future__ import annotations

import redis.asyncio as aioredis

POOL_WAIT_SECONDS = 30.0


def command_client(redis_url: str, max_connections: int = 64, wait: float = POOL_WAIT_SECONDS) -> aioredis.Redis:
    """A client whose bounded pool waits up to ``wait`` seconds for a free connection."""
    pool = aioredis.BlockingConnectionPool.from_url(redis_url, max_connections=max_connections, timeout=wait)
    return aioredis.Redis(connection_pool=pool)
