"""Redis outages during a live event, with every service a separate process (issue 18): Redis
stopped for 15 s and restarted with its data (AOF, as production runs it), Redis frozen (SIGSTOP)
for 15 s, and the whole stack started while Redis is down (8 s). 15 s outlasts the longest period
an outage must not trip (the relay's failover, 10 s; the ingest's sweep grace is shorter) and the
rest of the 11 s sample after the outage starts (4 s in). Kaltura's caption client must receive
every word once, the tasks go READY only after the window closed, and no process exits.

The sample is 11 s: the outage outlasts the media, so the ingest holds the end of the audio in
memory until Redis is back, and the relay and gateway catch up afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.demo import scenario
from services.demo.scenario import EventRun
from services.demo.stack import Stack
from tests.e2e.play import play
from tests.e2e.test_pipeline import check_complete
from tests.support.outage import OutageRedis

OUTAGE_SECONDS = 15.0

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]


@pytest.fixture
def outage_redis(tmp_path: Path) -> Iterator[OutageRedis]:
    with OutageRedis(tmp_path / "redis") as server:
        yield server


def _stack(tmp_path: Path, redis_url: str) -> Stack:
    env = {"REACHLIVE_REDIS_URL": redis_url, "REACHLIVE_INGEST_WINDOW_MARGIN_SECONDS": "1"}
    return Stack(data_dir=tmp_path / "data", log_dir=tmp_path / "logs", env=env)


def _no_restarts(stack: Stack) -> None:
    for name, children in stack.children.items():
        for child in children:
            assert child.restarts == 0 and child.alive(), f"{name} exited during the outage"


def _final_after(admin: object, run: EventRun, when: float) -> None:
    calls = admin.calls()  # type: ignore[attr-defined]
    for call in calls:
        if call["action"] != "updateJob" or call.get("code"):
            continue
        job = call["params"].get("entryVendorTask") or {}
        if isinstance(job, dict) and int(job.get("status", 0) or 0) in (scenario.READY, scenario.ERROR):
            assert call["time"] >= when, f"task {call['params'].get('id')} final before the window closed"


async def _outage_mid_event(stack: Stack, redis: OutageRedis, how: str) -> tuple[EventRun, float, float]:
    marks: dict[str, float] = {}

    async def outage(run: EventRun) -> None:
        await asyncio.sleep(4)
        marks["down"] = time.monotonic()
        await asyncio.to_thread(redis.freeze if how == "freeze" else redis.stop)
        await asyncio.sleep(OUTAGE_SECONDS)
        await asyncio.to_thread(redis.thaw if how == "freeze" else redis.start)
        marks["up"] = time.monotonic()
        marks["up_wall"] = time.time()

    run = await play(stack, translations=("French",), during=outage, timeout=180)
    return run, marks["up"] - marks["down"], marks["up_wall"]


@pytest.mark.parametrize("how", ["restart", "freeze"])
async def test_a_redis_outage_mid_event_loses_nothing(how: str, tmp_path: Path, outage_redis: OutageRedis) -> None:
    with _stack(tmp_path, outage_redis.url) as stack:
        run, lasted, back_at = await _outage_mid_event(stack, outage_redis, how)
        assert lasted >= OUTAGE_SECONDS
        caption_task, translation_task = run.task_ids
        # The gateway keeps the client's connection; at most the frames after its last pong repeat.
        check_complete(run, caption_task, max_repeats=4)
        check_complete(run, caption_task, "transcript", max_repeats=4)
        assert run.clients[translation_task].responses()[-1]["is_end_of_stream"]
        assert run.statuses == {caption_task: scenario.READY, translation_task: scenario.READY}
        # The window is closed only after Redis is back (play ends the event once the media is over
        # and the outage done): nothing went final because of the outage.
        _final_after(stack.kaltura, run, back_at)
        _no_restarts(stack)


async def test_the_stack_starts_while_redis_is_down(tmp_path: Path, outage_redis: OutageRedis) -> None:
    outage_redis.stop()
    with _stack(tmp_path, outage_redis.url) as stack:
        await asyncio.sleep(8)  # every service past its first failed connect and retrying
        await asyncio.to_thread(outage_redis.start)
        run = await play(stack, translations=(), timeout=120)
        check_complete(run, run.task_ids[0])
        assert run.statuses == {run.task_ids[0]: scenario.READY}
        _no_restarts(stack)
