"""``reachlive event EVENT_ID`` after a real event, run as the real CLI (a subprocess): ordered in
the Kaltura emulator for an hour from now, a publish refused as too early, the event moved to now
by its customer, the sample published over RTMP in real time and transcribed through the
KWIKmotion emulator, the window ended, the task READY. The history shows each step with its
details, in order, written by the services themselves (poller, worker, ingest, relay)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from typing import Any

from emulators.media import JFK_FLAC
from emulators.restreamer import publish_url, restream
from services.demo import scenario
from services.demo.stack import Stack
from shared import registry
from shared.redis_client import sync_client
from tests.support.polling import wait_for


def reachlive_event(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REACHLIVE_REDIS_URL": stack.redis_url}
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", "event", *args], env=env, capture_output=True, text=True, timeout=60
    )


def history(stack: Stack, event_id: str) -> list[dict[str, Any]]:
    out = reachlive_event(stack, event_id, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["history"]


def first(entries: list[dict[str, Any]], kind: str, **fields: str) -> int:
    """Index of the first entry of ``kind`` with those fields (an assertion if none)."""
    for i, e in enumerate(entries):
        if e["kind"] == kind and all(e["fields"].get(k) == v for k, v in fields.items()):
            return i
    raise AssertionError(f"no {kind} {fields} in {[(e['kind'], e['fields']) for e in entries]}")


def test_an_events_history_from_order_to_ready(stack: Stack) -> None:
    admin = stack.kaltura
    run = scenario.order(admin, translations=(), duration=600, start_in=3600)
    scenario.wait_scheduled(admin, run, 60)
    [task_id] = run.task_ids
    event_id = run.event_id
    feature = run.features[task_id]
    url = publish_url(feature["mediaUrl"], feature["mediaKey"])

    # An hour early: refused, and the refusal is in the event's history with its reason.
    early = restream(JFK_FLAC, url, stop_at=1.0)
    assert early.error, early

    # The customer moves the event to now; once reconcile has followed, the publish is accepted.
    now = time.time()
    admin.move_window(event_id, now, now + 600)
    client = sync_client(stack.redis_url)
    try:
        wait_for(
            lambda: (ev := registry.read_event_sync(client, event_id)) is not None and ev.start <= now + 1,
            60,
            0.2,
            "the registry following the moved window",
        )
    finally:
        client.close()
    stop = threading.Event()
    threads = scenario.start_restreams(run, JFK_FLAC, stop)
    try:
        for t in threads:
            t.join(90)
        admin.end_window(event_id)
        assert scenario.wait_final(admin, run, 90) == {task_id: scenario.READY}
    finally:
        stop.set()

    entries = wait_for(
        lambda: (h := history(stack, event_id)) and any(e["fields"].get("status") == "READY" for e in h) and h,
        30,
        0.5,
        "READY in the event's history",
    )
    order = [
        first(entries, "provisioned", task=task_id, status_sent="SCHEDULED"),
        first(entries, "publish_refused", reason="too_early"),
        first(entries, "window_moved"),
        first(entries, "publish_accepted", task=task_id, role="primary"),
        first(entries, "status_sent", task=task_id, status="PROCESSING"),
        first(entries, "end_of_stream", reason="window_ended"),
        first(entries, "status_sent", task=task_id, status="READY"),
    ]
    assert order == sorted(order), order
    opened, closed = first(entries, "session_opened"), first(entries, "session_closed", cause="finished")
    assert order[3] < opened < closed < order[-1]
    assert entries[opened]["fields"]["replica"] == entries[closed]["fields"]["replica"]
    accepted = entries[order[3]]["fields"]
    assert accepted["replica"] and accepted["address"].startswith("127.0.0.1:")
    assert first(entries, "publisher_gone", task=task_id) > order[3]
    # Never a secret: the media key and caption token are nowhere in the history.
    dump = json.dumps(entries)
    assert feature["mediaKey"] not in dump and feature["captionToken"] not in dump

    out = reachlive_event(stack, event_id)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    head, _, lines = text.partition("history (")
    assert f"event {event_id}" in head and "media ended" in head and f"{task_id}  captions" in head and "ready" in head
    for words in (
        "task provisioned: task=",
        'publish refused: reason=too_early description="The event\'s window has not opened yet"',
        "event window moved: start=",
        "publish accepted: task=",
        "speech session opened: replica=",
        "speech session closed: cause=finished",
        f"status sent to Kaltura: task={task_id} status=PROCESSING",
        f"status sent to Kaltura: task={task_id} status=READY",
        "end of stream written: reason=window_ended",
    ):
        assert words in lines, f"{words!r} not in:\n{text}"
    stamped = re.compile(r"  \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ  \S")  # a UTC time, then what happened
    assert all(stamped.match(line) for line in lines.splitlines()[1:]), text


def test_unknown_event_is_exit_1_with_a_message(stack: Stack) -> None:
    out = reachlive_event(stack, "424242424")
    assert out.returncode == 1 and out.stdout == ""
    assert "no event 424242424" in out.stderr and "REACHLIVE_RETENTION_DAYS" in out.stderr
