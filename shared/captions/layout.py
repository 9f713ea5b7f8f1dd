"""Caption blocks: words grouped into at most two lines of ``max_chars`` and timed for display.

Kaltura seed ("Websocket - Response types"): "captions"-type responses "are non-overlapping and
consecutive", final, and sent only when there are words. Issue 5 adds the reach profile's
``maxCharactersPerCaptionLine`` (26 in the seed), at most two lines joined by ``\\n``, breaks at
punctuation and phrase boundaries where possible, and display durations of about 1-7 s unless
the speech forces otherwise.

Pipeline per result: tokens → *units* (a word with the punctuation glued to it; words longer
than a line hard-split) → *blocks* (greedy fill; when a block overflows it is cut back to its
last sentence end or phrase end if that keeps it reasonably full) → *lines* (the two-line split
that balances lengths, preferring punctuation) → *placement* (start never before the previous
block's end, even across results; stretched towards ``MIN_SECONDS`` where there is room, cut at
``MAX_SECONDS``).
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.captions.text import TimedToken, break_level, split_long

MIN_SECONDS = 1.0
MAX_SECONDS = 7.0
# When the input forces a block into time already shown (a result overlapping the previous
# one), it still gets this much display time rather than a zero or negative duration.
FLOOR_SECONDS = 0.1

# Penalty of a line break at a unit boundary, by break level (none, phrase, sentence).
_LINE_PENALTY = (12, 3, 0)


class Unit:
    __slots__ = ("brk", "end", "items", "space", "start", "text")

    def __init__(self, items: list[TimedToken]) -> None:
        self.items = items
        first = items[0]
        self.space = first[2]
        if len(items) == 1:
            self.text = first[1]
            self.start, self.end = first[3], first[4]
            self.brk = 0 if first[0] else break_level(first[1])
            return
        parts: list[str] = []
        start = end = None
        for i, (is_word, value, space, s, e) in enumerate(items):
            if space and i:
                parts.append(" ")
            parts.append(value)
            if is_word:
                if start is None:
                    start = s
                end = e
        self.text = "".join(parts)
        self.start = first[3] if start is None else start
        self.end = items[-1][4] if end is None else end
        last = items[-1]
        self.brk = 0 if last[0] else break_level(last[1])


@dataclass(slots=True)
class Block:
    lines: list[str]
    items: list[TimedToken]
    start: float
    end: float


def _split_timed(item: TimedToken, limit: int) -> list[TimedToken]:
    is_word, value, space, s, e = item
    if len(value) <= limit:
        return [item]
    pieces = split_long(value, limit)
    out: list[TimedToken] = []
    done = 0
    span = e - s
    n = len(value)
    for i, piece in enumerate(pieces):
        ps = round(s + span * done / n, 3)
        done += len(piece)
        pe = e if done == n else round(s + span * done / n, 3)
        out.append((is_word, piece, space if i == 0 else False, ps, pe))
    return out


def units_of(tokens: list[TimedToken], max_chars: int) -> list[Unit]:
    """Group tokens into units (see module doc); every unit is at most ``max_chars`` wide."""
    units: list[list[TimedToken]] = []
    prefix: list[TimedToken] = []
    n = len(tokens)
    for idx, item in enumerate(tokens):
        is_word, value, space, _, _ = item
        if is_word:
            if len(value) <= max_chars:
                units.append([*prefix, item] if prefix else [item])
                prefix = []
                continue
            for piece in _split_timed(item, max_chars):
                units.append([*prefix, piece])
                prefix = []
            continue
        opening = idx + 1 < n and tokens[idx + 1][0] and not tokens[idx + 1][2] and (space or not units)
        if opening or not units:
            prefix.append(item)  # "¿", "(", "«": belongs to the word after it
        else:
            units[-1].append(item)
    if prefix and units:
        units[-1].extend(prefix)
    out: list[Unit] = []
    for items in units:
        unit = Unit(items)
        if len(unit.text) <= max_chars:
            out.append(unit)
            continue
        # a line-long word plus its punctuation: each item on its own (long punctuation split too)
        for it in items:
            out.extend(Unit([p]) for p in _split_timed(it, max_chars))
    return out


def _widths(units: list[Unit]) -> list[int]:
    """Prefix widths G: the line ``units[a:b]`` is ``G[b] - G[a] - space(a)`` wide."""
    g = [0]
    acc = 0
    for u in units:
        acc += len(u.text) + (1 if u.space else 0)
        g.append(acc)
    return g


def _line(units: list[Unit], g: list[int], a: int, b: int) -> int:
    return g[b] - g[a] - (1 if units[a].space else 0)


def _best_split(units: list[Unit], max_chars: int) -> int | None:
    """0 if one line holds the units; else the best cut index for two lines; None if none fits."""
    n = len(units)
    g = _widths(units)
    if _line(units, g, 0, n) <= max_chars:
        return 0
    best = None
    best_cost = 0
    for k in range(1, n):
        w1 = _line(units, g, 0, k)
        if w1 > max_chars:
            break
        w2 = _line(units, g, k, n)
        if w2 > max_chars:
            continue
        cost = abs(w1 - w2) + _LINE_PENALTY[units[k - 1].brk]
        if best is None or cost < best_cost:
            best, best_cost = k, cost
    return best


def _cut(cur: list[Unit], max_chars: int) -> int:
    """Where to close an overflowing block: after its last sentence end if that leaves it at
    least 40% full, else after its last phrase end if half full, else after its last unit."""
    g = _widths(cur)
    cap = 2 * max_chars
    for level, share in ((2, 0.4), (1, 0.5)):
        for k in range(len(cur), 0, -1):
            if cur[k - 1].brk >= level and _line(cur, g, 0, k) >= share * cap:
                return k
    return len(cur)


def _block(units: list[Unit], max_chars: int) -> Block:
    k = _best_split(units, max_chars)
    assert k is not None  # blocks are only formed from units that fit
    if k == 0:
        lines = [_text(units)]
    else:
        lines = [_text(units[:k]), _text(units[k:])]
    items = [it for u in units for it in u.items]
    return Block(lines=lines, items=items, start=units[0].start, end=units[-1].end)


def _text(units: list[Unit]) -> str:
    parts: list[str] = []
    for i, u in enumerate(units):
        if u.space and i:
            parts.append(" ")
        parts.append(u.text)
    return "".join(parts)


def blocks_of(units: list[Unit], max_chars: int) -> list[Block]:
    """Greedy fill of two-line blocks, cut back to punctuation where possible (module doc).

    Whether units fit in two lines is decided by filling the first line as far as it goes
    (greedy first-fit needs the fewest lines), tracked incrementally: O(1) per unit.
    """
    blocks: list[Block] = []
    cur: list[Unit] = []
    w1 = w2 = 0  # greedy widths of the current block's first and second line
    for u in units:
        while cur:
            if u.end - cur[0].start > MAX_SECONDS:
                k = len(cur)
            else:
                fit = _add(w1, w2, u, max_chars)
                if fit is not None:
                    break
                k = _cut(cur, max_chars)
            blocks.append(_block(cur[:k], max_chars))
            cur = cur[k:]
            w1 = w2 = 0
            for c in cur:
                w1, w2 = _add(w1, w2, c, max_chars) or (w1, w2)
        if not cur:
            fit = (len(u.text), 0)
        cur.append(u)
        w1, w2 = fit
    if cur:
        blocks.append(_block(cur, max_chars))
    return blocks


def _add(w1: int, w2: int, u: Unit, max_chars: int) -> tuple[int, int] | None:
    """Greedy line widths after appending ``u``, or None if two lines cannot hold it."""
    n = len(u.text)
    if w2 == 0:
        if w1 == 0:
            return n, 0
        w = w1 + n + (1 if u.space else 0)
        if w <= max_chars:
            return w, 0
        return w1, n  # a new (second) line: its leading space is dropped
    w = w2 + n + (1 if u.space else 0)
    return (w1, w) if w <= max_chars else None


def place(blocks: list[Block], result_end: float, last_end: float | None) -> float | None:
    """Final display times, in place. Returns the new ``last_end`` (the state across results).

    A block starts at its first word, or at the previous block's end if that is later (never
    overlap, even across results); it ends at its last word, stretched towards ``MIN_SECONDS``
    as far as the next block (or the result's end) allows, and cut at ``MAX_SECONDS``. Items are
    clamped into the block so a captions response is self-consistent.
    """
    for i, b in enumerate(blocks):
        s = round(b.start, 3)
        if last_end is not None and s < last_end:
            s = last_end
        limit = blocks[i + 1].start if i + 1 < len(blocks) else result_end
        e = max(b.end, min(s + MIN_SECONDS, limit))
        e = min(e, s + MAX_SECONDS)
        if e < s + FLOOR_SECONDS:
            e = s + FLOOR_SECONDS
        e = round(e, 3)
        b.start, b.end = s, e
        if b.items[0][3] >= s and b.items[-1][4] <= e:
            last_end = e  # items are monotonic: the first start and last end bound them all
            continue
        clamped: list[TimedToken] = []
        for is_word, value, space, a, z in b.items:
            a = min(max(a, s), e)
            clamped.append((is_word, value, space, a, min(max(z, a), e)))
        b.items = clamped
        last_end = e
    return last_end
