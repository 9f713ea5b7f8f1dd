"""Placing KWIKmotion results on chunks (issue 17), through the sans-I/O session with hand-made
message sequences: results in any order, either time base, translations paired by time range
and language, missing fields, translations that never come, words across chunk boundaries,
unknown messages and results that cannot be placed. Time is passed in; no sockets."""

from __future__ import annotations

import itertools
import json

import pytest

from shared.kwikmotion import (
    EndOfTranscript,
    KwikSession,
    ProtocolViolation,
    ResultsMissing,
    TimeBaseDetected,
    TranscriptResult,
    TranslationResult,
)
from shared.kwikmotion.results import DROP_REASONS

SECOND = b"\x01\x00" * 16000  # 1 s of pcm_s16le at 16 kHz


def session(targets: tuple[str, ...] = ("fr",), chunks: int = 4, seconds: int = 2, wait: float = 5.0) -> KwikSession:
    s = KwikSession("en", list(targets), result_wait=wait)
    s.start(0.0)
    s.receive(json.dumps({"message": "RecognitionStarted", "session_id": "s"}), 0.0)
    for _ in range(chunks):
        s.send_audio(SECOND * seconds, 0.0)
    return s


def tr(index: int, text: str, start: float, end: float, **drop: bool) -> str:
    meta = {
        "transcript": text,
        "start_time": start,
        "end_time": end,
        "language": "en",
        "chunk_index": index,
        "word_count": len(text.split()),
    }
    for name in drop:
        del meta[name]
    return json.dumps({"message": "AddTranscript", "metadata": meta})


def tl(text: str, start: float, end: float, target: str = "fr") -> str:
    meta = {"translation": text, "target_language": target, "start_time": start, "end_time": end}
    return json.dumps({"message": "AddTranslation", "metadata": meta})


def feed(s: KwikSession, *messages: str, now: float = 1.0) -> list:
    return [e for m in messages for e in s.receive(m, now)]


def released(events: list) -> list[tuple[str, int, str, float, float]]:
    """(stream, chunk, text, start, end) of the results released, in order."""
    out = []
    for e in events:
        if isinstance(e, TranscriptResult):
            meta = e.raw["metadata"]
            out.append(("en", e.chunk_index, meta["transcript"], meta["start_time"], meta["end_time"]))
        elif isinstance(e, TranslationResult):
            meta = e.raw["metadata"]
            out.append((e.target_language, e.chunk_index, meta["translation"], meta["start_time"], meta["end_time"]))
    return out


def stream(events: list, name: str) -> list[tuple[int, str, float, float]]:
    return [(c, text, a, b) for s, c, text, a, b in released(events) if s == name]


def labels(events: list) -> list[str]:
    return [e.label for e in events if isinstance(e, ProtocolViolation)]


# -- order ----------------------------------------------------------------------------------


def test_results_of_a_later_chunk_first_are_held_and_released_in_chunk_order() -> None:
    """Today-bug: the transcript of chunk 0 after chunk 1's was dropped as a repeat."""
    s = session(chunks=2)
    first = feed(s, tr(1, "c d", 2.0, 4.0), tl("[fr] c d", 2.0, 4.0))
    assert released(first) == [] and s.completed == 0
    rest = feed(s, tr(0, "a b", 0.0, 2.0), tl("[fr] a b", 0.0, 2.0))
    assert stream(rest, "en") == [(0, "a b", 0.0, 2.0), (1, "c d", 2.0, 4.0)]
    assert stream(rest, "fr") == [(0, "[fr] a b", 0.0, 2.0), (1, "[fr] c d", 2.0, 4.0)]
    assert s.completed == 2 and labels(first + rest) == []


def test_a_stream_is_not_held_up_by_another() -> None:
    """The transcript stream goes on while a translation is awaited."""
    s = session(chunks=2)
    events = feed(s, tr(0, "a", 0.0, 2.0), tr(1, "b", 2.0, 4.0))
    assert [c for c, *_ in stream(events, "en")] == [0, 1]
    assert s.completed == 0  # the cursor waits for the translations


# -- translations: by time range and language ----------------------------------------------


def test_translations_pair_by_time_range_not_arrival_order() -> None:
    """Today-bug: paired with the earliest transcript owed one, so a silent chunk without a
    translation shifted every later translation by one chunk."""
    s = session(targets=("fr", "es"), chunks=3)
    events = feed(
        s,
        tr(0, "", 0.0, 2.0),  # silence: this server sends no translation for it
        tr(1, "hello", 2.0, 4.0),
        tl("[es] hello", 2.0, 4.0, "es"),
        tl("[fr] hello", 2.0, 4.0, "fr"),
        tr(2, "world", 4.0, 6.0),
        tl("[fr] world", 4.0, 6.0, "fr"),
        tl("[es] world", 4.0, 6.0, "es"),
    )
    fr = stream(events, "fr")
    assert fr == [(0, "", 0.0, 2.0), (1, "[fr] hello", 2.0, 4.0), (2, "[fr] world", 4.0, 6.0)]
    assert [c for c, *_ in stream(events, "es")] == [0, 1, 2]
    # The session showed its reading: no translation for an empty transcript.
    assert s.results.empty_translations == "omit"
    missing = [e for e in events if isinstance(e, ResultsMissing)]
    assert missing == [ResultsMissing(0, ("es", "fr"), "omitted_empty", True)]
    assert s.completed == 3


def test_once_omit_is_known_an_empty_transcript_is_released_at_once() -> None:
    s = session(chunks=3)
    feed(s, tr(0, "", 0.0, 2.0), tr(1, "a", 2.0, 4.0), tl("[fr] a", 2.0, 4.0))
    assert s.results.empty_translations == "omit" and s.completed == 2
    events = feed(s, tr(2, "", 4.0, 6.0))
    assert stream(events, "fr") == [(2, "", 4.0, 6.0)] and s.completed == 3
    assert s.next_deadline() is None  # nothing waits


def test_an_empty_translation_for_an_empty_transcript_means_they_are_sent() -> None:
    s = session(chunks=2)
    feed(s, tr(0, "", 0.0, 2.0), tl("", 0.0, 2.0))
    assert s.results.empty_translations == "send" and s.completed == 1


def test_a_translation_that_never_comes_is_released_after_the_wait() -> None:
    s = session(chunks=2, wait=5.0)
    feed(s, tr(0, "a", 0.0, 2.0), now=1.0)
    later = feed(s, tr(1, "b", 2.0, 4.0), tl("[fr] b", 2.0, 4.0), now=2.0)
    assert stream(later, "fr") == [] and s.completed == 0  # chunk 1's fr waits for chunk 0's
    assert s.next_deadline() == 6.0
    assert s.poll(5.9) == []
    events = s.poll(6.0)
    assert [e for e in events if isinstance(e, ResultsMissing)] == [ResultsMissing(0, ("fr",), "wait", False)]
    assert stream(events, "fr") == [(1, "[fr] b", 2.0, 4.0)]  # chunk 0 has none: its words are lost in fr
    assert s.completed == 2 and s.state == "streaming"


def test_a_translation_never_coming_for_an_empty_transcript_is_never_waited_for_forever() -> None:
    """Before the session showed its reading: the bounded wait, then an empty translation."""
    s = session(chunks=1, wait=5.0)
    feed(s, tr(0, "", 0.0, 2.0), now=1.0)
    assert s.completed == 0 and s.next_deadline() == 6.0
    events = s.poll(6.0)
    assert stream(events, "fr") == [(0, "", 0.0, 2.0)] and s.completed == 1


def test_a_translation_before_its_transcript_waits_for_it() -> None:
    s = session(chunks=1)
    assert feed(s, tl("[fr] a", 0.0, 2.0)) == []
    events = feed(s, tr(0, "a", 0.0, 2.0))
    assert stream(events, "fr") == [(0, "[fr] a", 0.0, 2.0)]


def test_same_times_in_chunk_time_base_pair_empty_with_empty_then_by_arrival() -> None:
    """Chunk-relative times of equal chunks are all alike: an empty translation goes with the
    empty transcript, another with the earliest transcript to arrive."""
    s = session(chunks=3)
    events = feed(
        s,
        tr(0, "a", 0.0, 2.0),
        tr(1, "", 0.0, 2.0),
        tr(2, "c", 0.0, 2.0),
        tl("", 0.0, 2.0),
        tl("[fr] a", 0.0, 2.0),
        tl("[fr] c", 0.0, 2.0),
    )
    assert [(c, text) for c, text, *_ in stream(events, "fr")] == [(0, "[fr] a"), (1, ""), (2, "[fr] c")]


# -- time base ------------------------------------------------------------------------------


def test_chunk_relative_times_are_detected_and_mapped() -> None:
    """Today-bug: every result after the first was dropped without a word (or mistimed)."""
    s = session(chunks=3)
    events = feed(s, tr(0, "a", 0.0, 2.0), tl("[fr] a", 0.0, 2.0), tr(1, "b", 0.0, 2.0), tl("[fr] b", 0.0, 2.0))
    assert [e for e in events if isinstance(e, TimeBaseDetected)] == [TimeBaseDetected("chunk", 1)]
    assert s.results.time_base == "chunk"
    events += feed(s, tr(2, "c", 0.0, 2.0), tl("[fr] c", 0.0, 2.0))
    assert stream(events, "en") == [(0, "a", 0.0, 2.0), (1, "b", 2.0, 4.0), (2, "c", 4.0, 6.0)]
    assert stream(events, "fr") == [(0, "[fr] a", 0.0, 2.0), (1, "[fr] b", 2.0, 4.0), (2, "[fr] c", 4.0, 6.0)]


def test_session_times_are_detected_once() -> None:
    s = session(targets=(), chunks=3)
    events = feed(s, tr(0, "a", 0.0, 2.0), tr(1, "b", 2.0, 4.0), tr(2, "c", 4.0, 6.0))
    assert [e for e in events if isinstance(e, TimeBaseDetected)] == [TimeBaseDetected("session", 1)]
    assert [(a, b) for _c, _t, a, b in stream(events, "en")] == [(0.0, 2.0), (2.0, 4.0), (4.0, 6.0)]


def test_the_first_chunk_alone_tells_nothing() -> None:
    """Chunk 0 starts the session: both readings agree, no base is claimed."""
    s = session(targets=(), chunks=1)
    events = feed(s, tr(0, "a", 0.0, 2.0))
    assert s.results.time_base is None and not [e for e in events if isinstance(e, TimeBaseDetected)]
    assert stream(events, "en") == [(0, "a", 0.0, 2.0)]


# -- word boundaries ------------------------------------------------------------------------


@pytest.mark.parametrize("base", ["session", "chunk"])
def test_a_transcript_starting_before_its_chunk_is_clamped_after_the_previous_one(base: str) -> None:
    """The boundary reading: chunk 1's transcript carries chunk 0's last word and starts 1 s
    before chunk 1 (-1.0 when times count from the chunk: today the result was invalid)."""
    s = session(chunks=2)
    lead = (1.0, 4.0) if base == "session" else (-1.0, 2.0)
    events = feed(
        s,
        tr(0, "a b", 0.0, 2.0),
        tl("[fr] a b", 0.0, 2.0),
        tr(1, "c d e", *lead),
        tl("[fr] c d e", *lead),
    )
    assert stream(events, "en") == [(0, "a b", 0.0, 2.0), (1, "c d e", 2.0, 4.0)]
    assert stream(events, "fr") == [(0, "[fr] a b", 0.0, 2.0), (1, "[fr] c d e", 2.0, 4.0)]
    assert [e.clamped for e in events if isinstance(e, TranscriptResult)] == [False, True]
    assert s.results.lead == 1.0 and labels(events) == []


def test_times_beyond_the_chunk_are_clamped_into_it() -> None:
    s = session(targets=(), chunks=2)
    events = feed(s, tr(0, "a", 0.0, 2.5), tr(1, "b", 2.0, 9.0))
    assert [(a, b) for _c, _t, a, b in stream(events, "en")] == [(0.0, 2.0), (2.0, 4.0)]


def test_released_times_never_decrease_nor_overlap_whatever_the_order() -> None:
    s = session(chunks=4)
    msgs = [
        tr(3, "g h", -1.0, 2.0),
        tl("[fr] g h", -1.0, 2.0),
        tr(1, "c d", -0.6, 2.0),
        tl("[fr] c d", -0.6, 2.0),
        tr(0, "a", 0.0, 2.0),
        tl("[fr] a", 0.0, 2.0),
        tr(2, "e f", -1.0, 2.0),
        tl("[fr] e f", -1.0, 2.0),
    ]
    events = feed(s, *msgs)
    for name in ("en", "fr"):
        got = stream(events, name)
        assert [c for c, *_ in got] == [0, 1, 2, 3]
        for (_, _, a0, b0), (_, _, a1, b1) in itertools.pairwise(got):
            assert a0 <= b0 <= a1 <= b1
        assert all(0.0 <= a <= b <= 8.0 for _c, _t, a, b in got)


# -- missing fields -------------------------------------------------------------------------


def test_missing_word_count_and_language_are_derived() -> None:
    """Today-bug: the whole result was dropped while its chunk counted as done (words lost)."""
    s = session(targets=(), chunks=1)
    [event] = feed(s, tr(0, "three little words", 0.0, 2.0, word_count=True, language=True))
    assert isinstance(event, TranscriptResult)
    meta = event.raw["metadata"]
    assert (meta["word_count"], meta["language"]) == (3, "en")
    assert event.derived == ("word_count", "language")


def test_unusable_times_are_the_chunks_own_span() -> None:
    s = session(targets=(), chunks=2)
    bad = json.loads(tr(1, "b", 3.0, 1.0))  # ends before it starts
    events = feed(s, tr(0, "a", 0.0, 2.0), json.dumps(bad))
    assert stream(events, "en")[1] == (1, "b", 2.0, 4.0)
    assert [e.derived for e in events if isinstance(e, TranscriptResult)][1] == ("times",)


def test_a_translation_without_its_language_goes_to_the_only_target() -> None:
    s = session(chunks=1)
    meta = {"translation": "[fr] a", "start_time": 0.0, "end_time": 2.0}
    events = feed(s, tr(0, "a", 0.0, 2.0), json.dumps({"message": "AddTranslation", "metadata": meta}))
    assert stream(events, "fr") == [(0, "[fr] a", 0.0, 2.0)]


# -- what cannot be placed: counted, with a reason -----------------------------------------


def test_unknown_messages_are_labelled_and_ignored() -> None:
    s = session(chunks=1)
    events = feed(
        s,
        json.dumps({"message": "Info", "type": "session_info"}),
        json.dumps({"message": "AddPartialTranscript", "metadata": {"transcript": "a", "chunk_index": 0}}),
    )
    assert labels(events) == ["unknown_message", "unknown_message"]
    assert all(not e.fatal for e in events) and s.state == "streaming"


@pytest.mark.parametrize(
    ("message", "label"),
    [
        (tr(7, "a", 0.0, 2.0), "unknown_chunk"),  # a chunk index never sent
        (tr(-1, "a", 0.0, 2.0), "unknown_chunk"),
        (tr(0, "a", 0.0, 2.0, chunk_index=True), "no_chunk_index"),
        (json.dumps({"message": "AddTranscript", "metadata": {"chunk_index": 0}}), "malformed"),
        (json.dumps({"message": "AddTranslation", "metadata": {"translation": 5}}), "malformed"),
        (tl("[de] a", 0.0, 2.0, "de"), "not_a_target"),
    ],
)
def test_results_that_cannot_be_placed_are_labelled(message: str, label: str) -> None:
    s = session(chunks=2)
    [event] = feed(s, message)
    assert isinstance(event, ProtocolViolation) and not event.fatal and event.label == label
    assert label in DROP_REASONS and s.state == "streaming"


def test_repeats_are_labelled_duplicate() -> None:
    s = session(chunks=2)
    feed(s, tr(0, "a", 0.0, 2.0))
    assert labels(feed(s, tr(0, "a", 0.0, 2.0))) == ["duplicate"]
    feed(s, tl("[fr] a", 0.0, 2.0))
    assert labels(feed(s, tl("[fr] a", 0.0, 2.0))) == ["duplicate"]


def test_a_result_after_its_chunk_was_released_is_labelled_late() -> None:
    s = session(chunks=2, wait=5.0)
    feed(s, tr(1, "b", 2.0, 4.0), now=0.0)
    s.poll(5.0)  # chunk 0's transcript never came
    assert labels(feed(s, tr(0, "a", 0.0, 2.0), now=6.0)) == ["late"]


def test_end_of_transcript_releases_everything_still_owed() -> None:
    s = session(chunks=3)
    before = feed(s, tr(0, "a", 0.0, 2.0), tr(2, "", 4.0, 6.0))
    s.end_of_stream(2.0)
    events = feed(s, json.dumps({"message": "EndOfTranscript", "reason": "no_more_audio"}), now=2.5)
    assert isinstance(events[-1], EndOfTranscript)
    assert stream(before, "en") == [(0, "a", 0.0, 2.0)]
    missing = [e for e in events if isinstance(e, ResultsMissing)]
    assert missing == [
        ResultsMissing(0, ("fr",), "end_of_transcript", False),
        ResultsMissing(1, ("transcript",), "end_of_transcript", False),
        ResultsMissing(2, ("fr",), "end_of_transcript", True),
    ]
    assert stream(events, "en") == [(2, "", 4.0, 6.0)]  # after chunk 1, given up
    assert stream(events, "fr") == [(2, "", 4.0, 6.0)]  # chunk 0's fr is lost, chunk 2's is empty
    assert s.completed == 3
