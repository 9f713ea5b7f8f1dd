"""Who publishes an event, and which publishes were refused, for the operator's console
(issue 20: ``reachlive status`` shows each publisher's ingest replica, remote address and how
recent its audio is, and refused publishes in words).

Small writes on paths that exist: a publisher's record at the first heartbeat after its accept
and at each revalidation (every few seconds, never per audio message), deleted at its close; a
refusal counted when it happens. Nothing here may break a publish: the callers treat errors
like any other Redis outage.
"""

from __future__ import annotations

import json
import os
import socket
import time

import redis.asyncio as aioredis

from shared import keys

REPLICA = f"{socket.gethostname()}-{os.getpid()}"  # how the console names this ingest process


async def announce(
    client: aioredis.Redis, event_id: str, publisher_id: str, task_id: str, address: str, behind: float
) -> None:
    """Record (or refresh) one accepted publisher; ``behind``: seconds since its latest audio
    arrived (its role comes from ``keys.ingest_primary``, which the console reads)."""
    now = time.time()
    info = {"task": task_id, "replica": REPLICA, "address": address, "behind": round(behind, 1), "seen": round(now, 3)}
    key = keys.ingest_presence(event_id)
    async with client.pipeline(transaction=False) as pipe:
        pipe.hset(key, publisher_id, json.dumps(info))
        pipe.expire(key, keys.INGEST_PRESENCE_TTL_SECONDS)
        await pipe.execute()


async def retract(client: aioredis.Redis, event_id: str, publisher_id: str) -> None:
    await client.hdel(keys.ingest_presence(event_id), publisher_id)


async def refused(client: aioredis.Redis, event_id: str, reason: str) -> None:
    """Count a refused publish of a known event (``reason``: the metric label)."""
    key = keys.ingest_refused(event_id)
    async with client.pipeline(transaction=False) as pipe:
        pipe.hincrby(key, reason, 1)
        pipe.hset(key, f"{reason}{keys.INGEST_REFUSED_AT}", repr(time.time()))
        pipe.expire(key, keys.INGEST_REFUSED_TTL_SECONDS)
        await pipe.execute()


def address(peer: object) -> str:
    """``host:port`` of a socket's peer name (``[v6]:port`` for IPv6)."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = str(peer[0])
        return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
    return ""
