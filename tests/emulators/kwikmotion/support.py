"""Client helpers for the emulator tests: a real websockets client, driven by our session core."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from emulators.kwikmotion import KwikmotionEmulator
from shared.kwikmotion import KwikSession, RecognitionStarted
from tests.support.polling import eventually as eventually

TOKEN = "test-token-0123456789"
FORBIDDEN = "token-without-permission"
CHUNK_2S = 64000  # seed: 2 seconds = 64,000 bytes at 16 kHz mono


def open_ws(emu: KwikmotionEmulator, token: str | None = TOKEN, **headers: str) -> Any:
    extra = dict(headers)
    if token is not None:
        extra["Authorization"] = f"Bearer {token}"
    return connect(emu.url, additional_headers=extra, open_timeout=5, close_timeout=1, max_size=None)


async def recv_json(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def start(ws: ClientConnection, language: str = "en", targets: list[str] | None = None) -> KwikSession:
    session = KwikSession(language, targets or [])
    await ws.send(session.start(time.monotonic()))
    events = session.receive(await asyncio.wait_for(ws.recv(), 5), time.monotonic())
    assert isinstance(events[0], RecognitionStarted), events
    return session


def chunks(pcm: bytes, size: int = CHUNK_2S) -> list[bytes]:
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]
