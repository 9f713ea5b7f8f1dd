"""Fixtures: the KWIKmotion emulator on a free port (in the test's loop) and relays run in-process
(``services.relay.main.serve``, the same body the ``reachlive relay`` process runs)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from emulators.kwikmotion import KwikmotionEmulator
from emulators.media import JFK_TEXT
from services.relay.main import serve
from services.relay.session import Config
from tests.relay.helpers import TOKEN


@pytest.fixture
async def emu() -> AsyncIterator[KwikmotionEmulator]:
    emulator = KwikmotionEmulator(
        host="127.0.0.1",
        port=0,
        token=TOKEN,
        reference_text=JFK_TEXT,
        reference_seconds=11.0,
        ping_interval=None,
        forbidden_tokens=["forbidden"],
    )
    await emulator.start()
    yield emulator
    await emulator.stop()


class RelayRunner:
    """Start/stop relays in this loop; each one is a full replica (claim loop + sessions)."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.running: dict[str, tuple[asyncio.Task[None], asyncio.Event]] = {}

    def start(self, config: Config, name: str = "relay-a") -> None:
        stop = asyncio.Event()
        cfg = config.relay.model_copy(update={"consumer_name": name})
        config = Config(relay=cfg, kwik=config.kwik, caption_types=config.caption_types, redis_url=config.redis_url)
        task = asyncio.create_task(serve(self.redis_url, stop, config), name=name)
        self.running[name] = (task, stop)

    async def stop(self, name: str) -> None:
        task, stop = self.running.pop(name)
        stop.set()
        await asyncio.wait_for(task, 20)

    async def close(self) -> None:
        for name in list(self.running):
            with contextlib.suppress(Exception):
                await self.stop(name)


@pytest.fixture
async def relays(redis_url: str) -> AsyncIterator[RelayRunner]:
    runner = RelayRunner(redis_url)
    yield runner
    await runner.close()


Factory = Callable[..., Any]
