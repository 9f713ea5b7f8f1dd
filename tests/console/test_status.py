"""``reachlive status`` against the running stack: an event ordered in the Kaltura emulator and
published with real media shows, while it is live, in the real command's JSON (its tasks, the
primary publisher, the relay holding the session, a caption reader and the last caption time)
and on its text screen, with an upcoming event whose too-early publish was refused; ``--watch``
redraws in place and stops on Ctrl-C with exit 0."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from emulators.media import JFK_FLAC
from emulators.restreamer import publish_url, restream
from services.demo import scenario
from services.demo.stack import Stack
from tests.support.polling import wait_for


def command(stack: Stack, *args: str) -> list[str]:
    return [sys.executable, "-m", "shared.cli", "status", *args]


# Ctrl-C as a terminal delivers it. A shell without job control (CI started in the background)
# starts its children with SIGINT ignored, and Python then installs no KeyboardInterrupt handler:
# the child must get SIGINT's default back before the real command starts.
_CTRL_C_DEFAULT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.executable, sys.argv[1:])"
)


def interactive(cmd: list[str]) -> list[str]:
    return [sys.executable, "-c", _CTRL_C_DEFAULT, *cmd]


def env(stack: Stack) -> dict[str, str]:
    return {**os.environ, "REACHLIVE_REDIS_URL": stack.redis_url}


def status_json(stack: Stack) -> dict[str, Any]:
    out = subprocess.run(command(stack, "--json"), env=env(stack), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def complete(snap: dict[str, Any], event_id: str) -> dict[str, Any] | None:
    """The event once every part the status shows is there, else None."""
    event = next((e for e in snap["events"] if e["id"] == event_id), None)
    if event is None or event["phase"] != "live":
        return None
    primary = [p for p in event["publishers"] if p["role"] == "primary"]
    session = event["session"]
    tasks = event["tasks"]
    if not primary or not primary[0]["replica"] or not primary[0]["address"]:
        return None
    if not session["replica"] or session["age_seconds"] is None or session["lag_seconds"] is None:
        return None
    if not any(t["connections"] >= 1 for t in tasks) or not any(t["last_caption"] for t in tasks):
        return None
    return event


async def test_status_shows_a_live_event_from_every_service(stack: Stack) -> None:
    admin = stack.kaltura
    run = await asyncio.to_thread(scenario.order, admin, translations=("French",), duration=600)
    later = await asyncio.to_thread(scenario.order, admin, translations=(), duration=600, start_in=1800)
    await asyncio.to_thread(scenario.wait_scheduled, admin, run, 60)
    await asyncio.to_thread(scenario.wait_scheduled, admin, later, 60)
    # A publish half an hour early is refused: the status counts it for that event.
    [feature] = later.features.values()
    early = await asyncio.to_thread(
        restream, JFK_FLAC, publish_url(feature["mediaUrl"], feature["mediaKey"]), stop_at=1.0
    )
    assert early.error
    stop = threading.Event()
    clients = scenario.start_clients(run, gateway_urls=stack.gateway_urls(), ping_interval=1.0)
    # The sample three times over (about 33 s): live long enough to be looked at.
    threads = scenario.start_restreams(run, JFK_FLAC, stop, loops=3)
    try:
        snaps: list[dict[str, Any]] = []

        def look() -> dict[str, Any] | None:
            snaps.append(status_json(stack))
            return complete(snaps[-1], run.event_id)

        event = await asyncio.to_thread(wait_for, look, 90, 0.5, "the live event complete in reachlive status --json")
        caption_task, translation_task = run.task_ids
        tasks = {t["id"]: t for t in event["tasks"]}
        assert set(tasks) == {caption_task, translation_task}
        assert tasks[caption_task]["service"] == "captions" and tasks[caption_task]["language"] == "en"
        assert tasks[translation_task]["service"] == "translation" and tasks[translation_task]["language"] == "fr"
        assert event["partner_id"]
        roles = sorted(p["role"] for p in event["publishers"])
        assert roles[0] == "primary"  # the other feature's restream is the hot standby
        assert event["session"]["replica"] == "relay-0" == event["session"]["claimed_by"]
        assert event["media"]["seconds"] > 0
        assert snaps[-1]["cost"]["round_trips"] == 3
        upcoming = next(e for e in snaps[-1]["events"] if e["id"] == later.event_id)
        assert upcoming["phase"] == "upcoming"
        assert [(r["reason"], r["count"]) for r in upcoming["refused"]] == [("too_early", 1)]
        assert upcoming["problems"][0].startswith("publish refused 1x: too early")

        text = await asyncio.to_thread(
            subprocess.run, command(stack), env=env(stack), capture_output=True, text=True, timeout=60
        )
        assert text.returncode == 0, text.stderr
        assert f"EVENT {run.event_id}" in text.stdout
        assert "relay relay-0" in text.stdout

        # --watch: redrawn in place (cursor home, clear) until Ctrl-C, which exits 0.
        watch = subprocess.Popen(  # noqa: ASYNC220 - started, then read and waited for in threads
            interactive(command(stack, "--watch", "0.3")), env=env(stack), stdout=subprocess.PIPE, text=True
        )
        try:
            seen = ""
            deadline = time.monotonic() + 60
            while seen.count("\x1b[H\x1b[2J") < 2 and time.monotonic() < deadline:
                seen += await asyncio.to_thread(watch.stdout.readline)  # type: ignore[union-attr]
            assert seen.count("\x1b[H\x1b[2J") >= 2 and run.event_id in seen
            watch.send_signal(signal.SIGINT)
            # communicate drains the pipe: a redraw blocked on a full pipe cannot hide the exit.
            await asyncio.to_thread(watch.communicate, None, 30)
            assert watch.returncode == 0
        finally:
            if watch.poll() is None:
                watch.kill()
                watch.wait()
    finally:
        stop.set()
        for t in threads:
            await asyncio.to_thread(t.join, 30)
        for c in clients:
            c.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
        await asyncio.to_thread(admin.end_window, run.event_id)
