"""``reachlive relay`` / ``python -m services.relay``: settings → logging → metrics → run → drain.

The replica claims live event sessions from Redis and holds up to ``REACHLIVE_RELAY_MAX_SESSIONS``
KWIKmotion sessions. SIGTERM stops the sessions and releases their claims for another replica
(see ``services.relay.service``).
"""

from __future__ import annotations

import argparse
import asyncio

from services.relay.reader import AudioReader
from services.relay.service import Relay
from services.relay.session import Config, session_runner
from shared.redis_client import async_client, client_name, command_client
from shared.runtime import run_async_service
from shared.settings import CommonSettings, KwikmotionSettings, RelaySettings, load


async def serve(redis_url: str, stop: asyncio.Event, config: Config | None = None) -> None:
    """The service body (also used in-process by tests and the bench)."""
    if config is None:
        common = load(CommonSettings)
        config = Config(
            relay=load(RelaySettings),
            kwik=load(KwikmotionSettings),
            caption_types=common.caption_types,
            redis_url=redis_url,
            retention_seconds=common.retention_seconds,
        )
    # Two pools: the shared audio reader holds one connection of its own in a blocking XREAD of
    # every session's audio (services/relay/reader.py), and everything else shares a bounded pool
    # that waits for a free connection rather than failing (redis-py's default pool raises past
    # 100 connections).
    reader = async_client(redis_url, max_connections=2, client_name=client_name("relay"))
    client = command_client(redis_url, max_connections=64, client_name=client_name("relay"))
    try:
        relay = Relay(client, config.relay)
        audio = AudioReader(reader, client, relay.consumer)
        relay.runner = session_runner(client, relay.claimer, config, audio)
        async with asyncio.TaskGroup() as tg:
            reading = tg.create_task(audio.run(), name="relay-audio-reader")
            try:
                await relay.run(stop)
            finally:
                reading.cancel()  # after the sessions: they stopped reading
    finally:
        await client.aclose()
        await client.connection_pool.disconnect()
        await reader.aclose()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="reachlive relay",
        description="Claims live event sessions and streams their audio to KWIKmotion; settings come from "
        "REACHLIVE_RELAY_* and REACHLIVE_KWIKMOTION_* (see docs/operating.md).",
    )
    parser.parse_args(argv)
    # Validate the settings before anything starts (a bad value is one readable line).
    load(RelaySettings)
    load(KwikmotionSettings)
    return run_async_service("relay", serve)
