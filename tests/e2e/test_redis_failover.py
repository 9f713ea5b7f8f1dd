"""Self-hosted HA Redis (issue 18): every service a separate process on a ``redis+sentinel://``
URL (a master, a replica and three sentinels from the embedded Redis's binary, AOF on), and the
master killed with SIGKILL mid-event. The sentinels promote the replica; every client (the
services' command clients and readers, the Celery broker, redbeat, the probes) follows it. The
caption client must receive every word once, the tasks go READY, and no process exits.

What the asynchronous replication could lose at that moment, and why it does not become lost or
doubled captions, is told in docs/operating.md ("Running Redis in production", Sentinel)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.demo import scenario
from services.demo.scenario import EventRun
from services.demo.stack import Stack
from tests.e2e.play import play
from tests.e2e.test_pipeline import check_complete, resume_repeats
from tests.support.sentinel import SentinelCluster

log = logging.getLogger(__name__)

KILL_AFTER_SECONDS = 4.0  # into the 11 s sample: mid-speech

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SentinelCluster]:
    with SentinelCluster(tmp_path / "redis") as c:
        yield c


async def test_the_master_killed_mid_event_loses_nothing(
    tmp_path: Path, cluster: SentinelCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The stack reads REACHLIVE_REDIS_URL from the environment: the sentinels, not an embedded Redis.
    monkeypatch.setenv("REACHLIVE_REDIS_URL", cluster.url)
    env = {"REACHLIVE_INGEST_WINDOW_MARGIN_SECONDS": "1"}
    marks: dict[str, float] = {}

    async def kill_master(run: EventRun) -> None:
        await asyncio.sleep(KILL_AFTER_SECONDS)
        old = await asyncio.to_thread(cluster.kill_master)
        marks["killed"] = time.time()
        marks["failover"] = await asyncio.to_thread(cluster.wait_failover, old)

    with Stack(data_dir=tmp_path / "data", log_dir=tmp_path / "logs", env=env) as stack:
        try:
            run = await play(stack, translations=("French",), during=kill_master, timeout=180)
        except BaseException:
            print(stack.logs())
            raise
        caption_task, translation_task = run.task_ids
        client = run.clients[caption_task]
        # Every word once, in order (frames repeated by a resume carry the same ids: dropped by id).
        check_complete(run, caption_task, max_repeats=4)
        check_complete(run, caption_task, "transcript", max_repeats=4)
        assert run.clients[translation_task].responses()[-1]["is_end_of_stream"]
        assert run.statuses == {caption_task: scenario.READY, translation_task: scenario.READY}
        for name, children in stack.children.items():
            for child in children:
                assert child.restarts == 0 and child.alive(), f"{name} exited during the failover"
        after = [r.at for r in client.received if r.at > marks["killed"]]
        resumed = min(after) - marks["killed"] if after else float("nan")
        figures = {
            "failover_seconds": round(marks["failover"], 2),
            "first_caption_after_kill_seconds": round(resumed, 2),
            "repeats": len(resume_repeats(client)),
            "connections": client.connections,
        }
        print(f"sentinel failover figures: {figures}")
        log.warning("sentinel failover figures: %s", figures)
