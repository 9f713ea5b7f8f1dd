"""The ingest's state of an ended event (its media time, read by the usage records and the
console) is kept REACHLIVE_RETENTION_DAYS after the end of stream; its audio an hour (issue 20)."""

from __future__ import annotations

import pytest

from services.ingest.coordinator import Coordinator
from shared import keys, streams
from shared.redis_client import command_client


async def test_end_of_stream_keeps_the_state_for_the_retention_period(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REACHLIVE_RETENTION_DAYS", "3")
    client = command_client(redis_url)
    try:
        coord = Coordinator(client, chunk_ms=500, retention_seconds=60)
        assert await coord.acquire("E", "pub-1")
        chunk = streams.AudioChunk(0.0, 0.0, 1000.0, bytes(2 * 8000))
        assert (await coord.write("E", "pub-1", 0, chunk, 1000.5, 0))[0] == 1
        assert await coord.end_of_stream("E", "window closed")
        assert 3 * 86400 - 5 <= await client.ttl(keys.ingest_state("E")) <= 3 * 86400
        assert 0 < await client.ttl(keys.audio("E")) <= keys.AUDIO_RETENTION_AFTER_END_SECONDS
        assert await client.hget(keys.ingest_state("E"), "samples") == b"8000"
    finally:
        await client.aclose()
