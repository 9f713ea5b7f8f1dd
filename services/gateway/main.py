"""``reachlive gateway``: settings → logging → metrics → Redis → serve → drain on SIGTERM."""

from __future__ import annotations

import argparse
import asyncio

import redis.asyncio as aioredis

from services.gateway.server import Gateway
from shared.runtime import run_async_service
from shared.settings import CommonSettings, GatewaySettings, load, split_listen


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="reachlive gateway",
        description="Caption WebSocket for Kaltura's caption client, with /healthz, /readyz and /metrics "
        "on the same port. Settings: REACHLIVE_GATEWAY_* (see shared/settings.py).",
    )
    parser.parse_args(argv)
    settings = load(GatewaySettings)
    caption_types = load(CommonSettings).caption_types

    async def body(redis_url: str, stop: asyncio.Event) -> None:
        client = aioredis.Redis.from_url(redis_url)
        try:
            host, port = split_listen(settings.listen)
            await Gateway(client, settings, caption_types).run(host, port, stop)
        finally:
            await client.aclose()

    return run_async_service("gateway", body)
