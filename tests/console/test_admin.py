"""``reachlive admin`` against the running stack: one event (captions and a French translation)
ordered in the Kaltura emulator and published with real media, and every action run through the
real command while it is live, its effect checked on the real services:

- restart-session: the relay's session is taken over (a new claim, a new KWIKmotion session) and
  the captions go on, every word once, in order;
- revoke (the translation): its standby publish and its caption connection are closed, a new
  publish with its old key is refused, the captions of the other task go on;
- disconnect: the publish is dropped, a new publish is accepted and the captions go on;
- end-media: end of stream with reason operator, the captions' end of stream, the caption task
  READY at Kaltura, a new publish refused;
- resend-status: Kaltura sees READY once more;
- what does not apply is refused with exit code 1, before and after.

Each action is in the event's history and in the log of the service that carried it out."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from typing import Any

import redis

from emulators.media import JFK_FLAC
from emulators.restreamer import RestreamStats, publish_url, restream
from services.console.admin import live_publishers
from services.demo import scenario
from services.demo.stack import Stack
from shared import journal, keys, streams
from tests.e2e.conftest import REFERENCE, assert_timings_non_decreasing, caption_words
from tests.support.polling import eventually

LOOPS = 4  # the sample four times over (about 44 s): live long enough for every action


def admin_cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REACHLIVE_REDIS_URL": stack.redis_url}
    cmd = [sys.executable, "-m", "shared.cli", "admin", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


async def run_admin(stack: Stack, *args: str, code: int = 0, says: str = "") -> str:
    out = await asyncio.to_thread(admin_cli, stack, *args)
    said = out.stdout + out.stderr
    assert out.returncode == code, f"admin {' '.join(args)} → {out.returncode}: {said}"
    assert says in said, f"admin {' '.join(args)}: {said!r} lacks {says!r}"
    return said


class Publish:
    """One restream of the sample to a feature, in a thread (Kaltura's restream)."""

    def __init__(self, feature: dict[str, Any], stop: threading.Event, start_offset: float = 0.0) -> None:
        self.stats: RestreamStats | None = None
        url = publish_url(feature["mediaUrl"], feature["mediaKey"])

        def work() -> None:
            self.stats = restream(JFK_FLAC, url, stop=stop, loops=LOOPS, start_offset=start_offset)

        self.thread = threading.Thread(target=work, name="restream", daemon=True)
        self.thread.start()

    def done(self) -> bool:
        return not self.thread.is_alive()


async def test_stepping_in_on_a_live_event(stack: Stack) -> None:
    kaltura = stack.kaltura
    client = redis.Redis.from_url(stack.redis_url)
    run = await asyncio.to_thread(scenario.order, kaltura, translations=("French",), duration=600)
    await asyncio.to_thread(scenario.wait_scheduled, kaltura, run, 60)
    event_id = run.event_id
    caption_task, french_task = run.task_ids
    stop = threading.Event()
    readers = scenario.start_clients(run, gateway_urls=stack.gateway_urls(), ping_interval=1.0)
    captions, french = run.clients[caption_task], run.clients[french_task]
    try:
        primary = Publish(run.features[caption_task], stop)
        standby = Publish(run.features[french_task], stop)
        await eventually(lambda: len(captions.responses("captions")) >= 2, 90, 0.1, "the first captions")
        await eventually(lambda: french.responses("captions"), 30, 0.1, "the first translations")

        # Refused: an unknown event, a task not final, a publisher that is not there.
        await asyncio.gather(
            run_admin(stack, "restart-session", "999999999", code=1, says="unknown event 999999999"),
            run_admin(stack, "resend-status", caption_task, code=1, says="not final yet"),
            run_admin(stack, "disconnect", event_id, "--publisher", "nobody", code=1, says="no publisher nobody"),
        )

        # restart-session: a new claim and KWIKmotion session; the captions go on.
        epoch = int(client.hget(keys.relay_state(event_id), keys.RELAY_EPOCH))
        kwik_sessions = len(stack.kwik_emulator.started_sessions())
        await run_admin(stack, "restart-session", event_id, says="relay relay-0 took the session over")
        assert int(client.hget(keys.relay_state(event_id), keys.RELAY_EPOCH)) > epoch
        n = len(captions.responses("captions"))
        await eventually(lambda: len(captions.responses("captions")) >= n + 3, 60, 0.1, "captions after the restart")
        assert len(stack.kwik_emulator.started_sessions()) > kwik_sessions

        # revoke the translation: its publish and caption connection close; its old key is refused.
        await run_admin(stack, "revoke", french_task, says="media key and caption token revoked")
        await eventually(french.finished.is_set, 30, 0.1, "the translation's caption connection closed")
        assert french.closes[-1][0] == 4003, french.closes
        await eventually(standby.done, 30, 0.1, "the translation's publish closed")
        refused = await asyncio.to_thread(
            restream, JFK_FLAC, publish_url(**_url(run.features[french_task])), stop_at=1.0
        )
        assert refused.error, refused

        # disconnect: the publish is dropped; a new one is accepted and the captions go on.
        words_before = caption_words(captions.responses("captions"))
        gone = set(live_publishers(client.hgetall(keys.ingest_presence(event_id)), time.time()))
        assert gone
        await run_admin(stack, "disconnect", event_id, says="closed; the event is paused")
        await eventually(primary.done, 30, 0.1, "the dropped publish ended")
        assert primary.stats is not None and primary.stats.error
        republish = Publish(run.features[caption_task], stop, start_offset=primary.stats.source_end)
        await eventually(
            lambda: set(live_publishers(client.hgetall(keys.ingest_presence(event_id)), time.time())) - gone,
            30,
            0.2,
            "the new publish accepted",
        )
        n = len(captions.responses("captions"))
        await eventually(lambda: len(captions.responses("captions")) >= n + 2, 60, 0.1, "captions after the re-publish")

        # end-media: end of stream (operator), the captions end, the task READY, publishes refused.
        await run_admin(stack, "end-media", event_id, says="end of stream written")
        [(_id, last)] = client.xrevrange(keys.audio(event_id), count=1)
        eos = streams.parse_audio(last)
        assert isinstance(eos, streams.EndOfStream) and eos.reason == "operator", eos
        await eventually(captions.done.is_set, 60, 0.1, "the captions' end of stream")
        await eventually(republish.done, 30, 0.1, "the publish stopped")
        statuses = await asyncio.to_thread(kaltura.wait_status, [caption_task], scenario.FINAL, 60)
        assert statuses == {caption_task: scenario.READY}
        late = await asyncio.to_thread(restream, JFK_FLAC, publish_url(**_url(run.features[caption_task])), stop_at=1.0)
        assert late.error, late

        # resend-status: Kaltura sees READY again.
        assert _ready_calls(kaltura, caption_task) == 1
        await run_admin(stack, "resend-status", caption_task, says="READY queued for Kaltura")
        await eventually(lambda: _ready_calls(kaltura, caption_task) == 2, 60, 0.2, "READY sent again")

        # Refused now: ended, already revoked, not final (the revoked task: Kaltura was not told).
        await asyncio.gather(
            run_admin(stack, "end-media", event_id, code=1, says="has already ended"),
            run_admin(stack, "revoke", french_task, code=1, says="already cancelled"),
            run_admin(stack, "resend-status", french_task, code=1, says="not final yet"),
            run_admin(stack, "disconnect", event_id, code=1, says="has ended"),
        )
    finally:
        stop.set()
        for r in readers:
            r.cancel()
        await asyncio.gather(*readers, return_exceptions=True)

    # Captions: none repeated, in order; every word once across the restart (up to the disconnect,
    # whose dropped publish may have cut a word).
    responses = captions.responses("captions")
    ids = [r["id"] for r in responses]
    assert len(ids) == len(set(ids)), "a caption was sent twice"
    assert_timings_non_decreasing(responses)
    assert words_before == (REFERENCE * LOOPS)[: len(words_before)], words_before
    assert caption_words(responses)[: len(words_before)] == words_before
    assert captions.responses()[-1]["is_end_of_stream"]

    history = [e.fields for e in journal.read(client, event_id) if e.kind == "operator_action"]
    assert [h["action"] for h in history] == [
        "restart-session",
        "revoke",
        "disconnect",
        "end-media",
        "resend-status",
    ], history
    logs = {name: _log(stack, name) for name in ("relay", "ingest", "gateway", "worker")}
    assert "operator restart-session" in logs["relay"]
    assert "operator revoke" in logs["ingest"] and "operator revoke" in logs["gateway"]
    assert "operator disconnect" in logs["ingest"] and "operator end-media" in logs["ingest"]
    assert "operator resend-status" in logs["worker"]
    client.close()


def _url(feature: dict[str, Any]) -> dict[str, str]:
    return {"media_url": feature["mediaUrl"], "media_key": feature["mediaKey"]}


def _ready_calls(kaltura: Any, task_id: str) -> int:
    calls = [c for c in kaltura.calls() if c["action"] == "updateJob" and not c.get("code")]
    return sum(
        str(c["params"].get("id")) == task_id
        and int((c["params"].get("entryVendorTask") or {}).get("status", 0)) == scenario.READY
        for c in calls
    )


def _log(stack: Stack, name: str) -> str:
    assert stack.log_dir is not None
    return "\n".join(p.read_text(errors="replace") for p in stack.log_dir.glob(f"{name}-*.log"))
