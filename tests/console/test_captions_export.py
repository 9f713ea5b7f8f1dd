"""``reachlive captions`` on captions the relay's own writers stored (the caption builder through
``relay.outputs`` and the commit script of ``relay.writer.CaptionWriter``, on the embedded Redis):
each format parsed back with a real subtitle library (webvtt-py, srt), one cue per captions
response with its text, line breaks and times. The whole pipeline's export is in
test_captions_usage.py."""

from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
import srt
import webvtt

from services.console import captions
from services.relay.outputs import entry_fields, make_output
from services.relay.writer import CaptionWriter, Pending, claim_epoch
from shared import keys, registry
from shared.captions import AnchoredTimeBase, parse_result
from shared.registry import EventRecord, TaskRecord

SENTENCES = [
    "And so, my fellow Americans, ask not what your country can do for you;",
    "Q&A: is 3 < 4 and 5 > 4? Yes --> always.",
    "ask what you can do for your country.",
]
FRENCH = [
    "Et donc, mes chers compatriotes, ne demandez pas ce que votre pays peut faire pour vous ;",
    "Questions & réponses : 3 < 4 --> toujours.",
    "demandez ce que vous pouvez faire pour votre pays.",
]


def _results(i: int) -> list[dict[str, Any]]:
    meta = {"start_time": 0.0, "end_time": 6.0}
    text = SENTENCES[i % len(SENTENCES)]
    return [
        {
            "message": "AddTranscript",
            "metadata": {**meta, "transcript": text, "language": "en", "chunk_index": i, "word_count": 9},
        },
        {"message": "AddTranslation", "metadata": {**meta, "translation": FRENCH[i % 3], "target_language": "fr"}},
    ]


async def store_event(client: redis.Redis, aclient: aioredis.Redis, chunks: int = 6) -> tuple[str, str]:
    """An ended event with a caption task (en) and a translation task (fr), ``chunks`` 6 s
    results each, written as the relay writes them. Returns the two task ids."""
    now = time.time()
    registry.write_event(client, EventRecord("E1", "555", now - 600, now - 60, source_language="en", session="1"))
    caption = TaskRecord("T1", "E1", "555", 8, "caption", "en", "en-US", max_chars=20, status=2)
    translation = TaskRecord("T2", "E1", "555", 11, "translation", "fr", "fr-FR", max_chars=20, status=2)
    for t in (caption, translation):
        registry.write_task(client, t)
    outs = [make_output("E1", t, "transcript,captions", None, "0-0") for t in (caption, translation)]
    epoch = await claim_epoch(aclient, "E1")
    writer = CaptionWriter(aclient, "E1", ["T1", "T2"], epoch, 10_000, int(now + 3600))
    tb = AnchoredTimeBase(0.0, 0.0, now - 600)
    for i in range(chunks):
        pend = []
        for msg in _results(i):
            result = parse_result(msg)
            for n, out in enumerate(outs):
                if out.builder.accepts(result):
                    pend += [Pending(n, entry_fields(b, now)) for b in out.builder.build(result, 6.0 * i, tb)]
        await writer.commit(pend, {})
    end = [Pending(n, entry_fields(b, now)) for n, o in enumerate(outs) for b in o.builder.end_of_stream(36.0, tb)]
    await writer.commit(end, {})
    return "T1", "T2"


def stored(client: redis.Redis, task_id: str, kind: str = "captions") -> list[dict[str, Any]]:
    """The task's stored responses of one type, end of stream excluded, straight from the stream."""
    out = []
    for _id, fields in client.xrange(keys.captions("E1", task_id)):
        if fields[b"kind"].decode() == kind and fields[b"eos"] == b"0":
            out.append(json.loads(fields[b"json"])["response"])
    return out


def _seconds(stamp: str) -> float:
    h, m, s = stamp.replace(",", ".").split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def _expected(responses: list[dict[str, Any]]) -> list[tuple[float, float, str]]:
    return [(r["start"], r["end"], r["alternatives"][0]["transcript"]) for r in responses]


@pytest.fixture
async def tasks(redis_client: redis.Redis, aredis: aioredis.Redis) -> tuple[str, str]:
    return await store_event(redis_client, aredis)


@pytest.mark.parametrize("which", [0, 1])
async def test_vtt_and_srt_parse_to_one_cue_per_captions_response(
    redis_client: redis.Redis, tasks: tuple[str, str], which: int
) -> None:
    task_id = tasks[which]
    expected = _expected(stored(redis_client, task_id))
    assert len(expected) > 6 and any("\n" in t for _s, _e, t in expected)  # two-line blocks are there
    export = captions.load(redis_client, task_id)
    assert export.complete and export.kind == "captions"

    vtt = list(webvtt.from_string(captions.to_vtt(export)))
    got = [(_seconds(c.start), _seconds(c.end), html.unescape(c.text)) for c in vtt]
    assert got == [(pytest.approx(s, abs=1e-3), pytest.approx(e, abs=1e-3), t) for s, e, t in expected]

    subs = list(srt.parse(captions.to_srt(export)))
    got = [(c.start.total_seconds(), c.end.total_seconds(), c.content) for c in subs]
    assert got == [(pytest.approx(s, abs=1e-3), pytest.approx(e, abs=1e-3), t) for s, e, t in expected]


def test_vtt_header_names_the_task_language(redis_client: redis.Redis, tasks: tuple[str, str]) -> None:
    head = captions.to_vtt(captions.load(redis_client, tasks[1])).split("\n\n")[0]
    assert head == "WEBVTT\nKind: captions\nLanguage: fr-FR"
    assert all(r["language_code"] == "fr-FR" for r in stored(redis_client, tasks[1]))


def test_json_is_the_stored_responses_and_txt_one_block_each(redis_client: redis.Redis, tasks: tuple[str, str]) -> None:
    export = captions.load(redis_client, tasks[0])
    doc = json.loads(captions.to_json(export))
    entries = redis_client.xrange(keys.captions("E1", "T1"))
    raw = [json.loads(f[b"json"]) for _id, f in entries if f[b"kind"] == b"captions"]
    assert doc == raw and doc[-1]["response"]["is_end_of_stream"]
    blocks = captions.to_txt(export).rstrip("\n").split("\n\n")
    assert blocks == [t for _s, _e, t in _expected(stored(redis_client, tasks[0]))]


def test_transcript_only_tasks_export_their_transcripts(redis_client: redis.Redis, tasks: tuple[str, str]) -> None:
    key = keys.captions("E1", "T1")
    for entry_id, fields in redis_client.xrange(key):
        if fields[b"kind"] == b"captions":
            redis_client.xdel(key, entry_id)
    export = captions.load(redis_client, "T1")
    assert export.kind == "transcript"
    cues = [(c.start, c.end, "\n".join(c.lines)) for c in export.cues()]
    assert cues == _expected(stored(redis_client, "T1", "transcript"))


def _run(monkeypatch: pytest.MonkeyPatch, redis_url: str, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple:
    monkeypatch.setenv("REACHLIVE_REDIS_URL", redis_url)
    code = captions.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_unknown_task_and_expired_captions(
    monkeypatch: pytest.MonkeyPatch,
    redis_url: str,
    redis_client: redis.Redis,
    tasks: tuple[str, str],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    code, out, err = _run(monkeypatch, redis_url, capsys, "999999")
    assert code == 1 and out == ""
    assert "unknown task 999999" in err and "REACHLIVE_RETENTION_DAYS=30" in err

    code, out, err = _run(monkeypatch, redis_url, capsys, "T2", "--format", "srt", "--output", str(tmp_path / "fr.srt"))
    assert code == 0 and out == "" and "written to" in err
    assert len(list(srt.parse((tmp_path / "fr.srt").read_text(encoding="utf-8")))) == len(stored(redis_client, "T2"))

    redis_client.delete(keys.captions("E1", "T1"))  # what the expiry does
    code, out, err = _run(monkeypatch, redis_url, capsys, "T1")
    assert code == 1 and out == ""
    assert "no captions left" in err and "expired" in err

    with pytest.raises(SystemExit) as exited:
        captions.main(["T2", "--format", "docx"])
    assert exited.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_cli_a_task_without_captions_says_none_were_written(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    registry.write_event(redis_client, EventRecord("E2", "555", time.time(), time.time() + 600, session="0"))
    registry.write_task(redis_client, TaskRecord("T9", "E2", "555", status=9))
    code, _out, err = _run(monkeypatch, redis_url, capsys, "T9")
    assert code == 1 and "none were written (scheduled)" in err
