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

_JOIN_ANY = frozenset("'’ʼ-‐‑._@/&·")
_JOIN_DIGITS = frozenset(",:")
_CJK_CLASS = "\u3005-\u3007\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f\U00020000-\U0002fa1f"
_CJK = re.compile(f"[{_CJK_CLASS}]")
_CJK_SPLIT = re.compile(f"[{_CJK_CLASS}]|[^{_CJK_CLASS}]+")
# Sentence ends and phrase ends (Latin, Arabic, CJK, Devanagari, Armenian, Greek, Ethiopic).
SENTENCE_END = frozenset(".!?…。！？؟।॥։።")
PHRASE_END = frozenset(",;:،؛、，；：–—)]}")


@cache
def _token_re() -> re.Pattern[str]:
    # Built once on first use (not at import): every P* character of the planes in use.
    punct = "".join(
        re.escape(chr(c)) for c in range(min(sys.maxunicode, 0x2FFFF)) if unicodedata.category(chr(c))[0] == "P"
    )
    return re.compile(rf"(\s+)|([{punct}]+)|([^\s{punct}]+)")


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into word and punctuation tokens (see the module doc)."""
    out: list[Token] = []
    space = False
    glue = False  # the previous token ends with a joiner: the next word run continues it
    n = len(text)
    token_re = _token_re()
    for m in token_re.finditer(text):
        kind = m.lastindex
        if kind == 1:
            space = True
            continue
        value = m.group()
        if kind == 2:
            end = m.end()
            if len(value) == 1 and out and out[-1][0] and not space and end < n:
                nxt = token_re.match(text, end)
                if (
                    nxt is not None
                    and nxt.lastindex == 3
                    and (
                        value in _JOIN_ANY
                        or (value in _JOIN_DIGITS and out[-1][1][-1].isdigit() and text[end].isdigit())
                    )
                ):
                    out[-1] = (True, out[-1][1] + value, out[-1][2])
                    glue = True
                    continue
            out.append((False, value, space))
        elif glue:
            out[-1] = (True, out[-1][1] + value, out[-1][2])
        else:
            out.append((True, value, space))
        space = False
        glue = False
    if any(_CJK.search(v) for w, v, _ in out if w):
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


def spread(tokens: list[Token], start: float, end: float) -> list[tuple[float, float]]:
    """Heuristic item timings: words share ``[start, end]`` by length, a space counts as one
    character of pause, punctuation takes no time (it sits at the end of the word before it, or
    at the start of the next word when it opens the text). Times are rounded to milliseconds;
    rounding a non-decreasing function keeps them monotonic and inside ``[start, end]``.
    """
    positions: list[tuple[int, int]] = []
    pos = 0
    first = True
    for is_word, value, space in tokens:
        if is_word:
            if space and not first:
                pos += 1
            first = False
            s = pos
            pos += max(1, len(value))
            positions.append((s, pos))
        else:
            positions.append((pos, pos))
    total = pos
    r_start, r_end = round(start, 3), round(end, 3)
    if total == 0:
        return [(r_start, r_start)] * len(tokens)
    span = end - start

    def at(p: int) -> float:
        if p >= total:
            return r_end
        return min(round(start + span * p / total, 3), r_end)

    return [(at(s), at(e)) for s, e in positions]


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
