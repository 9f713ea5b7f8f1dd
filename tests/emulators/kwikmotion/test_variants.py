"""The emulator's readings of the seed (issue 17) on real sockets: the shape, order and omissions
of each variant, and the guarantee every variant keeps (the words, taken in chunk order, are
those of the audio, each once)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from emulators.kwikmotion import VARIANTS, KwikmotionEmulator, ResultShaper, Variant
from emulators.media import JFK_TEXT
from shared.child import Service
from shared.kwikmotion.messages import end_of_stream, start_recognition
from tests.emulators.kwikmotion.support import TOKEN, chunks, open_ws, recv_json

SEED_TRANSCRIPT_KEYS = ["transcript", "start_time", "end_time", "language", "chunk_index", "word_count"]
SILENCE_2S = b"\x00\x00" * 32000
RATE = 16000


async def converse(emu: KwikmotionEmulator, audio: list[bytes], targets: list[str]) -> list[dict[str, Any]]:
    """Start, send every chunk back to back, EndOfStream; every message up to EndOfTranscript."""
    got: list[dict[str, Any]] = []
    async with open_ws(emu) as ws:
        await ws.send(start_recognition("en", targets))
        for chunk in audio:
            await ws.send(chunk)
        await ws.send(end_of_stream(len(audio)))
        while not got or got[-1]["message"] != "EndOfTranscript":
            got.append(await recv_json(ws, 10))
    return got


def spans(audio: list[bytes]) -> list[tuple[float, float]]:
    """Each chunk's (start, end) in seconds of the session's audio."""
    out, t = [], 0.0
    for chunk in audio:
        d = len(chunk) / 2 / RATE
        out.append((round(t, 3), round(t + d, 3)))
        t += d
    return out


def transcripts(msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m["metadata"] for m in msgs if m["message"] == "AddTranscript"]


def words_in_chunk_order(msgs: list[dict[str, Any]]) -> list[str]:
    ordered = sorted(transcripts(msgs), key=lambda m: m["chunk_index"])
    return " ".join(m["transcript"] for m in ordered).split()


def translations_after(msgs: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """chunk_index → the AddTranslations sent right after its AddTranscript (before the next one)."""
    out: dict[int, list[dict[str, Any]]] = {}
    current = None
    for m in msgs:
        if m["message"] == "AddTranscript":
            current = m["metadata"]["chunk_index"]
            out[current] = []
        elif m["message"] == "AddTranslation":
            assert current is not None, "a translation before any transcript"
            out[current].append(m["metadata"])
    return out


@pytest.mark.parametrize("name", list(VARIANTS))
async def test_every_variant_keeps_every_word_once_in_chunk_order(name: str, pcm: bytes) -> None:
    variant = VARIANTS[name]
    audio = [*chunks(pcm), SILENCE_2S, SILENCE_2S]  # 6 chunks of speech (the last padded), 2 silent
    async with KwikmotionEmulator(token=TOKEN, variant=name) as emu:
        msgs = await converse(emu, audio, ["fr"])
        assert emu.sessions[0].variant == variant
    names = [m["message"] for m in msgs]
    assert names[0] == "RecognitionStarted" and names[-1] == "EndOfTranscript"

    # The guarantee: one AddTranscript per chunk, the words in chunk order the reference once.
    results = transcripts(msgs)
    assert sorted(r["chunk_index"] for r in results) == list(range(len(audio)))
    assert words_in_chunk_order(msgs) == JFK_TEXT.split()
    # AudioAdded stays in order, one per chunk, whatever the results do.
    assert [m["seq_no"] for m in msgs if m["message"] == "AudioAdded"] == list(range(len(audio)))

    # times: session (the chunk's span of the session) or chunk (from the chunk's start).
    span = spans(audio)
    for r in results:
        start, end = span[r["chunk_index"]]
        origin = 0.0 if variant.times == "session" else start
        assert r["end_time"] == pytest.approx(end - origin, abs=1e-3)
        earliest = start - origin - (1.0 if variant.boundary else 0.0)
        assert earliest - 1e-3 <= r["start_time"] <= start - origin + 1e-3

    # reorder: chunk 2k+1's results come before chunk 2k's; else in chunk order.
    arrival = [r["chunk_index"] for r in results]
    if variant.reorder:
        assert arrival == [i ^ 1 for i in range(len(audio))]
    else:
        assert arrival == sorted(arrival)

    # empty_translations: an empty transcript gets its (empty) AddTranslation, or none.
    after = translations_after(msgs)
    for r in results:
        expected = 0 if (variant.empty_translations == "omit" and not r["transcript"]) else 1
        got = after[r["chunk_index"]]
        assert len(got) == expected, (r, got)
        for t in got:  # paired by time range and language, never by chunk index (the seed has none)
            assert (t["start_time"], t["end_time"], t["target_language"]) == (r["start_time"], r["end_time"], "fr")
            assert t["translation"] == (f"[fr] {r['transcript']}" if r["transcript"] else "")
    assert any(not r["transcript"] for r in results), "the silent chunks give empty transcripts"

    # sparse: odd chunks lack word_count and language; otherwise the seed's keys, in its order.
    for r in results:
        if variant.sparse and r["chunk_index"] % 2:
            assert list(r) == ["transcript", "start_time", "end_time", "chunk_index"]
        else:
            assert list(r) == SEED_TRANSCRIPT_KEYS
            assert r["word_count"] == len(r["transcript"].split()) and r["language"] == "en"

    # boundary: some transcript carries the word cut at its chunk's start, claiming up to 1 s before.
    early = [r for r in results if r["start_time"] < span[r["chunk_index"]][0] - (0 if variant.times == "session"
             else span[r["chunk_index"]][0]) - 1e-3]  # fmt: skip
    assert bool(early) == variant.boundary

    # extra_messages: unlisted types, interleaved.
    unknown = [m for m in msgs if m["message"] not in
               ("RecognitionStarted", "AudioAdded", "AddTranscript", "AddTranslation", "EndOfTranscript")]  # fmt: skip
    if variant.extra_messages:
        assert names[1] == "Info"
        assert sum(m["message"] == "AddPartialTranscript" for m in unknown) == len(audio)
    else:
        assert unknown == []


async def test_boundary_moves_the_cut_word_to_the_next_chunk(pcm: bytes) -> None:
    audio = chunks(pcm)
    async with KwikmotionEmulator(token=TOKEN) as plain, KwikmotionEmulator(token=TOKEN, boundary=True) as cut:
        seed = {r["chunk_index"]: r["transcript"].split() for r in transcripts(await converse(plain, audio, []))}
        moved = {r["chunk_index"]: r["transcript"].split() for r in transcripts(await converse(cut, audio, []))}
    for i in range(1, len(audio)):
        carried = seed[i - 1][-1:]  # the last word of the chunk before, if it had any
        assert moved[i] == carried + seed[i][:-1] or (i == len(audio) - 1 and moved[i] == carried + seed[i])


async def test_held_results_go_out_after_hold_seconds_without_end_of_stream(pcm: bytes) -> None:
    async with KwikmotionEmulator(token=TOKEN, reorder=True, boundary=True, hold_seconds=0.3) as emu:
        async with open_ws(emu) as ws:
            await ws.send(start_recognition("en", ["fr"]))
            assert (await recv_json(ws))["message"] == "RecognitionStarted"
            await ws.send(chunks(pcm)[0])  # chunk 0: held (even, and its last word may move on)
            assert (await recv_json(ws))["message"] == "AudioAdded"
            started = time.monotonic()
            result = await recv_json(ws, 10)
            assert result["message"] == "AddTranscript" and result["metadata"]["chunk_index"] == 0
            assert time.monotonic() - started >= 0.25
            # Nothing was carried past it: it has every word of its audio.
            assert (
                result["metadata"]["transcript"].split()
                == JFK_TEXT.split()[: len(result["metadata"]["transcript"].split())]
            )
            assert (await recv_json(ws))["message"] == "AddTranslation"


def test_result_shaper_alone() -> None:
    shaper = ResultShaper(Variant(boundary=True, reorder=True, times="chunk"), "en", ["fr"], RATE)
    assert shaper.chunk(0, 0, 32000, ["a", "b"]) == [] and shaper.holding
    assert shaper.chunk(1, 32000, 64000, ["c"]) == [] and shaper.holding  # chunk 0 ready, held (even)
    out = shaper.chunk(2, 64000, 96000, [])  # chunk 1 ready (odd): sent, then chunk 0
    assert [(m["message"], m["metadata"].get("chunk_index")) for m in out] == [
        ("AddTranscript", 1), ("AddTranslation", None), ("AddTranscript", 0), ("AddTranslation", None)
    ]  # fmt: skip
    assert out[0]["metadata"]["transcript"] == "b" and out[0]["metadata"]["start_time"] == -1.0
    assert out[2]["metadata"]["transcript"] == "a"
    flushed = shaper.flush()  # chunk 2 got chunk 1's "c"
    assert flushed[0]["metadata"] | {} == {"transcript": "c", "start_time": -1.0, "end_time": 2.0, "language": "en",
                                           "chunk_index": 2, "word_count": 1}  # fmt: skip
    assert not shaper.holding and shaper.flush() == []
    with pytest.raises(ValueError):
        Variant(times="epoch")


def _http(url: str, method: str = "GET") -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def test_admin_sets_the_variant_of_new_sessions(pcm: bytes) -> None:
    async with KwikmotionEmulator(token=TOKEN) as emu:
        root = emu.url.replace("ws://", "http://").rstrip("/")
        status, doc = await asyncio.to_thread(_http, f"{root}/admin/variant")
        assert status == 200 and doc["describe"] == "seed" and doc["times"] == "session"
        status, doc = await asyncio.to_thread(_http, f"{root}/admin/variant?times=chunk&sparse=true", "POST")
        assert status == 200 and doc["describe"] == "times=chunk sparse"
        status, doc = await asyncio.to_thread(_http, f"{root}/admin/variant?variant=reorder&sparse=1", "POST")
        assert doc["describe"] == "reorder sparse"
        for bad in ("times=epoch", "reorder=maybe", "nonsense=1", "variant=nope"):
            assert (await asyncio.to_thread(_http, f"{root}/admin/variant?{bad}", "POST"))[0] == 400, bad
        msgs = await converse(emu, chunks(pcm)[:2], [])
        assert [r["chunk_index"] for r in transcripts(msgs)] == [1, 0]
        assert emu.sessions[0].summary()["variant"]["reorder"] is True


def test_cli_flags(tmp_path: Path) -> None:
    args = ["emulate", "kwikmotion", "--listen", "127.0.0.1:0", "--token", "cli-token", "--variant", "sparse"]
    args += ["--times", "chunk", "--reorder", "--no-sparse", "--empty-translations", "omit"]
    with Service(args, env={}, log_dir=tmp_path, name="kwik-variant") as service:
        deadline = time.monotonic() + 20
        while "KWIKMOTION_EMULATOR_VARIANT=" not in service.log():
            assert service.alive() and time.monotonic() < deadline, service.log()
            time.sleep(0.05)
        assert "KWIKMOTION_EMULATOR_VARIANT=times=chunk reorder empty_translations=omit\n" in service.log()
