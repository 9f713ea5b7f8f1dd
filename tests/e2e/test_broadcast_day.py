"""A broadcast day in one event (issue 16): everything real events bring, at once.

One event with a caption task and a French translation, every service a separate process (two
relays). During the event: the broadcaster's encoder stops for longer than every grace and
keepalive period and comes back (every feature's restream pauses and resumes, each on a new RTMP
connection); a Spanish translation is ordered while the event is live and its feature publishes
as a standby; KWIKmotion drops the connection once; the relay holding the speech session is
killed with SIGKILL. Kaltura's caption client must receive every reference word exactly once,
in order, per task (the late task: every word after it joined), and every task's status sequence
must be valid and final only after the window closed.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from emulators.caption_client import CaptionClient
from emulators.media import JFK_FLAC
from services.demo import scenario
from services.demo.stack import Stack
from shared import keys
from tests.e2e.conftest import REFERENCE, assert_timings_non_decreasing, caption_words
from tests.e2e.test_pipeline import describe, resume_repeats

LOOPS = 2  # 22 s of speech: the sample twice, back to back on one timeline
PAUSE_AT = 8.0  # source seconds where the encoder stops
PAUSE_FOR = 9.0  # longer than the relay's idle close (3 s), the writer lease (5 s), the drain
IDLE_CLOSE = 3.0


@pytest.fixture
def day_stack(tmp_path: Path) -> Iterator[Stack]:
    env = {
        "REACHLIVE_RELAY_FAILOVER_SECONDS": "3",
        "REACHLIVE_RELAY_HEARTBEAT_SECONDS": "0.5",
        "REACHLIVE_RELAY_TASK_CHECK_SECONDS": "0.5",
        "REACHLIVE_RELAY_IDLE_CLOSE_SECONDS": str(IDLE_CLOSE),
        "REACHLIVE_RELAY_FLUSH_AFTER_SECONDS": "1",
        "REACHLIVE_INGEST_WINDOW_MARGIN_SECONDS": "1",
    }
    with Stack(data_dir=tmp_path / "data", log_dir=tmp_path / "logs", replicas={"relay": 2}, env=env) as s:
        yield s


def distinct(client: CaptionClient, kind: str = "captions") -> list[dict[str, Any]]:
    """The client's responses of ``kind``, a repeat on resume (same id) counted once."""
    seen: set[str] = set()
    out = []
    for r in client.responses(kind):
        if r["id"] not in seen:
            seen.add(r["id"])
            out.append(r)
    return out


def translated_words(responses: list[dict[str, Any]], lang: str) -> list[str]:
    # The emulator does not translate: "[fr] <transcript>"; the label is not a word of the speech.
    return [w for w in caption_words(responses) if w != lang]


def status_calls(calls: list[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """Task id → the statuses reachlive set with updateJob, in order, with their times."""
    out: dict[str, list[tuple[int, float]]] = {}
    for call in calls:
        if call["action"] != "updateJob" or call.get("code"):
            continue
        params = call["params"]
        job = params.get("entryVendorTask") or {}
        status = job.get("status") if isinstance(job, dict) else None
        status = status if status is not None else params.get("entryVendorTask[status]")
        if status is not None:
            out.setdefault(str(params["id"]), []).append((int(status), call["time"]))
    return out


async def kill_session_owner(stack: Stack) -> str:
    """SIGKILL the relay that holds the event's session (the consumer with its pending entry)."""
    with redis.Redis.from_url(stack.redis_url) as client:
        pending = client.xpending_range(keys.SESSIONS_STREAM, keys.RELAY_GROUP, "-", "+", 100)
    owners = {p["consumer"].decode() for p in pending}
    assert len(owners) == 1, pending
    owner = owners.pop()
    relay = next(c for c in stack.children["relay"] if c.env["REACHLIVE_RELAY_CONSUMER_NAME"] == owner)
    relay.proc.send_signal(signal.SIGKILL)
    return relay.name


async def test_a_broadcast_day(day_stack: Stack) -> None:
    admin = day_stack.kaltura
    kwik = day_stack.kwik_emulator
    run = await asyncio.to_thread(scenario.order, admin, translations=("French",))
    await asyncio.to_thread(scenario.wait_scheduled, admin, run, 60)
    caption_task, french_task = run.task_ids
    kwik.faults.update({"drop_after_chunks": 3})  # the first session drops after 6 s of audio
    stop = threading.Event()
    clients = scenario.start_clients(run, gateway_urls=day_stack.gateway_urls(), ping_interval=1.0)
    killed: list[str] = []
    late: list[str] = []
    try:
        await asyncio.sleep(0.3)
        t0 = time.monotonic()
        threads = scenario.start_restreams_with_gap(
            run, JFK_FLAC, stop, pause_at=PAUSE_AT, pause_for=PAUSE_FOR, loops=LOOPS
        )
        # A Spanish translation ordered while the event is live.
        await asyncio.sleep(3)
        spanish = await asyncio.to_thread(scenario.order_late, admin, run, "Spanish")
        late.append(spanish)
        ok = await asyncio.to_thread(admin.wait_status, [spanish], {scenario.SCHEDULED, *scenario.FINAL}, 60)
        assert ok == {spanish: scenario.SCHEDULED}, ok
        run.features = await asyncio.to_thread(admin.features, run.event_id)
        clients += scenario.start_late_clients(run, [spanish], gateway_urls=day_stack.gateway_urls(), ping_interval=1.0)
        # The pause: longer than the idle close; then the media comes back (part 2).
        await asyncio.sleep(max(0.0, t0 + PAUSE_AT + PAUSE_FOR + 2 - time.monotonic()))
        # Kaltura also restreams to the late order's feature: a standby of the running event.
        played = PAUSE_AT + 2
        threads += scenario.start_late_restreams(run, JFK_FLAC, stop, [spanish], start_offset=played, loops=LOOPS)
        await asyncio.sleep(3)
        before_kill = list(kwik.started_sessions())
        killed.append(await kill_session_owner(day_stack))
        for t in threads:
            await asyncio.to_thread(t.join, 90)
        window_closed = time.time()
        await asyncio.to_thread(admin.end_window, run.event_id)
        await scenario.wait_clients(run, 120)
    finally:
        stop.set()
        for c in clients:
            c.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
    statuses = await asyncio.to_thread(scenario.wait_final, admin, run, 60)
    reference = REFERENCE * LOOPS

    # The pause happened, on new RTMP connections, and the late standby publish was accepted.
    assert killed
    assert all(not s.error for s in run.restreams), [s.error for s in run.restreams]
    assert len(run.restreams) >= 5  # two parts per original feature, the late feature's publish
    # KWIKmotion: the drop, the idle close during the pause, the relay kill → several sessions.
    sessions = kwik.started_sessions()
    assert any(s.closed_code == 1000 and "idle" in (s.closed_reason or "") for s in sessions), [
        (s.closed_code, s.closed_reason) for s in sessions
    ]
    assert sessions[0].targets == ["fr"], [s.targets for s in sessions]
    # The late order joined the running session (a reconnect with its language), not only the
    # session a failover opens.
    assert any(set(s.targets) == {"fr", "es"} for s in before_kill), [s.targets for s in before_kill]
    assert set(sessions[-1].targets) == {"fr", "es"}
    assert any("drop" in s.faults for s in sessions)

    # Every word once, in order, per task.
    captions = run.clients[caption_task]
    assert captions.errors == []
    assert len(resume_repeats(captions)) == 0, describe(captions, "captions")
    got = caption_words(distinct(captions))
    assert got == reference, describe(captions, "captions")
    assert_timings_non_decreasing(distinct(captions))
    assert captions.responses()[-1]["is_end_of_stream"]

    french = run.clients[french_task]
    assert translated_words(distinct(french), "fr") == reference, describe(french, "captions")
    assert french.responses()[-1]["is_end_of_stream"]

    spanish_client = run.clients[late[0]]
    got_es = translated_words(distinct(spanish_client), "es")
    assert got_es, "the late order got no captions"
    assert got_es == reference[len(reference) - len(got_es) :], describe(spanish_client, "captions")
    assert spanish_client.responses()[-1]["is_end_of_stream"]
    assert {r["language_code"][:2] for r in distinct(spanish_client)} == {"es"}

    # Statuses: SCHEDULED → PROCESSING → READY for each, READY only after the window closed.
    assert statuses == {t: scenario.READY for t in run.task_ids}, statuses
    history = status_calls(admin.calls())
    for task_id in run.task_ids:
        seq = [s for s, _at in history[task_id]]
        assert seq == [scenario.SCHEDULED, scenario.PROCESSING, scenario.READY], (task_id, seq)
        ready_at = history[task_id][-1][1]
        assert ready_at >= window_closed, (task_id, ready_at - window_closed)
