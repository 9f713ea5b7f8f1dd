"""KWIKmotion's results placed on the chunks sent, released in chunk order (sans-I/O, issue 17).

The seed leaves room, and a real server may read it differently from our emulator:

- ``start_time``/``end_time`` may count from the session's start or from the chunk's ("Each
  chunk processed independently"): the *time base* is told per session from the results
  themselves (:meth:`ChunkResults._place`), and every result is mapped to the session clock;
- results of chunk N+1 may come before those of chunk N: they are placed by ``chunk_index`` and
  released per stream (the transcript, each target language) in chunk order, since a caption
  builder never goes back in time;
- an AddTranslation carries no chunk index: it is paired with the transcript of the same time
  range (as received) and language, never by arrival order;
- an empty transcript may get no AddTranslation ("Verify transcript is not empty"): once the
  session shows that reading (a later transcript's translation came while the empty one's did
  not), an empty transcript's translations are released at once as empty ones; before that, and
  for any other result that never comes, a chunk waits at most ``wait`` seconds, then is released
  without it (:class:`ResultsMissing`) so it holds up nothing for good;
- ``word_count`` and ``language`` may be missing: derived (from the text, from the session);
- "1-second audio buffering and smart deduplication": a transcript may start up to
  :data:`BUFFER_SECONDS` before its chunk, carrying a word cut by the boundary. Times are clamped
  so that a stream's results never overlap and never leave their chunk (see :meth:`_release`).

Nothing is dropped silently: every result that cannot be placed or parsed becomes a non-fatal
:class:`ProtocolViolation` whose ``label`` is one of :data:`DROP_REASONS`.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from shared.kwikmotion.events import (
    Event,
    ProtocolViolation,
    ResultsMissing,
    TimeBaseDetected,
    TranscriptResult,
    TranslationResult,
)

BUFFER_SECONDS = 1.0  # seed FAQ: "1-second audio buffering"
TOLERANCE = 0.25  # slack when placing a result's times (rounding, a last word's end)
ROUNDING = 0.0011  # times come rounded to 1 ms: a smaller move is not counted as a clamp
SAME_TIMES = 0.01  # an AddTranslation "has its transcript's times" within this
DEFAULT_WAIT = 10.0  # seconds a chunk waits for a result that may never come
RECENT = 8  # chunks remembered after their release (to tell a repeated translation)
SOURCE = "transcript"  # the stream of transcripts; the other streams are the target codes

# Why a result was dropped (a fixed set: metric labels).
DROP_REASONS = ("malformed", "no_chunk_index", "unknown_chunk", "duplicate", "not_a_target", "unpaired", "late")
# Why a chunk was released without a result (ResultsMissing.reason).
MISSING_REASONS = ("omitted_empty", "wait", "end_of_transcript")
TIME_BASES = ("session", "chunk")


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(slots=True)
class _Chunk:
    index: int
    t0: float  # start on the session clock (audio sent before it)
    t1: float
    sent_at: float
    transcript: dict[str, Any] | None = None  # normalized metadata, once arrived
    raw_times: tuple[float, float] | None = None  # as received (translations carry the same)
    order: int = -1  # arrival rank of its transcript
    owed: set[str] = field(default_factory=set)  # targets still owed a translation
    got: dict[str, dict[str, Any]] = field(default_factory=dict)  # target → normalized translation
    lost: set[str] = field(default_factory=set)  # streams given up (no result will be released)
    transcript_due: float | None = None  # give up the transcript then (a later one arrived)
    translations_due: float | None = None  # give up the owed translations then
    rtt: float | None = None  # sent → its transcript
    derived: tuple[str, ...] = ()  # transcript fields we had to derive

    @property
    def empty(self) -> bool:
        return self.transcript is not None and not self.transcript["transcript"].strip()


@dataclass(slots=True)
class _Orphan:
    meta: dict[str, Any]
    target: str
    times: tuple[float, float]
    due: float


class ChunkResults:
    """The results of one KWIKmotion session's chunks: feed what was sent and what came back,
    get events in chunk order per stream. ``completed`` is the length of the prefix of chunks
    with every stream released (what a reconnect need not replay)."""

    def __init__(self, language: str, targets: tuple[str, ...], wait: float = DEFAULT_WAIT) -> None:
        self.language = language
        self.targets = targets
        self.wait = wait
        self.time_base: str | None = None  # "session" | "chunk" once told by a result
        self.empty_translations: str | None = None  # "send" | "omit" once the session showed it
        self.lead = 0.0  # the most a transcript started before its chunk (word-boundary buffering)
        self._chunks: dict[int, _Chunk] = {}
        self._sent = 0
        self._clock = 0.0  # session clock: seconds of audio sent
        self._next = dict.fromkeys((SOURCE, *targets), 0)  # per stream: next chunk to release
        self._prev_end = dict.fromkeys((SOURCE, *targets), 0.0)  # per stream: end of the last released
        self._arrivals = 0
        self._gave_up: set[int] = set()  # chunks whose transcript was given up
        self._orphans: list[_Orphan] = []  # translations that came before their transcript
        # The last chunks released and forgotten: a repeat of their translation is told apart.
        self._recent: deque[_Chunk] = deque(maxlen=RECENT)

    @property
    def completed(self) -> int:
        return min(self._next.values())

    # -- what was sent ------------------------------------------------------------------------

    def sent(self, seconds: float, now: float) -> None:
        """Chunk ``sent`` (the next index) of ``seconds`` of audio went out at ``now``."""
        index = self._sent
        self._chunks[index] = _Chunk(index, self._clock, self._clock + seconds, now)
        self._clock += seconds
        self._sent += 1

    # -- time ---------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        due = [o.due for o in self._orphans]
        for c in self._chunks.values():
            if c.transcript is None and c.transcript_due is not None and c.index not in self._gave_up:
                due.append(c.transcript_due)
            if c.owed and c.translations_due is not None:
                due.append(c.translations_due)
        return min(due) if due else None

    def poll(self, now: float) -> list[Event]:
        """Give up what waited ``wait`` seconds: transcripts (a later one arrived), translations
        (their transcript arrived), translations that came before any transcript of theirs."""
        out: list[Event] = []
        for c in sorted(self._chunks.values(), key=lambda c: c.index):
            if c.transcript is None and c.transcript_due is not None and now >= c.transcript_due:
                out += self._give_up_transcript(c, "wait")
            if c.owed and c.translations_due is not None and now >= c.translations_due:
                out += self._give_up_translations(c, "wait")
        out += self._drop_orphans(now)
        return out + self._release()

    def finish(self) -> list[Event]:
        """EndOfTranscript: nothing more will come; release every chunk sent."""
        out: list[Event] = []
        for c in sorted(self._chunks.values(), key=lambda c: c.index):
            if c.transcript is None and c.index not in self._gave_up:
                out += self._give_up_transcript(c, "end_of_transcript")
            if c.owed:
                out += self._give_up_translations(c, "end_of_transcript")
        out += self._drop_orphans(math.inf)
        return out + self._release()

    # -- what the server sends ----------------------------------------------------------------

    def transcript(self, msg: dict[str, Any], now: float) -> list[Event]:
        meta = msg.get("metadata")
        if not isinstance(meta, dict) or not isinstance(meta.get("transcript"), str):
            return [_drop("malformed", "AddTranscript without metadata.transcript")]
        index = meta.get("chunk_index")
        if isinstance(index, bool) or not isinstance(index, int):
            return [_drop("no_chunk_index", "AddTranscript without an integer metadata.chunk_index")]
        if index < 0 or index >= self._sent:
            return [_drop("unknown_chunk", f"AddTranscript for chunk {index}, never sent ({self._sent} sent)")]
        c = self._chunks.get(index)
        if index in self._gave_up:
            return [_drop("late", f"AddTranscript for chunk {index} after it was released without one")]
        if c is None or c.transcript is not None:
            return [_drop("duplicate", f"a second AddTranscript for chunk {index}")]
        text = meta["transcript"]
        derived: list[str] = []
        words = meta.get("word_count")
        if isinstance(words, bool) or not isinstance(words, int) or words < 0:
            words = len(text.split())
            derived.append("word_count")
        language = meta.get("language")
        if not isinstance(language, str) or not language:
            language = self.language
            derived.append("language")
        out: list[Event] = []
        start, end = _num(meta.get("start_time")), _num(meta.get("end_time"))
        if start is None or end is None or end < start:
            # Unusable times: the chunk's own span (the transcript is of its audio).
            derived.append("times")
            start, end = c.t0, c.t1
        else:
            c.raw_times = (start, end)
            start, end, base = self._place(c, start, end)
            if start < c.t0 - SAME_TIMES:
                self.lead = max(self.lead, round(c.t0 - start, 3))
            if base is not None:
                out.append(TimeBaseDetected(base, index))
        c.transcript = {
            "transcript": text,
            "start_time": start,
            "end_time": end,
            "language": language,
            "chunk_index": index,
            "word_count": words,
        }
        c.order = self._arrivals
        self._arrivals += 1
        c.owed = set(self.targets)
        c.translations_due = now + self.wait if c.owed else None
        c.rtt = max(0.0, now - c.sent_at)
        c.derived = tuple(derived)
        for earlier in self._chunks.values():
            # A later chunk was transcribed: an earlier one's transcript may be late (reordered)
            # or never come; wait for it, but not forever.
            if earlier.index < index and earlier.transcript is None and earlier.transcript_due is None:
                earlier.transcript_due = now + self.wait
        for orphan in list(self._orphans):
            if orphan.target in c.owed and _same(orphan.times, c.raw_times):
                self._orphans.remove(orphan)
                out += self._pair(c, orphan.target, orphan.meta)
        if c.empty and c.owed and self.empty_translations == "omit":
            out += self._give_up_translations(c, "omitted_empty")
        return out + self._release()

    def translation(self, msg: dict[str, Any], now: float) -> list[Event]:
        meta = msg.get("metadata")
        if not isinstance(meta, dict) or not isinstance(meta.get("translation"), str):
            return [_drop("malformed", "AddTranslation without metadata.translation")]
        target = meta.get("target_language")
        if not isinstance(target, str) or not target:
            if len(self.targets) != 1:
                return [_drop("malformed", "AddTranslation without metadata.target_language")]
            target = self.targets[0]  # one target asked: it can only be that one
        if target not in self.targets:
            return [_drop("not_a_target", f"AddTranslation for {target[:16]!r}, not a requested target")]
        start, end = _num(meta.get("start_time")), _num(meta.get("end_time"))
        times = (start, end) if start is not None and end is not None else None
        owing = [c for c in self._chunks.values() if c.transcript is not None and target in c.owed]
        if times is not None:
            same = [c for c in owing if c.raw_times is not None and _same(c.raw_times, times)]
            # Times a little off (another rounding), or a transcript whose own times were unusable.
            same = (
                same
                or sorted(
                    (c for c in owing if c.raw_times is not None and _near(c.raw_times, times)),
                    key=lambda c: _distance(c.raw_times, times),  # type: ignore[arg-type]
                )[:1]
            )
            same = same or [c for c in owing if c.raw_times is None]
            if not same:
                settled = [
                    c
                    for c in itertools.chain(self._chunks.values(), self._recent)
                    if c.raw_times is not None and _same(c.raw_times, times)
                ]
                if any(target in c.got for c in settled):
                    return [_drop("duplicate", f"a second AddTranslation ({target}) for the same transcript")]
                if settled:
                    return [_drop("late", f"AddTranslation ({target}) after its chunk was released without it")]
                # Its transcript may still come (a server that translates first): wait for it.
                self._orphans.append(_Orphan(meta, target, times, now + self.wait))
                return []
            owing = same
        if not owing:
            return [_drop("unpaired", f"AddTranslation ({target}) with no transcript owed one")]
        empty = not meta["translation"].strip()
        # Several transcripts with the same times (chunk-relative times of equal chunks): an empty
        # translation goes with an empty transcript, then the earliest transcript to arrive.
        c = min(owing, key=lambda c: (c.empty != empty, c.order))
        out = self._pair(c, target, meta)
        return out + self._release()

    # -- pairing and placing ------------------------------------------------------------------

    def _pair(self, c: _Chunk, target: str, meta: dict[str, Any], *, learn: bool = True) -> list[Event]:
        assert c.transcript is not None
        c.got[target] = {
            "translation": meta["translation"],
            "target_language": target,
            "start_time": c.transcript["start_time"],  # the transcript's audio, on the same clock
            "end_time": c.transcript["end_time"],
        }
        c.owed.discard(target)
        if not c.owed:
            c.translations_due = None
        out: list[Event] = []
        if not learn:
            return out
        if c.empty and not meta["translation"].strip() and self.empty_translations is None:
            self.empty_translations = "send"
        elif self.empty_translations is None and not c.empty:
            # Translations follow their transcript: one came for a transcript that arrived after
            # an empty one still owed this language, so empty transcripts get none ("omit").
            if any(d.empty and target in d.owed and d.order < c.order for d in self._chunks.values()):
                self.empty_translations = "omit"
                for d in sorted(self._chunks.values(), key=lambda d: d.index):
                    if d.empty and d.owed:
                        out += self._give_up_translations(d, "omitted_empty")
        return out

    def _place(self, c: _Chunk, start: float, end: float) -> tuple[float, float, str | None]:
        """A transcript's times on the session clock, and the time base if this result is the
        first to tell it. A reading fits when the result lies within its chunk, allowing the
        buffered second before it; where both fit (the first chunk: both readings agree) or
        neither does, the one whose end is nearer the chunk's end is used, without deciding."""
        told = None
        if self.time_base is None:
            fits = {base: self._fits(c, *self._mapped(c, base, start, end)) for base in TIME_BASES}
            if c.t0 > TOLERANCE and end > start and sum(fits.values()) == 1:
                told = self.time_base = "session" if fits["session"] else "chunk"
                base = told
            else:
                base = min(TIME_BASES, key=lambda b: (not fits[b], abs(self._mapped(c, b, start, end)[1] - c.t1)))
        else:
            base = self.time_base
        s, e = self._mapped(c, base, start, end)
        return s, e, told

    @staticmethod
    def _mapped(c: _Chunk, base: str, start: float, end: float) -> tuple[float, float]:
        origin = c.t0 if base == "chunk" else 0.0
        return origin + start, origin + end

    @staticmethod
    def _fits(c: _Chunk, start: float, end: float) -> bool:
        return start >= c.t0 - BUFFER_SECONDS - TOLERANCE and c.t0 < end <= c.t1 + TOLERANCE

    # -- giving up ----------------------------------------------------------------------------

    def _give_up_transcript(self, c: _Chunk, reason: str) -> list[Event]:
        self._gave_up.add(c.index)
        c.transcript_due = None
        c.lost.update((SOURCE, *self.targets))  # no transcript: nothing to translate either
        return [ResultsMissing(c.index, (SOURCE,), reason)]

    def _give_up_translations(self, c: _Chunk, reason: str) -> list[Event]:
        """The owed translations of ``c`` will not come. An empty transcript's translation is
        empty: released as such (the translation tasks' transcript responses keep covering the
        whole audio); any other is lost for its language."""
        owed, c.owed, c.translations_due = sorted(c.owed), set(), None
        if c.empty:
            for target in owed:
                self._pair(c, target, {"translation": ""}, learn=False)
        else:
            c.lost.update(owed)
        return [ResultsMissing(c.index, tuple(owed), reason, c.empty)] if owed else []

    def _drop_orphans(self, now: float) -> list[Event]:
        out: list[Event] = []
        for orphan in [o for o in self._orphans if now >= o.due]:
            self._orphans.remove(orphan)
            out.append(_drop("unpaired", f"AddTranslation ({orphan.target}) whose transcript never came"))
        return out

    # -- releasing in chunk order -------------------------------------------------------------

    def _release(self) -> list[Event]:
        """Every stream's results that are next in chunk order. Times are clamped here, where the
        stream's previous result is known: a result starts no earlier than the previous one of its
        stream ends (a transcript carrying a word from the chunk before claims up to 1 s of that
        chunk's audio, which the previous transcript already covers: the carried word is moved
        into this chunk's span, not dropped) and not before its chunk's start minus the 1 s
        buffer, and ends no later than its chunk (audio not sent yet cannot be in it). So each
        stream's times never decrease, never overlap, and stay within the audio sent."""
        out: list[Event] = []
        for stream in self._next:
            while (c := self._chunks.get(self._next[stream])) is not None:
                if stream == SOURCE:
                    if c.transcript is None and SOURCE not in c.lost:
                        break
                    if c.transcript is not None and SOURCE not in c.lost:
                        out.append(self._transcript_event(c))
                elif stream in c.got:
                    meta = dict(c.got[stream])
                    meta["start_time"], meta["end_time"], _ = self._clamp(stream, c, meta)
                    out.append(TranslationResult({"message": "AddTranslation", "metadata": meta}, stream, c.index))
                elif stream not in c.lost:
                    break
                self._next[stream] += 1
        self._prune()
        return out

    def _transcript_event(self, c: _Chunk) -> TranscriptResult:
        assert c.transcript is not None
        meta = dict(c.transcript)
        meta["start_time"], meta["end_time"], clamped = self._clamp(SOURCE, c, meta)
        return TranscriptResult({"message": "AddTranscript", "metadata": meta}, c.index, c.rtt, c.derived, clamped)

    def _clamp(self, stream: str, c: _Chunk, meta: dict[str, Any]) -> tuple[float, float, bool]:
        start, end = meta["start_time"], meta["end_time"]
        lo = max(0.0, c.t0 - BUFFER_SECONDS, self._prev_end[stream])
        s = min(max(start, lo), c.t1)
        e = min(max(end, s), c.t1)
        s, e = round(s, 6), round(e, 6)
        self._prev_end[stream] = e
        # Results carry times to the millisecond (the seed's examples, the emulator): moving one by
        # less than that is rounding, not a clamp worth counting.
        return s, e, abs(s - start) > ROUNDING or abs(e - end) > ROUNDING

    def _prune(self) -> None:
        done = self.completed
        for index in sorted(i for i in self._chunks if i < done):
            self._recent.append(self._chunks.pop(index))


def _same(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return abs(a[0] - b[0]) <= SAME_TIMES and abs(a[1] - b[1]) <= SAME_TIMES


def _near(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return abs(a[0] - b[0]) <= TOLERANCE and abs(a[1] - b[1]) <= TOLERANCE


def _distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    return abs(a[0] - b[0]) + abs(a[1] - b[1])


def _drop(label: str, reason: str) -> ProtocolViolation:
    return ProtocolViolation(reason, False, label=label)
