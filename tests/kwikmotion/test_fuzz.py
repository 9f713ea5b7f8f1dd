"""Fuzz the session with hypothesis: whatever the server sends, ``receive`` returns events and
never raises; the counters keep their invariants."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.kwikmotion import Event, KwikSession, ProtocolViolation
from shared.kwikmotion.events import (
    AudioAdded,
    ConnectionClosed,
    EndOfTranscript,
    KwikError,
    RecognitionStarted,
    ResultsMissing,
    TimeBaseDetected,
    Timeout,
    TranscriptResult,
    TranslationResult,
)

NAMES = ["RecognitionStarted", "AudioAdded", "AddTranscript", "AddTranslation", "EndOfTranscript", "Error", "Other"]
EVENT_TYPES = (
    RecognitionStarted,
    AudioAdded,
    TranscriptResult,
    TranslationResult,
    ResultsMissing,
    TimeBaseDetected,
    EndOfTranscript,
    KwikError,
    ProtocolViolation,
    Timeout,
    ConnectionClosed,
)

scalars = st.none() | st.booleans() | st.integers(-5, 2**70) | st.floats(allow_nan=True) | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids, max_size=4),
    max_leaves=12,
)
field_names = st.sampled_from(
    ["session_id", "seq_no", "metadata", "reason", "code", "type", "details", "timestamp", "message"]
)
meta_names = st.sampled_from(
    ["transcript", "translation", "target_language", "chunk_index", "start_time", "end_time", "word_count"]
)
metadata = st.dictionaries(meta_names, json_values | st.integers(0, 5) | st.sampled_from(["fr", "es", "de"]))
messages = st.builds(
    lambda name, extra, meta: {"message": name, **extra, **({"metadata": meta} if meta is not None else {})},
    st.sampled_from(NAMES),
    st.dictionaries(field_names, json_values | st.integers(0, 5), max_size=4),
    st.none() | metadata,
)


def session_in(stage: int) -> KwikSession:
    s = KwikSession("en", ["fr", "es"], start_timeout=10.0, end_timeout=30.0, ack_timeout=5.0)
    if stage >= 1:
        s.start(0.0)
    if stage >= 2:
        s.receive(json.dumps({"message": "RecognitionStarted", "session_id": "s"}), 0.0)
        for _ in range(3):
            s.send_audio(b"\x00\x00" * 160, 0.0)
    if stage >= 3:
        s.end_of_stream(0.0)
    return s


def check(s: KwikSession, events: list[Event]) -> None:
    assert isinstance(events, list)
    assert all(isinstance(e, EVENT_TYPES) for e in events)
    assert 0 <= s.acked <= s.sent
    assert 0 <= s.completed <= s.sent
    assert s.state in ("connecting", "starting", "streaming", "ending", "done", "failed")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 3), st.lists(st.text(max_size=200) | st.binary(max_size=64), min_size=1, max_size=6))
def test_random_text_never_raises(stage: int, texts: list[str | bytes]) -> None:
    s = session_in(stage)
    for text in texts:
        check(s, s.receive(text, 1.0))
        check(s, s.poll(1.0))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 3), st.lists(messages, min_size=1, max_size=12), st.floats(0, 100))
def test_random_protocol_messages_never_raise(stage: int, msgs: list[dict], now: float) -> None:
    s = session_in(stage)
    for m in msgs:
        try:
            text = json.dumps(m)
        except ValueError:
            continue
        check(s, s.receive(text, now))
        check(s, s.poll(now))
        # After a poll nothing is overdue: a driver sleeping until next_deadline never spins.
        deadline = s.next_deadline()
        assert deadline is None or deadline > now
    check(s, s.connection_closed(1006, ""))
