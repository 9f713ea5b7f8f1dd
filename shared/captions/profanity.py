"""Profanity masking for ``enableProfanityRemoval`` (reach profile; issue 5).

The word list is the one maintained in the ``better-profanity`` package (its
``profanity_wordlist.txt``), not a hand-typed list. We match its entries against our own word
tokens instead of calling its ``censor()``: that function rewrites whole strings with a fixed
``****`` and knows nothing of our tokens, while captions need per-item masking that keeps each
word's length (so timings and line widths do not move) and never drops a word. A masked word
keeps its first character: "shit" → "s***". Multi-word entries ("blow job") mask each word of
the phrase when the words follow each other.

The list is English; masking applies to whatever language the task carries when the profile
asks for it (an entry rarely collides with a word of another language).
"""

from __future__ import annotations

from functools import cache

from better_profanity.utils import get_complete_path_of_file, read_wordlist

from shared.captions.text import Token


@cache
def _wordlist() -> tuple[frozenset[str], dict[str, tuple[tuple[str, ...], ...]]]:
    singles: set[str] = set()
    phrases: dict[str, list[tuple[str, ...]]] = {}
    for entry in read_wordlist(get_complete_path_of_file("profanity_wordlist.txt")):
        words = tuple(entry.casefold().split())
        if len(words) == 1:
            singles.add(words[0])
        elif words:
            phrases.setdefault(words[0], []).append(words)
    return frozenset(singles), {k: tuple(v) for k, v in phrases.items()}


def mask(word: str) -> str:
    """First character, then one asterisk per remaining character."""
    return word[:1] + "*" * (len(word) - 1)


def _profane(word: str, singles: frozenset[str]) -> bool:
    w = word.casefold()
    if w in singles:
        return True
    # "bull-shit", "fuckin'": a part between joiners can be the listed word
    for sep in "-'’":
        if sep in w and any(p in singles for p in w.split(sep)):
            return True
    return False


def censor_tokens(tokens: list[Token]) -> list[Token]:
    """Mask the listed words among ``tokens``; punctuation and other words are untouched."""
    singles, phrases = _wordlist()
    out = list(tokens)
    words = [i for i, (is_word, _, _) in enumerate(tokens) if is_word]
    folded = [tokens[i][1].casefold() for i in words]
    for j, i in enumerate(words):
        w = folded[j]
        if w in singles or (("-" in w or "'" in w or "’" in w) and _profane(w, singles)):
            _, value, space = tokens[i]
            out[i] = (True, mask(value), space)
        if w not in phrases:
            continue
        for phrase in phrases[w]:
            if tuple(folded[j : j + len(phrase)]) == phrase:
                for k in words[j : j + len(phrase)]:
                    out[k] = (True, mask(tokens[k][1]), tokens[k][2])
    return out


def censor_text(text: str) -> str:
    """Convenience for tests and tools: mask the listed words of a text."""
    from shared.captions.text import join, tokenize

    return join(censor_tokens(tokenize(text)))
