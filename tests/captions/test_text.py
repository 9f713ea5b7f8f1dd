"""Tokenizer and heuristic timings: words vs punctuation, spacing kept, CJK and Arabic."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.captions.text import _ascii_re, _token_re, join, split_long, spread, tokenize


def kinds(text: str) -> list[tuple[str, str]]:
    return [("text" if w else "punct", v) for w, v, _ in tokenize(text)]


def test_seed_transcript_is_five_words() -> None:
    assert kinds("This is the transcribed text") == [("text", w) for w in "This is the transcribed text".split()]


def test_punctuation_split_from_words() -> None:
    assert kinds("And so, my fellow Americans, ask not.") == [
        ("text", "And"),
        ("text", "so"),
        ("punct", ","),
        ("text", "my"),
        ("text", "fellow"),
        ("text", "Americans"),
        ("punct", ","),
        ("text", "ask"),
        ("text", "not"),
        ("punct", "."),
    ]


def test_joiners_stay_inside_words() -> None:
    assert kinds("don't well-known U.S. 1,000 10:30 a/b x@y.z l'homme col·lecció") == [
        ("text", "don't"),
        ("text", "well-known"),
        ("text", "U.S"),
        ("punct", "."),
        ("text", "1,000"),
        ("text", "10:30"),
        ("text", "a/b"),
        ("text", "x@y.z"),
        ("text", "l'homme"),
        ("text", "col·lecció"),
    ]
    # "," and ":" join only digits; a run of punctuation is one item
    assert kinds("yes,no wait... what?!") == [
        ("text", "yes"),
        ("punct", ","),
        ("text", "no"),
        ("text", "wait"),
        ("punct", "..."),
        ("text", "what"),
        ("punct", "?!"),
    ]


def test_spacing_is_kept() -> None:
    for text in ("Hello, world.", "Bonjour ! « Ça va » ?", "¿Qué tal?", "今天天气很好。我们去公园吧！", "a - b"):
        assert join(tokenize(text)) == text


def test_cjk_one_word_per_character() -> None:
    tokens = tokenize("今天天气很好。")
    assert [v for w, v, _ in tokens if w] == list("今天天气很好")
    assert tokens[-1] == (False, "。", False)
    assert kinds("iPhone手机") == [("text", "iPhone"), ("text", "手"), ("text", "机")]
    assert [v for w, v, _ in tokenize("カタカナとひらがな")] == list("カタカナとひらがな")
    assert kinds("안녕하세요 세계") == [("text", "안녕하세요"), ("text", "세계")]  # Hangul uses spaces


def test_arabic_words_marks_and_punctuation() -> None:
    text = "السَّلَامُ عَلَيْكُمْ، كيف حالك؟"
    assert kinds(text) == [
        ("text", "السَّلَامُ"),
        ("text", "عَلَيْكُمْ"),
        ("punct", "،"),
        ("text", "كيف"),
        ("text", "حالك"),
        ("punct", "؟"),
    ]
    assert join(tokenize(text)) == text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=80))
def test_ascii_fast_path_agrees_with_unicode_rules(text: str) -> None:
    assert _ascii_re().findall(text) == _token_re().findall(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_tokens_cover_the_text(text: str) -> None:
    tokens = tokenize(text)
    assert "".join(v for _, v, _ in tokens) == "".join(text.split())
    assert join(tokens) == " ".join(text.split())  # spacing normalised, otherwise unchanged
    for is_word, value, _ in tokens:
        assert value and not any(c.isspace() for c in value)
        if not is_word:
            assert all(unicodedata.category(c)[0] == "P" for c in value)


def test_spread_by_length_monotonic_and_inside() -> None:
    timed = spread(tokenize("Hello, big world."), 1.0, 2.0)
    # 5 + 1 + 3 + 1 + 5 = 15 characters over one second
    assert timed == [
        (True, "Hello", False, 1.0, 1.333),
        (False, ",", False, 1.333, 1.333),
        (True, "big", True, 1.4, 1.6),
        (True, "world", True, 1.667, 2.0),
        (False, ".", False, 2.0, 2.0),
    ]


def test_spread_leading_punctuation_and_empty() -> None:
    assert spread(tokenize("¿Qué?"), 0.0, 1.0) == [
        (False, "¿", False, 0.0, 0.0),
        (True, "Qué", False, 0.0, 1.0),
        (False, "?", False, 1.0, 1.0),
    ]
    assert spread(tokenize("..."), 3.0, 4.0) == [(False, "...", False, 3.0, 3.0)]
    assert spread([], 3.0, 4.0) == []


@settings(max_examples=300, deadline=None)
@given(
    st.text(max_size=120),
    st.floats(min_value=0, max_value=1e6, allow_nan=False),
    st.floats(min_value=0, max_value=60, allow_nan=False),
)
def test_spread_property(text: str, start: float, length: float) -> None:
    end = start + length
    timed = spread(tokenize(text), start, end)
    lo, hi = round(start, 3), round(end, 3)
    prev = lo
    for _, _, _, s, e in timed:
        assert lo <= s <= e <= hi
        assert s >= prev
        prev = e
    words = [t for t in timed if t[0]]
    if words:
        assert words[0][3] == lo and words[-1][4] == hi


@pytest.mark.parametrize(
    ("word", "limit", "pieces"),
    [("abcdefghij", 3, ["abc", "def", "ghi", "j"]), ("abc", 3, ["abc"]), ("a", 1, ["a"])],
)
def test_split_long(word: str, limit: int, pieces: list[str]) -> None:
    assert split_long(word, limit) == pieces


def test_split_long_keeps_marks_with_their_letter() -> None:
    word = "السَّلَامُ"  # letters with harakat (combining marks): clusters of up to 3 characters
    for limit in range(3, len(word)):
        pieces = split_long(word, limit)
        assert "".join(pieces) == word
        assert all(len(p) <= limit for p in pieces)
        assert all(unicodedata.category(p[0])[0] != "M" for p in pieces)
