"""The emulator's sans-I/O parts: StartRecognition validation, header parsing, the reference
script (fuzzed: malformed input only ever gives the seed's 4001/4004)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from emulators.kwikmotion import protocol as p
from emulators.media import JFK_TEXT
from shared.kwikmotion import SUPPORTED_LANGUAGES

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10) | st.sampled_from(["en", "raw"]),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3),
    max_leaves=10,
)
starts = st.fixed_dictionaries(
    {},
    optional={
        "audio_format": st.fixed_dictionaries(
            {},
            optional={
                "type": st.sampled_from(["raw", "file", "x"]) | values,
                "encoding": st.sampled_from(["pcm_s16le", "mulaw", "opus"]) | values,
                "sample_rate": st.integers(-1, 200000) | values,
            },
        )
        | values,
        "transcription_config": st.fixed_dictionaries(
            {}, optional={"language": st.sampled_from(["en", "xyz"]) | values}
        )
        | values,
        "translation_config": st.fixed_dictionaries(
            {}, optional={"target_languages": st.lists(st.sampled_from(["fr", "tlh"]) | values, max_size=3) | values}
        )
        | values,
    },
)


@settings(max_examples=300, deadline=None)
@given(starts)
def test_parse_start_only_raises_the_seeds_errors(msg: dict) -> None:
    try:
        config = p.parse_start(msg, SUPPORTED_LANGUAGES)
    except p.InvalidStart as exc:
        assert (exc.code, exc.type) in (p.INVALID_MESSAGE, p.INVALID_MODEL)
        if exc.code == 4004:
            assert exc.reason.startswith("Unsupported language: ")
    else:
        assert config.language in SUPPORTED_LANGUAGES and set(config.targets) <= set(SUPPORTED_LANGUAGES)
        assert config.encoding in p.ENCODING_WIDTH and config.sample_rate > 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=30), max_size=2), st.none() | st.text(max_size=10))
def test_authorization_parsing_never_raises(headers: list[str], query: str | None) -> None:
    failure, token, via = p.check_authorization(headers, query)
    assert failure in (None, p.AUTH_MISSING, p.AUTH_FORMAT)
    assert (failure is None) == (token is not None)
    assert via in ("header", "query", "none")


def test_authorization_header_rules() -> None:
    assert p.check_authorization(["Bearer abc"], None) == (None, "abc", "header")
    assert p.check_authorization([], "q") == (None, "q", "query")
    assert p.check_authorization(["Bearer abc"], "q") == (None, "abc", "header")  # header wins
    assert p.check_authorization([], None)[0] == p.AUTH_MISSING
    for bad in (["Bearer"], ["Bearer "], ["bearer abc"], ["Basic abc"], ["Bearer a b"], ["Bearer  a"], ["a", "b"]):
        assert p.check_authorization(bad, None)[0] == p.AUTH_FORMAT, bad


@given(st.lists(st.integers(1, 50000), min_size=1, max_size=30), st.sampled_from([8000, 16000, 44100]))
def test_any_chunking_yields_each_reference_word_once_in_order(sizes: list[int], rate: int) -> None:
    script = p.ReferenceScript(JFK_TEXT, 11.0)
    total = round(11.0 * rate)
    words, start = [], 0
    for size in sizes:
        words += script.words_between(start, start + size, rate)
        start += size
    covered = len(script.words) * start // total  # whole loops plus part of one, by sample
    expected = [script.words[k % len(script.words)] for k in range(-(-start * len(script.words) // total))]
    assert words == expected and len(words) >= covered


def test_empty_reference_gives_empty_transcripts() -> None:
    assert p.ReferenceScript("", 11.0).words_between(0, 10**6, 16000) == []
