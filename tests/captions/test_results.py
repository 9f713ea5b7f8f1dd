"""KWIKmotion result messages: the seed's examples accepted, malformed input rejected whole."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.captions import InvalidResult, Transcript, Translation, parse_result

# KWIKmotion seed, "Server → Client Messages", 3. AddTranscript and 4. AddTranslation, verbatim.
SEED_TRANSCRIPT = {
    "message": "AddTranscript",
    "metadata": {
        "transcript": "This is the transcribed text",
        "start_time": 0.0,
        "end_time": 4.0,
        "language": "en",
        "chunk_index": 0,
        "word_count": 10,
    },
}
SEED_TRANSLATION = {
    "message": "AddTranslation",
    "metadata": {
        "translation": "C'est le texte traduit",
        "target_language": "fr",
        "start_time": 0.0,
        "end_time": 4.0,
    },
}


def test_seed_add_transcript() -> None:
    r = parse_result(SEED_TRANSCRIPT)
    assert isinstance(r, Transcript)
    assert (r.transcript, r.start_time, r.end_time, r.language, r.chunk_index, r.word_count) == (
        "This is the transcribed text",
        0.0,
        4.0,
        "en",
        0,
        10,
    )
    assert r.text == r.transcript


def test_seed_add_translation() -> None:
    r = parse_result(SEED_TRANSLATION)
    assert isinstance(r, Translation)
    assert (r.translation, r.target_language, r.start_time, r.end_time) == ("C'est le texte traduit", "fr", 0.0, 4.0)


def test_json_text_and_bytes_and_int_times() -> None:
    msg = json.loads(json.dumps(SEED_TRANSCRIPT))
    msg["metadata"]["start_time"] = 2  # an integral JSON number is a number
    assert parse_result(json.dumps(msg)).start_time == 2.0
    assert isinstance(parse_result(json.dumps(SEED_TRANSLATION).encode()), Translation)


def test_extra_fields_are_ignored() -> None:
    msg = {**SEED_TRANSCRIPT, "metadata": {**SEED_TRANSCRIPT["metadata"], "confidence": 0.9, "kind": "x"}}
    assert parse_result(msg).transcript == "This is the transcribed text"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("transcript", None),
        ("transcript", 5),
        ("start_time", "0.0"),
        ("start_time", True),
        ("start_time", -1.0),
        ("end_time", None),
        ("end_time", [4.0]),
        ("language", 1),
        ("chunk_index", 1.5),
        ("chunk_index", "0"),
        ("chunk_index", False),
        ("chunk_index", -1),
        ("word_count", 2.0),
        ("word_count", None),
    ],
)
def test_transcript_wrong_typed_field_rejected(field: str, value: object) -> None:
    msg = {**SEED_TRANSCRIPT, "metadata": {**SEED_TRANSCRIPT["metadata"], field: value}}
    with pytest.raises(InvalidResult) as exc:
        parse_result(msg)
    assert f"metadata.{field}" in exc.value.reason


@pytest.mark.parametrize("field", ["transcript", "start_time", "end_time", "language", "chunk_index", "word_count"])
def test_transcript_missing_field_rejected(field: str) -> None:
    meta = {k: v for k, v in SEED_TRANSCRIPT["metadata"].items() if k != field}
    with pytest.raises(InvalidResult, match=f"metadata.{field}"):
        parse_result({"message": "AddTranscript", "metadata": meta})


@pytest.mark.parametrize("field", ["translation", "target_language", "start_time", "end_time"])
def test_translation_missing_field_rejected(field: str) -> None:
    meta = {k: v for k, v in SEED_TRANSLATION["metadata"].items() if k != field}
    with pytest.raises(InvalidResult, match=f"metadata.{field}"):
        parse_result({"message": "AddTranslation", "metadata": meta})


@pytest.mark.parametrize(
    ("msg", "reason"),
    [
        ("not json {", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ({"message": "AudioAdded", "seq_no": 0}, "not AddTranscript"),
        ({"metadata": SEED_TRANSCRIPT["metadata"]}, "not AddTranscript"),
        ({"message": "AddTranscript"}, "metadata"),
        ({"message": "AddTranscript", "metadata": "text"}, "metadata"),
        (
            {"message": "AddTranslation", "metadata": {**SEED_TRANSLATION["metadata"], "target_language": ""}},
            "target_language",
        ),
        (
            {"message": "AddTranscript", "metadata": {**SEED_TRANSCRIPT["metadata"], "start_time": 5.0}},
            "end_time is before start_time",
        ),
    ],
)
def test_malformed_messages_rejected(msg: object, reason: str) -> None:
    with pytest.raises(InvalidResult, match=reason):
        parse_result(msg)  # type: ignore[arg-type]


def test_non_finite_times_rejected() -> None:
    # Python's json accepts NaN/Infinity literals; a time must still be finite.
    for literal in ("NaN", "Infinity", "-Infinity"):
        raw = json.dumps(SEED_TRANSCRIPT).replace('"end_time": 4.0', f'"end_time": {literal}')
        with pytest.raises(InvalidResult, match="end_time"):
            parse_result(raw)


def test_reason_lists_every_bad_field_without_values() -> None:
    secret_text = "do not echo this transcript"
    msg = {"message": "AddTranscript", "metadata": {"transcript": 7, "start_time": secret_text}}
    with pytest.raises(InvalidResult) as exc:
        parse_result(msg)
    for field in ("transcript", "start_time", "end_time", "language", "chunk_index", "word_count"):
        assert f"metadata.{field}" in exc.value.reason
    assert secret_text not in exc.value.reason


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_meta_keys = st.sampled_from(
    ["transcript", "translation", "start_time", "end_time", "language", "target_language", "chunk_index", "word_count"]
)


@settings(max_examples=300, deadline=None)
@given(
    message=st.sampled_from(["AddTranscript", "AddTranslation", "Error", 3, None]),
    meta=st.dictionaries(_meta_keys, _json, max_size=8) | _json,
)
def test_fuzz_only_invalid_result_or_a_whole_model(message: object, meta: object) -> None:
    try:
        r = parse_result({"message": message, "metadata": meta})
    except InvalidResult as exc:
        assert exc.reason
        return
    # accepted: every field present, typed and sane (never half-converted)
    assert isinstance(r, Transcript | Translation)
    assert math.isfinite(r.start_time) and 0 <= r.start_time <= r.end_time and math.isfinite(r.end_time)
    assert isinstance(r.text, str)
    if isinstance(r, Transcript):
        assert type(r.chunk_index) is int and type(r.word_count) is int and isinstance(r.language, str)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64) | st.text(max_size=64))
def test_fuzz_raw_bytes(raw: bytes | str) -> None:
    try:
        parse_result(raw)
    except InvalidResult:
        pass
