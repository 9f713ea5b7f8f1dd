"""The KWIKmotion emulator against a real websockets client: the seed's messages to the letter."""

from __future__ import annotations

import asyncio
import itertools
import json
import time

import pytest
from websockets.exceptions import ConnectionClosedError

from emulators.kwikmotion import KwikmotionEmulator
from emulators.media import JFK_TEXT
from shared.kwikmotion import (
    AudioAdded,
    EndOfTranscript,
    ErrorClass,
    KwikError,
    KwikSession,
    TranscriptResult,
    TranslationResult,
    classify_close,
)
from tests.emulators.kwikmotion.support import FORBIDDEN, TOKEN, chunks, eventually, open_ws, recv_json, start

# Seed, "Authentication Error Responses" (timestamp checked apart), and the close we answer with.
MISSING = {
    "message": "Error",
    "type": "authentication_error",
    "reason": "Authentication required: Missing Authorization header",
    "code": 4001,
}
BAD_FORMAT = {**MISSING, "reason": "Authentication required: Invalid Authorization header format"}
EXPIRED = {
    "message": "Error",
    "type": "authentication_error",
    "reason": "token_expired",
    "code": 401,
    "details": {"error": True, "message": "token_expired"},
}
FORBIDDEN_PAYLOAD = {
    "message": "Error",
    "type": "authentication_error",
    "reason": "Insufficient permissions for ailivecaptioning service",
    "code": 403,
    "details": {"error": True, "message": "subscription_required"},
}


def assert_seed_error(received: dict, expected: dict) -> None:
    stamp = received.pop("timestamp")
    assert isinstance(stamp, float) and abs(stamp - time.time()) < 60
    assert received == expected
    # The seed's field order: message, type, reason, code, timestamp[, details].
    order = ["message", "type", "reason", "code", *(["details"] if "details" in expected else [])]
    assert list(received) == order


async def closed_with(ws) -> tuple[int | None, str]:
    with pytest.raises(ConnectionClosedError) as info:
        await asyncio.wait_for(ws.recv(), 5)
    rcvd = info.value.rcvd
    return (rcvd.code, rcvd.reason) if rcvd else (None, "")


@pytest.mark.parametrize(
    ("token", "headers", "expected", "close", "auth"),
    [
        (None, {}, MISSING, (4001, "authentication_error"), "missing"),
        (None, {"Authorization": "Token abc"}, BAD_FORMAT, (4001, "authentication_error"), "format"),
        (None, {"Authorization": "Bearer"}, BAD_FORMAT, (4001, "authentication_error"), "format"),
        (None, {"Authorization": "bearer " + TOKEN}, BAD_FORMAT, (4001, "authentication_error"), "format"),
        ("not-the-token", {}, EXPIRED, (1008, "authentication_error: token_expired"), "expired"),
        (FORBIDDEN, {}, FORBIDDEN_PAYLOAD, (1008, "authentication_error: subscription_required"), "forbidden"),
    ],
)
async def test_authentication_errors_are_the_seeds_payloads(
    emu: KwikmotionEmulator, token: str | None, headers: dict, expected: dict, close: tuple[int, str], auth: str
) -> None:
    async with open_ws(emu, token, **headers) as ws:
        # "immediately after connection": before we send anything
        assert_seed_error(await recv_json(ws), expected)
        assert await closed_with(ws) == close
    # Our client reads every one of these closes as a configuration fault.
    assert classify_close(*close) is ErrorClass.CONFIG
    await eventually(lambda: emu.sessions[-1].finished)
    record = emu.sessions[-1]
    assert (record.auth, record.token_ok, record.session_id, record.closed_code) == (auth, False, None, close[0])
    assert emu.active == 0


async def test_the_session_core_classifies_the_emulators_auth_error_as_config(emu: KwikmotionEmulator) -> None:
    session = KwikSession("en")
    async with open_ws(emu, "expired-token") as ws:
        [event] = session.receive(await ws.recv(), 0.0)
    assert isinstance(event, KwikError) and event.code == 401 and event.error_class is ErrorClass.CONFIG
    assert event.details == {"error": True, "message": "token_expired"}


async def test_query_token_of_the_seeds_browser_example_is_accepted_and_recorded(emu: KwikmotionEmulator) -> None:
    from websockets.asyncio.client import connect

    async with connect(f"{emu.url}?token={TOKEN}") as ws:
        await start(ws)
    await eventually(lambda: emu.sessions[-1].finished)
    assert (emu.sessions[-1].auth, emu.sessions[-1].auth_via) == ("ok", "query")


@pytest.mark.parametrize("chunk_bytes", [64000, 192000, 50000])
async def test_jfk_flow_audio_added_transcripts_translations_end(
    emu: KwikmotionEmulator, pcm: bytes, chunk_bytes: int
) -> None:
    assert len(pcm) == 11 * 32000  # 11 s at 16 kHz mono s16le
    pieces = chunks(pcm, chunk_bytes)
    targets = ["fr", "es"]
    async with open_ws(emu) as ws:
        session = await start(ws, "en", targets)
        assert session.session_id and session.session_id.startswith("session_")
        for piece in pieces:
            await ws.send(session.send_audio(piece, time.monotonic()))
        await ws.send(session.end_of_stream(time.monotonic()))
        raw: list[dict] = []
        events = []
        while session.state == "ending":
            text = await asyncio.wait_for(ws.recv(), 5)
            raw.append(json.loads(text))
            events += session.receive(text, time.monotonic())
    assert session.state == "done"
    assert [e.seq_no for e in events if isinstance(e, AudioAdded)] == list(range(len(pieces)))
    transcripts = [e for e in events if isinstance(e, TranscriptResult)]
    assert [t.chunk_index for t in transcripts] == list(range(len(pieces)))
    # The reference replayed in step with the audio: every word once, in order, over the 11 s.
    assert " ".join(t.transcript for t in transcripts if t.transcript).split() == JFK_TEXT.split()
    metas = [t.raw["metadata"] for t in transcripts]
    assert metas[0]["start_time"] == 0.0 and metas[-1]["end_time"] == 11.0
    for meta, nxt in itertools.pairwise(metas):
        # to the millisecond the emulator rounds to (the session core keeps a result within its chunk)
        assert meta["end_time"] == pytest.approx(nxt["start_time"], abs=1e-3)
    for meta, piece in zip(metas, pieces, strict=True):
        assert set(meta) == {"transcript", "start_time", "end_time", "language", "chunk_index", "word_count"}
        assert meta["language"] == "en" and meta["word_count"] == len(meta["transcript"].split())
        assert meta["end_time"] - meta["start_time"] == pytest.approx(len(piece) / 32000, abs=0.002)
    # One AddTranslation per target per transcript, right after it, labelled, same times.
    translations = [e for e in events if isinstance(e, TranslationResult)]
    assert len(translations) == len(targets) * len(transcripts)
    for i, t in enumerate(transcripts):
        for j, target in enumerate(targets):
            tr = translations[i * len(targets) + j]
            meta = tr.raw["metadata"]
            assert (tr.target_language, tr.chunk_index) == (target, i)
            assert set(meta) == {"translation", "target_language", "start_time", "end_time"}
            assert meta["translation"] == (f"[{target}] {t.transcript}" if t.transcript else "")
            assert (meta["start_time"], meta["end_time"]) == (
                t.raw["metadata"]["start_time"],
                t.raw["metadata"]["end_time"],
            )
    assert events[-1] == EndOfTranscript("no_more_audio")
    assert raw[-1] == {"message": "EndOfTranscript", "reason": "no_more_audio"}
    assert session.completed == len(pieces)
    # What arrived is what we sent, in order, once.
    await eventually(lambda: emu.sessions[-1].finished)
    record = emu.sessions[-1]
    assert emu.audio(record.index) == pcm and record.chunks == pieces
    assert record.start == json.loads(KwikSession("en", targets).start(0))
    assert record.end_of_stream == {"message": "EndOfStream", "last_seq_no": len(pieces)}
    assert record.done and record.closed_code == 1000 and record.auth_via == "header"


async def _words_of(emu: KwikmotionEmulator, audio: bytes) -> list[str]:
    async with open_ws(emu) as ws:
        session = await start(ws)
        pieces = chunks(audio, 320000)
        for piece in pieces:
            await ws.send(session.send_audio(piece, 0))
        words = []
        for _ in pieces:
            for event in session.receive(await ws.recv(), 0) + session.receive(await ws.recv(), 0):
                if isinstance(event, TranscriptResult):
                    words += event.transcript.split()
    return words


async def test_reference_loops_past_its_end(emu: KwikmotionEmulator, pcm: bytes) -> None:
    # The reference audio twice (22 s, in 10 s chunks across the loop point): its words twice.
    assert await _words_of(emu, pcm * 2) == JFK_TEXT.split() * 2
    # Silence is not the reference: no words (align="audio", the default with the JFK sample).
    assert await _words_of(emu, b"\x00\x00" * 16000 * 22) == []


async def test_time_mode_loops_the_reference_past_its_end() -> None:
    silence = b"\x00\x00" * 16000 * 22  # 22 s: the 11 s reference twice, whatever the audio
    async with KwikmotionEmulator(token=TOKEN, align="time") as emu:
        assert await _words_of(emu, silence) == JFK_TEXT.split() * 2


async def test_sessions_get_distinct_ids(emu: KwikmotionEmulator) -> None:
    async with open_ws(emu) as a, open_ws(emu) as b:
        ids = {(await start(a)).session_id, (await start(b)).session_id}
    assert len(ids) == 2


# -- 4001 invalid_message / 4004 invalid_model ---------------------------------------------

INVALID = [
    ("not json{", "Malformed JSON message"),
    ("[1]", "Invalid message format: missing 'message' field"),
    (json.dumps({"message": "Hello"}), "Unknown message type: Hello"),
    (json.dumps({"message": "StartRecognition"}), "Missing required field: audio_format"),
    (
        json.dumps({"message": "StartRecognition", "audio_format": {"type": "raw", "encoding": "pcm_s16le"}}),
        "Missing required field: audio_format.sample_rate",
    ),
    (
        json.dumps(
            {
                "message": "StartRecognition",
                "audio_format": {"type": "raw", "encoding": "opus", "sample_rate": 16000},
                "transcription_config": {"language": "en"},
            }
        ),
        "Invalid audio_format.encoding: must be 'pcm_s16le', 'pcm_f32le' or 'mulaw'",
    ),
    (
        json.dumps(
            {
                "message": "StartRecognition",
                "audio_format": {"type": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
            }
        ),
        "Missing required field: transcription_config.language",
    ),
    (json.dumps({"message": "EndOfStream", "last_seq_no": 0}), "EndOfStream before StartRecognition"),
]


@pytest.mark.parametrize(("text", "reason"), INVALID)
async def test_malformed_messages_get_4001_invalid_message(emu: KwikmotionEmulator, text: str, reason: str) -> None:
    async with open_ws(emu) as ws:
        await ws.send(text)
        error = await recv_json(ws)
        assert error.pop("timestamp") > 0
        assert error == {"message": "Error", "type": "invalid_message", "reason": reason, "code": 4001}
        assert await closed_with(ws) == (4001, "invalid_message")


async def test_audio_before_start_is_4001(emu: KwikmotionEmulator) -> None:
    async with open_ws(emu) as ws:
        await ws.send(b"\x00\x00" * 10)
        error = await recv_json(ws)
        assert (error["code"], error["type"], error["reason"]) == (
            4001,
            "invalid_message",
            "Audio received before StartRecognition",
        )
        assert (await closed_with(ws))[0] == 4001


async def test_a_second_start_and_odd_audio_are_4001(emu: KwikmotionEmulator) -> None:
    async with open_ws(emu) as ws:
        session = await start(ws)
        await ws.send(b"\x00\x00\x00")  # not whole s16le samples
        error = await recv_json(ws)
        assert (error["code"], error["reason"]) == (4001, "Invalid audio chunk: 3 bytes")
    async with open_ws(emu) as ws:
        session = await start(ws)
        await ws.send(KwikSession("en").start(0))
        error = await recv_json(ws)
        assert (error["code"], error["reason"]) == (4001, "StartRecognition already received")
    assert session.state == "streaming"


async def test_end_of_stream_must_count_the_chunks_sent(emu: KwikmotionEmulator) -> None:
    async with open_ws(emu) as ws:
        session = await start(ws)
        await ws.send(session.send_audio(b"\x00\x00" * 1600, 0))
        for _ in range(3):  # AudioAdded, AddTranscript... (no targets)
            msg = await recv_json(ws)
            if msg["message"] == "AddTranscript":
                break
        await ws.send(json.dumps({"message": "EndOfStream", "last_seq_no": 2}))
        error = await recv_json(ws)
        assert (error["code"], error["type"], error["reason"]) == (
            4001,
            "invalid_message",
            "last_seq_no 2 does not match 1 chunks received",
        )
        assert (await closed_with(ws))[0] == 4001


@pytest.mark.parametrize(("language", "targets", "bad"), [("xyz", [], "xyz"), ("en", ["fr", "tlh"], "tlh")])
async def test_unsupported_language_is_4004_invalid_model(
    emu: KwikmotionEmulator, language: str, targets: list[str], bad: str
) -> None:
    async with open_ws(emu) as ws:
        session = KwikSession(language, targets)
        await ws.send(session.start(0))
        text = await ws.recv()
        error = json.loads(text)
        assert error.pop("timestamp") > 0
        assert error == {
            "message": "Error",
            "type": "invalid_model",
            "reason": f"Unsupported language: {bad}",
            "code": 4004,
        }
        assert await closed_with(ws) == (4004, "invalid_model")
    [event] = session.receive(text, 0)
    assert isinstance(event, KwikError) and event.error_class is ErrorClass.PERMANENT


# -- 1008 at capacity ------------------------------------------------------------------------


async def test_capacity_limit_answers_1008_and_frees_up(emu: KwikmotionEmulator) -> None:
    assert emu.max_sessions == 3
    conns = [await open_ws(emu).__aenter__() for _ in range(3)]
    try:
        for ws in conns:
            await start(ws)
        async with open_ws(emu) as extra:
            error = await recv_json(extra)
            assert error.pop("timestamp") > 0
            assert error == {
                "message": "Error",
                "type": "policy_violation",
                "reason": "Server at capacity (session limit)",
                "code": 1008,
            }
            code, reason = await closed_with(extra)
            assert (code, reason) == (1008, "policy_violation")
            assert classify_close(code, reason) is ErrorClass.RETRYABLE
    finally:
        await conns[0].close()
    await eventually(lambda: emu.active == 2)
    async with open_ws(emu) as again:
        await start(again)  # room again
    for ws in conns[1:]:
        await ws.close()
    await eventually(lambda: emu.active == 0)
