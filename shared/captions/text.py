"""Text → items: words (``kind: text``) and punctuation (``kind: punct``), with heuristic timings.

Kaltura seed: items are "textual items (words and punctuation marks) and their timings";
KWIKmotion gives one time range per result and no word timings, and the seed allows heuristic
timings ("heuristically distributed within the time boundaries of the source language
utterance"), so each word gets a share of the range proportional to its length.

A token is ``(is_word, value, space_before)``. ``space_before`` keeps the source spacing, so text
rebuilt from tokens reads like the source: "Hello, world" (no space before the comma), French
"Bonjour !" (a space), Chinese with no spaces at all. Rules:

- Punctuation is any Unicode ``P*`` character; a run of it ("?!", "...") is one item.
- A joiner between word characters stays inside the word: apostrophes and hyphens ("don't",
  "well-known", "l'homme"), dots ("U.S", "e.g"), "/", "@", "&", "_", "·" (Catalan "l·l"); "," and ":" only between
  digits ("1,000", "10:30").
- Scripts written without spaces (Han, Hiragana, Katakana) become one word per character, so a
  caption line can break anywhere in them; Hangul and Arabic use spaces and need nothing special.
  Other characters (letters, marks such as Arabic harakat, digits, symbols) are word characters.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from functools import cache

Token = tuple[bool, str, bool]  # (is_word, value, space_before)
TimedToken = tuple[bool, str, bool, float, float]  # (is_word, value, space_before, start, end)

_JOIN_ANY = frozenset("'’ʼ-‐‑._@/&·")
_JOIN_DIGITS = frozenset(",:")
_CJK_CLASS = "\u3005-\u3007\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f\U00020000-\U0002fa1f"
_CJK = re.compile(f"[{_CJK_CLASS}]")
_CJK_SPLIT = re.compile(f"[{_CJK_CLASS}]|[^{_CJK_CLASS}]+")
# Sentence ends and phrase ends (Latin, Arabic, CJK, Devanagari, Armenian, Greek, Ethiopic).
SENTENCE_END = frozenset(".!?…。！？؟।॥։።")
PHRASE_END = frozenset(",;:،؛、，；：–—)]}")


def _class(chars: list[str]) -> str:
    """A regex character class body, as ranges (the engine matches ranges much faster)."""
    ranges: list[list[int]] = []
    for c in sorted(map(ord, chars)):
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1][1] = c
        else:
            ranges.append([c, c])
    return "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges)


def _compile(punct: str) -> re.Pattern[str]:
    joiners = _class(sorted(_JOIN_ANY))
    run = rf"[^\s{punct}]+"
    word = rf"{run}(?:(?:[{joiners}]|(?<=\d)[,:](?=\d)){run})*"
    return re.compile(rf"(\s+)|({word})|([{punct}]+)")


@cache
def _token_re() -> re.Pattern[str]:
    # Built once on first use (not at import): every P* character of the planes in use.
    top = min(sys.maxunicode, 0x2FFFF)
    return _compile(_class([chr(c) for c in range(top) if unicodedata.category(chr(c))[0] == "P"]))


@cache
def _ascii_re() -> re.Pattern[str]:
    # The same rules over ASCII only (the common case, ~4x faster); tests check they agree.
    return _compile(_class([chr(c) for c in range(128) if unicodedata.category(chr(c))[0] == "P"]))


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into word and punctuation tokens (see the module doc)."""
    out: list[Token] = []
    space = False
    token_re = _ascii_re() if text.isascii() else _token_re()
    for blank, word, punct in token_re.findall(text):
        if blank:
            space = True
        elif word:
            out.append((True, word, space))
            space = False
        else:
            out.append((False, punct, space))
            space = False
    if _CJK.search(text) is not None:
        out = _split_cjk(out)
    return out


def _split_cjk(tokens: list[Token]) -> list[Token]:
    res: list[Token] = []
    for is_word, value, space in tokens:
        if not is_word or not _CJK.search(value):
            res.append((is_word, value, space))
            continue
        for i, piece in enumerate(_CJK_SPLIT.findall(value)):
            res.append((True, piece, space if i == 0 else False))
    return res


def join(tokens: list[Token]) -> str:
    """The text of tokens, spaced as in the source (no leading space)."""
    parts: list[str] = []
    for _, value, space in tokens:
        if space and parts:
            parts.append(" ")
        parts.append(value)
    return "".join(parts)


def spread(tokens: list[Token], start: float, end: float) -> list[TimedToken]:
    """Tokens with heuristic timings: words share ``[start, end]`` by length, a space counts as
    one character of pause, punctuation takes no time (it sits at the end of the word before it,
    or at the start of the next word when it opens the text). Times are whole milliseconds of a
    non-decreasing character position (``start + span * position / total``, rounded half up in
    integers), so they are monotonic and inside ``[round(start, 3), round(end, 3)]``.
    """
    # Round to ms exactly as the bounds are (round(x, 3)): round(x * 1000) alone rounds half to
    # even on the scaled float and can disagree by a millisecond (0.0025 → 2 ms vs 0.003 s).
    s_ms = round(round(start, 3) * 1000)
    span = round(round(end, 3) * 1000) - s_ms
    r_start = s_ms / 1000
    total = 0
    first = True
    for is_word, value, space in tokens:
        if is_word:
            total += (len(value) or 1) + (1 if space and not first else 0)
            first = False
    if total == 0:
        return [(w, v, sp, r_start, r_start) for w, v, sp in tokens]
    span2, total2 = 2 * span, 2 * total
    out: list[TimedToken] = []
    pos = 0
    t_pos = r_start
    first = True
    for is_word, value, space in tokens:
        if is_word:
            if space and not first:
                pos += 1
                t_pos = (s_ms + (span2 * pos + total) // total2) / 1000
            first = False
            ts = t_pos
            pos += len(value) or 1
            t_pos = (s_ms + (span2 * pos + total) // total2) / 1000
            out.append((True, value, space, ts, t_pos))
        else:
            out.append((False, value, space, t_pos, t_pos))
    return out


def split_long(value: str, limit: int) -> list[str]:
    """Hard-split a word longer than ``limit`` characters (a caption line must hold it), never
    between a base character and its combining marks (Arabic harakat, accents) when avoidable."""
    pieces: list[str] = []
    i = 0
    n = len(value)
    while n - i > limit:
        cut = i + limit
        while cut > i + 1 and unicodedata.category(value[cut])[0] == "M":
            cut -= 1
        pieces.append(value[i:cut])
        i = cut
    pieces.append(value[i:])
    return pieces


def break_level(value: str) -> int:
    """How good a break after a punctuation run is: 2 sentence end, 1 phrase end, 0 none."""
    if any(c in SENTENCE_END for c in value):
        return 2
    if any(c in PHRASE_END for c in value):
        return 1
    return 0
