"""The check's sans-I/O core alone: observations and the verdict for behaviours outside the
seed's readings (which the emulator never shows), fed raw messages."""

from __future__ import annotations

import json
from typing import Any

from services.check.probe import Probe, percentile, report, verdict


def session(chunks: int = 3, targets: tuple[str, ...] = ("fr",)) -> Probe:
    probe = Probe("en", list(targets), 2.0)
    probe.received(json.dumps({"message": "RecognitionStarted", "session_id": "s1"}), 0.0)
    for i in range(chunks):
        probe.sent(2.0 * i, 2.0, False, float(i))
        probe.received(json.dumps({"message": "AudioAdded", "seq_no": i}), float(i))
    return probe


def transcript(probe: Probe, i: int, text: str = "word", start: float | None = None, end: float | None = None,
               **extra: Any) -> None:  # fmt: skip
    meta = {"transcript": text, "start_time": 2.0 * i if start is None else start,
            "end_time": 2.0 * i + 2 if end is None else end, "language": "en", "chunk_index": i,
            "word_count": len(text.split()), **extra}  # fmt: skip
    probe.received(json.dumps({"message": "AddTranscript", "metadata": meta}), i + 0.5)
    probe.received(json.dumps({"message": "AddTranslation", "metadata": {
        "translation": f"[fr] {text}" if text else "", "target_language": "fr",
        "start_time": meta["start_time"], "end_time": meta["end_time"]}}), i + 0.5)  # fmt: skip


def end(probe: Probe) -> None:
    probe.received(json.dumps({"message": "EndOfTranscript", "reason": "no_more_audio"}), 9.0)


def test_the_seed_reading_is_handled() -> None:
    probe = session()
    for i in range(3):
        transcript(probe, i)
    end(probe)
    obs = probe.observations()
    assert (obs.time_base, obs.order, obs.empty_translations) == ("session", "in order", "not observed")
    assert verdict(obs).handled and obs.latencies == [0.5, 0.5, 0.5]
    assert report(obs, "ws://x/", False)[-1].startswith("verdict: HANDLED")


def test_outside_the_readings_is_not_handled() -> None:
    probe = session(4)
    transcript(probe, 0)
    transcript(probe, 1, start=0.0, end=2.0)  # from the chunk ...
    transcript(probe, 2)  # ... then from the session: mixed
    transcript(probe, 2)  # a second result for chunk 2
    probe.received(json.dumps({"message": "AddTranslation", "metadata": {
        "translation": "x", "target_language": "fr", "start_time": 50.0, "end_time": 52.0}}), 5.0)  # fmt: skip
    probe.received("not json", 5.0)
    end(probe)  # chunk 3 never transcribed
    obs = probe.observations()
    result = verdict(obs)
    assert not result.handled
    text = "\n".join(result.reasons)
    for expected in ("a second AddTranscript for chunk 2", "no AddTranscript for chunk(s) 3",
                     "times counted from the session in 1 results, from the chunk in 1",
                     "matches no transcript owed one", "a message that is not JSON"):  # fmt: skip
        assert expected in text, (expected, text)
    lines = report(obs, "ws://x/", True)
    assert lines[-1].startswith("verdict: NOT HANDLED: ")
    assert sum(line.startswith("  not handled: ") for line in lines) == len(result.reasons)


def test_a_transcript_far_before_its_chunk_fits_no_time_base() -> None:
    probe = session(3)
    transcript(probe, 0)
    transcript(probe, 1, start=0.5)  # 1.5 s before its chunk: more than the 1 s buffer
    transcript(probe, 2)
    end(probe)
    reasons = verdict(probe.observations()).reasons
    assert any("chunk 1's times 0.5-4.0 s fit neither" in r for r in reasons), reasons


def test_missing_translation_and_no_end() -> None:
    probe = session(2)
    transcript(probe, 0)
    probe.received(json.dumps({"message": "AddTranscript", "metadata": {
        "transcript": "two", "start_time": 2.0, "end_time": 4.0, "chunk_index": 1}}), 1.5)  # fmt: skip
    probe.received(json.dumps({"message": "Warning", "reason": "x"}), 1.6)
    obs = probe.observations()
    assert obs.missing_optional == {"word_count": 1, "language": 1} and obs.unknown_types == {"Warning": 1}
    reasons = verdict(obs).reasons
    assert "no AddTranslation (fr) for chunk 1's transcript 'two'" in reasons
    assert "no EndOfTranscript after EndOfStream" in reasons


def test_handshake_refusal_and_percentiles() -> None:
    probe = Probe("en", ["fr"], 2.0)
    probe.refused_at_handshake(401, '{"message": "Error", "type": "authentication_error", "code": 401, '
                                    '"reason": "token_expired"}')  # fmt: skip
    obs = probe.observations()
    assert obs.auth == "refused"
    assert verdict(obs).reasons == [
        "authentication refused: HTTP 401 at the WebSocket handshake: 401 authentication_error: token_expired"
    ]
    assert percentile([0.1, 0.2, 0.3, 0.4], 50) == 0.2 and percentile([0.1, 0.2, 0.3, 0.4], 95) == 0.4
