"""``reachlive captions`` and ``reachlive usage`` after a real event: ordered in the Kaltura
emulator with a captions task and a French translation task, published over RTMP in real time,
transcribed through the KWIKmotion emulator and read by Kaltura's caption client, to READY. Then
the real commands (subprocesses): each export format parsed with a subtitle library gives one cue
per captions response the client read, with its text and times, and the usage records say one per
task with the media and the words that went through."""

from __future__ import annotations

import csv
import html
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import srt
import webvtt

from services.demo import scenario
from services.demo.stack import Stack
from shared import registry
from shared.redis_client import sync_client
from tests.e2e.play import play
from tests.support.polling import wait_for

SAMPLE_SECONDS = 11.0  # emulators/media/jfk.flac


def reachlive(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REACHLIVE_REDIS_URL": stack.redis_url}
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", *args], env=env, capture_output=True, text=True, timeout=60
    )


def _seconds(stamp: str) -> float:
    h, m, s = stamp.replace(",", ".").split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def read_captions(client: Any) -> list[dict[str, Any]]:
    """What Kaltura's client read of the captions responses, each once (by id), in order."""
    seen: set[str] = set()
    out = []
    for r in client.responses("captions"):
        if r["id"] not in seen:
            seen.add(r["id"])
            out.append(r)
    return out


def check_export(stack: Stack, task_id: str, read: list[dict[str, Any]], tmp_path: Path) -> None:
    cues = [r for r in read if not r["is_end_of_stream"]]
    assert cues, "the client read no captions"
    want = [(r["start"], r["end"], r["alternatives"][0]["transcript"]) for r in cues]

    out = reachlive(stack, "captions", task_id, "--format", "vtt")
    assert out.returncode == 0, out.stderr
    got = [(_seconds(c.start), _seconds(c.end), html.unescape(c.text)) for c in webvtt.from_string(out.stdout)]
    assert len(got) == len(want)
    for (gs, ge, gt), (ws, we, wt) in zip(got, want, strict=True):
        assert abs(gs - ws) < 1e-3 and abs(ge - we) < 1e-3 and gt == wt

    path = tmp_path / f"{task_id}.srt"
    out = reachlive(stack, "captions", task_id, "--format", "srt", "--output", str(path))
    assert out.returncode == 0 and out.stdout == "", out.stderr
    subs = list(srt.parse(path.read_text(encoding="utf-8")))
    assert [(round(s.start.total_seconds(), 3), round(s.end.total_seconds(), 3), s.content) for s in subs] == [
        (round(s, 3), round(e, 3), t) for s, e, t in want
    ]

    out = reachlive(stack, "captions", task_id, "--format", "json")
    assert out.returncode == 0, out.stderr
    stored = [e["response"] for e in json.loads(out.stdout)]
    # As stored, as sent; and the end of stream (a client stops at the first one, the transcript's).
    assert stored[:-1] == cues and stored[-1]["is_end_of_stream"]

    out = reachlive(stack, "captions", task_id, "--format", "txt")
    assert out.returncode == 0, out.stderr
    assert out.stdout.rstrip("\n").split("\n\n") == [t for _s, _e, t in want]


def words(read: list[dict[str, Any]]) -> int:
    return sum(1 for r in read for i in r["alternatives"][0]["items"] if i["kind"] == "text")


async def test_an_ended_event_exports_its_captions_and_usage(stack: Stack, tmp_path: Path) -> None:
    run = await play(stack, translations=("French",))
    caption, french = run.task_ids
    assert run.statuses == {caption: scenario.READY, french: scenario.READY}
    read = {t: read_captions(run.clients[t]) for t in run.task_ids}
    assert {r["language_code"][:2] for r in read[french]} == {"fr"}
    for task_id in run.task_ids:
        check_export(stack, task_id, read[task_id], tmp_path)

    out = reachlive(stack, "captions", "424242424")
    assert out.returncode == 1 and "unknown task 424242424" in out.stderr

    def records() -> dict[str, dict[str, Any]]:
        out = reachlive(stack, "usage", "--format", "json")
        assert out.returncode == 0, out.stderr
        return {r["task_id"]: r for r in json.loads(out.stdout) if r["event_id"] == run.event_id}

    found = wait_for(lambda: (r := records()) and len(r) == 2 and r, timeout=30, what="a usage record per task")
    client = sync_client(stack.redis_url)
    event = registry.read_event_sync(client, run.event_id)
    client.close()
    assert event is not None
    for task_id, service in ((caption, "captions"), (french, "translation")):
        rec = found[task_id]
        assert (rec["service"], rec["status"], rec["partner_id"]) == (service, "ready", event.partner_id)
        assert SAMPLE_SECONDS - 1 <= rec["media_seconds"] <= SAMPLE_SECONDS + 10, rec
        assert 0 < rec["session_seconds"] <= rec["media_seconds"] + 30, rec
        assert rec["words"] == words(read[task_id]) > 0
    assert found[french]["target_language"] == "fr" and found[french]["source_language"] == "en"

    out = reachlive(stack, "usage", "--partner", event.partner_id)
    rows = [r for r in csv.DictReader(io.StringIO(out.stdout)) if r["event_id"] == run.event_id]
    assert out.returncode == 0 and sorted(r["task_id"] for r in rows) == sorted(run.task_ids)
    out = reachlive(stack, "usage", "--partner", "0", "--format", "json")
    assert out.returncode == 0 and json.loads(out.stdout) == []
