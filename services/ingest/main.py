"""``reachlive ingest``: the RTMP(S) server (docs/design.md section 3)."""

from __future__ import annotations

import argparse
import asyncio

from services.ingest.server import IngestServer
from shared.runtime import run_async_service
from shared.settings import IngestSettings, load


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="reachlive ingest",
        description="RTMP(S) server: event media to 16 kHz PCM on Redis Streams. "
        "Settings: REACHLIVE_INGEST_* (see docs/operating.md).",
    )
    parser.parse_args(argv)
    settings = load(IngestSettings)

    async def body(redis_url: str, stop: asyncio.Event) -> None:
        await IngestServer(settings, redis_url).serve(stop)

    return run_async_service("ingest", body)
