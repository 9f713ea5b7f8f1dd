"""The sans-I/O KWIKmotion session fed the seed's messages directly (no sockets, time passed in)."""

from __future__ import annotations

import json

import pytest

from shared.kwikmotion import (
    AudioAdded,
    ConnectionClosed,
    EndOfTranscript,
    ErrorClass,
    KwikError,
    KwikProtocolError,
    KwikSession,
    ProtocolViolation,
    RecognitionStarted,
    ResultsMissing,
    Timeout,
    TranscriptResult,
    TranslationResult,
)

CHUNK = b"\x01\x00" * 32000  # 2 s of pcm_s16le at 16 kHz


def msg(**fields: object) -> str:
    return json.dumps(fields)


def started(targets: tuple[str, ...] = ("fr", "es"), **kw: object) -> KwikSession:
    s = KwikSession("en", list(targets), **kw)
    s.start(0.0)
    assert s.receive(msg(message="RecognitionStarted", session_id="session_1761130389621"), 0.5) == [
        RecognitionStarted("session_1761130389621")
    ]
    return s


def transcript(index: int, text: str = "This is the transcribed text") -> str:
    meta = {"transcript": text, "start_time": 0.0, "end_time": 4.0, "language": "en", "chunk_index": index}
    return json.dumps({"message": "AddTranscript", "metadata": {**meta, "word_count": len(text.split())}})


def translation(target: str, text: str = "C'est le texte traduit") -> str:
    meta = {"translation": text, "target_language": target, "start_time": 0.0, "end_time": 4.0}
    return json.dumps({"message": "AddTranslation", "metadata": meta})


# -- what we send ---------------------------------------------------------------------------


def test_start_recognition_is_the_seeds_message() -> None:
    s = KwikSession("en", ["fr", "es", "de"])
    assert s.state == "connecting"
    assert json.loads(s.start(1.0)) == {
        "message": "StartRecognition",
        "audio_format": {"type": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
        "transcription_config": {"language": "en"},
        "translation_config": {"target_languages": ["fr", "es", "de"]},
    }
    assert s.state == "starting"


def test_start_without_targets_leaves_translation_config_out() -> None:
    sent = json.loads(KwikSession("ar").start(0.0))
    assert "translation_config" not in sent
    assert sent["transcription_config"] == {"language": "ar"}


def test_duplicate_targets_are_requested_once() -> None:
    assert json.loads(KwikSession("en", ["fr", "fr", "es"]).start(0))["translation_config"] == {
        "target_languages": ["fr", "es"]
    }


def test_constructor_rejects_what_the_seed_does_not_allow() -> None:
    with pytest.raises(ValueError):
        KwikSession("en", encoding="opus")
    with pytest.raises(ValueError):
        KwikSession("en", sample_rate=0)


def test_misuse_raises_the_protocol_error() -> None:
    s = KwikSession("en")
    with pytest.raises(KwikProtocolError):
        s.send_audio(CHUNK, 0)  # before StartRecognition
    with pytest.raises(KwikProtocolError):
        s.end_of_stream(0)
    s.start(0)
    with pytest.raises(KwikProtocolError):
        s.start(0)
    with pytest.raises(KwikProtocolError):
        s.send_audio(CHUNK, 0)  # before RecognitionStarted: the seed says wait for it
    s.receive(msg(message="RecognitionStarted", session_id="x"), 0)
    with pytest.raises(KwikProtocolError):
        s.send_audio(b"", 0)
    with pytest.raises(KwikProtocolError):
        s.send_audio(b"\x00\x00\x00", 0)  # not whole s16le samples
    assert s.sent == 0
    s.end_of_stream(1)
    with pytest.raises(KwikProtocolError):
        s.send_audio(CHUNK, 2)  # after EndOfStream
    with pytest.raises(KwikProtocolError):
        s.end_of_stream(2)


def test_audio_frames_are_the_raw_bytes_and_counted() -> None:
    s = started()
    assert s.send_audio(CHUNK, 1.0) == CHUNK
    assert s.send_audio(bytearray(b"\x02\x00" * 100), 1.0) == b"\x02\x00" * 100
    assert (s.sent, s.acked, s.unacked, s.bytes_sent) == (2, 0, 2, len(CHUNK) + 200)
    assert s.seconds(len(CHUNK)) == 2.0


def test_end_of_stream_carries_the_number_of_chunks_sent() -> None:
    s = started()
    for _ in range(10):
        s.send_audio(CHUNK, 0)
    assert json.loads(s.end_of_stream(5.0)) == {"message": "EndOfStream", "last_seq_no": 10}
    assert s.state == "ending"


def test_end_of_stream_with_no_audio_is_zero() -> None:
    assert json.loads(started().end_of_stream(0)) == {"message": "EndOfStream", "last_seq_no": 0}


# -- what the server sends ----------------------------------------------------------------


def test_full_flow_with_seq_accounting_and_translations() -> None:
    s = started(("fr", "es"))
    assert s.state == "streaming" and s.session_id == "session_1761130389621"
    assert s.can_send(2)
    s.send_audio(CHUNK, 1.0)
    s.send_audio(CHUNK, 2.0)
    assert not s.can_send(2) and s.can_send(3)
    assert s.receive(msg(message="AudioAdded", seq_no=0), 1.25) == [AudioAdded(0, 0.25)]
    assert s.unacked == 1 and s.can_send(2)
    [t0] = s.receive(transcript(0), 2.5)
    assert isinstance(t0, TranscriptResult) and t0.chunk_index == 0 and t0.rtt == 1.5
    assert t0.raw["metadata"]["word_count"] == 5 and t0.transcript == "This is the transcribed text"
    assert s.completed == 0  # translations still owed
    [fr] = s.receive(translation("fr"), 2.6)
    assert isinstance(fr, TranslationResult) and (fr.target_language, fr.chunk_index) == ("fr", 0)
    assert fr.translation == "C'est le texte traduit"
    assert s.completed == 0
    assert s.receive(translation("es"), 2.7)[0].chunk_index == 0
    assert s.completed == 1
    assert s.receive(msg(message="AudioAdded", seq_no=1), 2.8) == [AudioAdded(1, pytest.approx(0.8))]
    assert s.unacked == 0
    s.end_of_stream(3.0)
    s.receive(transcript(1), 3.1)
    s.receive(translation("es"), 3.2)
    s.receive(translation("fr"), 3.2)
    assert s.completed == 2
    assert s.receive(msg(message="EndOfTranscript", reason="no_more_audio"), 3.3) == [EndOfTranscript("no_more_audio")]
    assert s.state == "done" and s.end_reason == "no_more_audio"
    assert s.next_deadline() is None and s.poll(1000.0) == []


def test_translations_interleaved_across_chunks_go_to_the_earliest_owed() -> None:
    s = started(("fr",))
    for _ in range(2):
        s.send_audio(CHUNK, 0)
    s.receive(transcript(0), 1)
    s.receive(transcript(1), 1)
    assert [s.receive(translation("fr"), 1)[0].chunk_index for _ in range(2)] == [0, 1]
    assert s.completed == 2
    # A third translation of the same times: a repeat, dropped, and said why.
    [v] = s.receive(translation("fr"), 1)
    assert isinstance(v, ProtocolViolation) and not v.fatal and v.label == "duplicate"
    # One whose times no transcript has: held in case its transcript comes, then dropped.
    other = json.dumps({"message": "AddTranslation", "metadata": {"translation": "x", "target_language": "fr",
                                                                   "start_time": 9.0, "end_time": 9.5}})  # fmt: skip
    assert s.receive(other, 1) == []
    [v] = s.poll(1 + s.results.wait)
    assert isinstance(v, ProtocolViolation) and not v.fatal and v.label == "unpaired"


def test_without_targets_a_transcript_completes_its_chunk() -> None:
    s = started(())
    s.send_audio(CHUNK, 0)
    s.receive(transcript(0), 0)
    assert s.completed == 1


def test_skipped_chunks_are_released_after_the_wait_and_repeats_are_dropped() -> None:
    s = started((), result_wait=5.0)
    for _ in range(4):
        s.send_audio(CHUNK, 0)
    assert s.receive(transcript(2), 0) == []  # held: chunks 0 and 1 may still come (in any order)
    assert s.completed == 0 and s.next_deadline() == 5.0
    events = s.poll(5.0)  # the server merged chunks 0-2, or lost 0 and 1: released without them
    assert [e.chunk_index for e in events if isinstance(e, ResultsMissing)] == [0, 1]
    assert [e.chunk_index for e in events if isinstance(e, TranscriptResult)] == [2]
    assert s.completed == 3
    [v] = s.receive(transcript(1), 6)
    assert isinstance(v, ProtocolViolation) and not v.fatal and v.label == "late"
    [v] = s.receive(transcript(2), 6)
    assert isinstance(v, ProtocolViolation) and not v.fatal and v.label == "duplicate"
    assert s.state == "streaming"


@pytest.mark.parametrize(
    "text",
    [
        json.dumps({"message": "AddTranscript"}),
        json.dumps({"message": "AddTranscript", "metadata": []}),
        json.dumps({"message": "AddTranscript", "metadata": {"transcript": 5, "chunk_index": 0}}),
        json.dumps({"message": "AddTranscript", "metadata": {"transcript": "a"}}),
        json.dumps({"message": "AddTranscript", "metadata": {"transcript": "a", "chunk_index": True}}),
        json.dumps({"message": "AddTranscript", "metadata": {"transcript": "a", "chunk_index": -1}}),
        json.dumps({"message": "AddTranscript", "metadata": {"transcript": "a", "chunk_index": 7}}),  # not sent
        json.dumps({"message": "AddTranslation", "metadata": {"translation": "a"}}),
        json.dumps({"message": "AddTranslation", "metadata": {"translation": 1, "target_language": "fr"}}),
        translation("de"),  # not a requested target
        json.dumps({"message": "SomethingNew", "x": 1}),
    ],
)
def test_malformed_results_are_dropped_without_ending_the_session(text: str) -> None:
    s = started(("fr",))
    s.send_audio(CHUNK, 0)
    [event] = s.receive(text, 0)
    assert isinstance(event, ProtocolViolation) and not event.fatal
    assert s.state == "streaming"


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "",
        "[1, 2]",
        '"AudioAdded"',
        "{}",
        json.dumps({"message": 7}),
        json.dumps({"message": "AudioAdded"}),
        json.dumps({"message": "AudioAdded", "seq_no": "0"}),
        json.dumps({"message": "AudioAdded", "seq_no": True}),
        json.dumps({"message": "AudioAdded", "seq_no": 1}),  # out of order: 0 expected
        json.dumps({"message": "AudioAdded", "seq_no": -1}),
        json.dumps({"message": "RecognitionStarted", "session_id": "again"}),
        json.dumps({"message": "EndOfTranscript", "reason": "no_more_audio"}),  # before EndOfStream
        b"\xff\xfe",
    ],
)
def test_broken_protocol_is_a_fatal_retryable_violation(text: str | bytes) -> None:
    s = started()
    s.send_audio(CHUNK, 0)
    [event] = s.receive(text, 0)
    assert isinstance(event, ProtocolViolation) and event.fatal
    assert event.error_class is ErrorClass.RETRYABLE
    assert s.state == "failed"


def test_audio_added_for_a_chunk_never_sent_is_fatal() -> None:
    s = started()
    [event] = s.receive(msg(message="AudioAdded", seq_no=0), 0)
    assert isinstance(event, ProtocolViolation) and event.fatal


def test_recognition_started_without_session_id_is_fatal() -> None:
    s = KwikSession("en")
    s.start(0)
    [event] = s.receive(msg(message="RecognitionStarted"), 0)
    assert isinstance(event, ProtocolViolation) and event.fatal and s.state == "failed"


def test_results_before_recognition_started_are_fatal() -> None:
    s = KwikSession("en")
    s.start(0)
    [event] = s.receive(transcript(0), 0)
    assert isinstance(event, ProtocolViolation) and event.fatal


def test_late_messages_of_a_finished_session_change_nothing() -> None:
    s = started(())
    s.end_of_stream(0)
    s.receive(msg(message="EndOfTranscript", reason="no_more_audio"), 0)
    assert s.receive(msg(message="AudioAdded", seq_no=0), 0) == []
    assert s.receive("garbage", 0) == []
    assert s.state == "done"


# -- errors: every Error payload of the seed ----------------------------------------------

SEED_ERRORS = [
    (
        {
            "message": "Error",
            "type": "authentication_error",
            "reason": "Authentication required: Missing Authorization header",
            "code": 4001,
            "timestamp": 1730406000.123,
        },
        ErrorClass.CONFIG,
    ),
    (
        {
            "message": "Error",
            "type": "authentication_error",
            "reason": "Authentication required: Invalid Authorization header format",
            "code": 4001,
            "timestamp": 1730406000.123,
        },
        ErrorClass.CONFIG,
    ),
    (
        {
            "message": "Error",
            "type": "authentication_error",
            "reason": "token_expired",
            "code": 401,
            "timestamp": 1730406000.123,
            "details": {"error": True, "message": "token_expired"},
        },
        ErrorClass.CONFIG,
    ),
    (
        {
            "message": "Error",
            "type": "authentication_error",
            "reason": "Insufficient permissions for ailivecaptioning service",
            "code": 403,
            "timestamp": 1730406000.123,
            "details": {"error": True, "message": "subscription_required"},
        },
        ErrorClass.CONFIG,
    ),
    (
        {"message": "Error", "type": "invalid_message", "reason": "Malformed JSON", "code": 4001, "timestamp": 1.0},
        ErrorClass.PERMANENT,
    ),
    (
        {
            "message": "Error",
            "type": "invalid_model",
            "reason": "Unsupported language: xyz",
            "code": 4004,
            "timestamp": 1729728000.123,
        },
        ErrorClass.PERMANENT,
    ),
    (
        {"message": "Error", "type": "policy_violation", "reason": "Server at capacity", "code": 1008, "timestamp": 1},
        ErrorClass.RETRYABLE,
    ),
    (
        {"message": "Error", "type": "internal_error", "reason": "Server processing error", "code": 1011},
        ErrorClass.RETRYABLE,
    ),
    ({"message": "Error", "type": "mystery", "reason": "?", "code": 4999}, ErrorClass.RETRYABLE),
    ({"message": "Error"}, ErrorClass.RETRYABLE),
]


@pytest.mark.parametrize("state", ["connecting", "starting", "streaming", "ending"])
@pytest.mark.parametrize(("payload", "expected"), SEED_ERRORS)
def test_every_seed_error_is_reported_and_classified(payload: dict, expected: ErrorClass, state: str) -> None:
    s = KwikSession("en", ["fr"])
    if state != "connecting":
        s.start(0)
    if state in ("streaming", "ending"):
        s.receive(msg(message="RecognitionStarted", session_id="s"), 0)
    if state == "ending":
        s.end_of_stream(0)
    [event] = s.receive(json.dumps(payload), 0)
    assert isinstance(event, KwikError)
    assert event.error_class is expected
    assert (event.code, event.type, event.reason) == (
        payload.get("code"),
        payload.get("type", ""),
        payload.get("reason", ""),
    )
    assert event.details == payload.get("details")
    assert event.timestamp == payload.get("timestamp")
    assert s.state == "failed"
    assert s.connection_closed(1008, "") == []  # the cause is already reported


def test_error_with_wrongly_typed_fields_is_still_an_error() -> None:
    [event] = KwikSession("en").receive(json.dumps({"message": "Error", "code": "4004", "type": 3, "details": []}), 0)
    assert isinstance(event, KwikError) and event.code is None and event.type == "" and event.details is None


# -- time -------------------------------------------------------------------------------------


def test_start_timeout_fires_once_at_the_deadline() -> None:
    s = KwikSession("en", start_timeout=10.0)
    assert s.next_deadline() is None and s.poll(1e9) == []
    s.start(100.0)
    assert s.next_deadline() == 110.0
    assert s.poll(109.999) == []
    assert s.poll(110.0) == [Timeout("start")]
    assert s.state == "failed" and s.poll(200.0) == []


def test_recognition_started_in_time_clears_the_start_timeout() -> None:
    s = KwikSession("en", start_timeout=10.0)
    s.start(0)
    s.receive(msg(message="RecognitionStarted", session_id="s"), 9.9)
    assert s.poll(50.0) == [] and s.next_deadline() is None


def test_end_timeout_waits_for_end_of_transcript() -> None:
    s = started(end_timeout=30.0)
    s.send_audio(CHUNK, 1.0)
    s.end_of_stream(5.0)
    assert s.next_deadline() == 35.0
    assert s.poll(34.0) == []
    assert s.poll(35.0) == [Timeout("end")]
    assert s.state == "failed"


def test_ack_timeout_catches_a_silent_server() -> None:
    s = started(ack_timeout=5.0)
    assert s.next_deadline() is None
    s.send_audio(CHUNK, 10.0)
    s.send_audio(CHUNK, 12.0)
    assert s.next_deadline() == 15.0
    s.receive(msg(message="AudioAdded", seq_no=0), 14.0)
    assert s.next_deadline() == 17.0  # now the oldest unacknowledged is chunk 1
    assert s.poll(16.9) == []
    assert s.poll(17.0) == [Timeout("ack")]


def test_no_ack_timeout_unless_asked() -> None:
    s = started()
    s.send_audio(CHUNK, 0)
    assert s.poll(1e6) == [] and s.state == "streaming"


def test_connection_closed_mid_session_is_reported_once() -> None:
    s = started()
    [event] = s.connection_closed(1006, "")
    assert event == ConnectionClosed(1006, "", ErrorClass.RETRYABLE)
    assert s.state == "failed" and s.connection_closed(1006, "") == []


def test_connection_closed_after_end_of_transcript_is_nothing() -> None:
    s = started(())
    s.end_of_stream(0)
    s.receive(msg(message="EndOfTranscript", reason="no_more_audio"), 0)
    assert s.connection_closed(1000, "") == []


def test_transcript_before_audio_added_keeps_ack_timing() -> None:
    s = started((), ack_timeout=5.0)
    s.send_audio(CHUNK, 10.0)
    s.receive(transcript(0), 11.0)  # the result overtook its AudioAdded
    assert s.next_deadline() == 15.0
    assert s.receive(msg(message="AudioAdded", seq_no=0), 12.0) == [AudioAdded(0, 2.0)]
    assert s.next_deadline() is None and s.completed == 1
