"""Faults mid-event, with services run as separate processes: a KWIKmotion drop, a relay and a
gateway killed with SIGKILL. Kaltura's client must still receive every word once, in order."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from services.demo import scenario
from services.demo.scenario import EventRun
from services.demo.stack import Stack
from shared import keys
from tests.e2e.play import play
from tests.e2e.test_pipeline import check_complete


@pytest.fixture
def ha_stack(tmp_path: Path) -> Iterator[Stack]:
    env = {"REACHLIVE_RELAY_FAILOVER_SECONDS": "3", "REACHLIVE_RELAY_HEARTBEAT_SECONDS": "0.5"}
    with Stack(
        data_dir=tmp_path / "data", log_dir=tmp_path / "logs", replicas={"relay": 2, "gateway": 2}, env=env
    ) as s:
        yield s


async def test_kwikmotion_drop_mid_event(ha_stack: Stack) -> None:
    ha_stack.kwik_emulator.faults.drop_after_chunks = 2
    run = await play(ha_stack, translations=())
    check_complete(run, run.task_ids[0])
    assert run.statuses[run.task_ids[0]] == scenario.READY
    assert len(ha_stack.kwik_emulator.sessions) >= 2, "the drop did not happen"


async def test_relay_and_gateway_killed_mid_event(ha_stack: Stack) -> None:
    killed: list[str] = []

    async def kill(run: EventRun) -> None:
        await asyncio.sleep(4)
        # The relay that owns the event's session is the consumer holding its pending entry.
        with redis.Redis.from_url(ha_stack.redis_url) as client:
            pending = client.xpending_range(keys.SESSIONS_STREAM, keys.RELAY_GROUP, "-", "+", 100)
        owners = {p["consumer"].decode() for p in pending}
        assert len(owners) == 1, pending
        owner = owners.pop()
        relay = next(c for c in ha_stack.children["relay"] if c.env["REACHLIVE_RELAY_CONSUMER_NAME"] == owner)
        # The caption client connects to the first gateway replica first.
        for child in (relay, ha_stack.children["gateway"][0]):
            child.proc.send_signal(signal.SIGKILL)
            killed.append(child.name)

    run = await play(ha_stack, translations=(), during=kill, timeout=120)
    assert len(killed) == 2
    # The killed gateway's frames after its last pong may come again on the next connection
    # (one result's transcript and caption lines at most: they are proven by one pong).
    check_complete(run, run.task_ids[0], max_repeats=4)
    assert run.clients[run.task_ids[0]].connections >= 2
    assert run.statuses[run.task_ids[0]] == scenario.READY
