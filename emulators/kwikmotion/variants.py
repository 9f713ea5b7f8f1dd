"""Readings of the KWIKmotion seed the emulator can play (issue 17), and the per-session shaper
that turns each chunk's words into the server's result messages under one reading.

The seed leaves room: whether ``start_time``/``end_time`` count from the session or the chunk
("Each chunk processed independently"), whether results come in chunk order, whether an empty
transcript still gets its AddTranslation ("Verify transcript is not empty"), whether
``word_count``/``language`` are always there, what "1-second audio buffering and smart
deduplication" does at a chunk boundary, and whether messages it does not list are sent. Each
:class:`Variant` field picks one reading; :data:`VARIANTS` names one variant per reading (and all
at once) so tests can parametrize over them.

Whatever the variant, the words of the AddTranscript messages, taken in ``chunk_index`` order,
are those the chunks' audio holds, each once: a variant moves words and results around, it never
loses or repeats one.

Sans-I/O: :class:`ResultShaper` is fed chunks (index, sample span, words) and returns the JSON
messages to send now; the server sends them and calls :meth:`ResultShaper.flush` when nothing
arrived for :data:`HOLD_SECONDS` while something is held, and before EndOfTranscript.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

TIMES = ("session", "chunk")
EMPTY_TRANSLATIONS = ("send", "omit")
# Held results go out when nothing arrives for this long: longer than the seed's longest chunk
# (10 s), so a stream sent in real time always brings the next chunk first (the hold is what the
# variant shows), while a stream that pauses or stops still gets every result.
HOLD_SECONDS = 12.0
# "1-second audio buffering": a transcript carrying a word from the chunk before claims at most
# this much audio before its own chunk.
BUFFER_SECONDS = 1.0
SPARSE_FIELDS = ("word_count", "language")


@dataclass(frozen=True)
class Variant:
    """One reading of the seed. The defaults are the emulator's historical reading."""

    times: str = "session"  # session | chunk: what start_time/end_time count from
    reorder: bool = False  # even chunks' results wait for the next chunk's results
    empty_translations: str = "send"  # send | omit: AddTranslation for an empty transcript
    sparse: bool = False  # odd chunks' AddTranscript lack word_count and language
    boundary: bool = False  # a chunk's last word is reported with the next chunk (which starts earlier)
    extra_messages: bool = False  # Info after RecognitionStarted, AddPartialTranscript per chunk

    def __post_init__(self) -> None:
        if self.times not in TIMES:
            raise ValueError(f"times must be one of {TIMES}")
        if self.empty_translations not in EMPTY_TRANSLATIONS:
            raise ValueError(f"empty_translations must be one of {EMPTY_TRANSLATIONS}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """What differs from the default reading, e.g. ``times=chunk reorder`` (``seed`` if nothing)."""
        default = Variant()
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value != getattr(default, f.name):
                parts.append(f.name if value is True else f"{f.name}={value}")
        return " ".join(parts) or "seed"


# One variant per reading, and every reading at once: tests parametrize over these names,
# e.g. ``KwikmotionEmulator(variant=VARIANTS[name])`` or ``KwikmotionEmulator(variant=name)``.
VARIANTS: dict[str, Variant] = {
    "seed": Variant(),
    "times_chunk": Variant(times="chunk"),
    "reorder": Variant(reorder=True),
    "omit_empty_translations": Variant(empty_translations="omit"),
    "sparse": Variant(sparse=True),
    "boundary": Variant(boundary=True),
    "extra_messages": Variant(extra_messages=True),
    "all": Variant(
        times="chunk", reorder=True, empty_translations="omit", sparse=True, boundary=True, extra_messages=True
    ),
}
VARIANT_NAMES = tuple(VARIANTS)


def variant_from(value: Variant | str | None = None, **overrides: Any) -> Variant:
    """A Variant from a name of :data:`VARIANTS` (or a Variant), with fields overridden (None: keep)."""
    if value is None:
        base = Variant()
    elif isinstance(value, Variant):
        base = value
    elif value in VARIANTS:
        base = VARIANTS[value]
    else:
        raise ValueError(f"unknown variant {value!r}; one of {VARIANT_NAMES}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(base, **changes) if changes else base


def parse_variant_query(params: dict[str, str], base: Variant) -> Variant:
    """Admin query parameters (``variant=<name>``, ``times=chunk``, ``reorder=true``, ...) → Variant."""
    known = {f.name for f in dataclasses.fields(Variant)}
    out: dict[str, Any] = {}
    for key, raw in params.items():
        low = raw.strip().lower()
        if key == "variant":
            continue
        if key not in known:
            raise KeyError(key)
        if key in ("times", "empty_translations"):
            out[key] = low
        elif low in ("1", "true", "yes"):
            out[key] = True
        elif low in ("0", "false", "no"):
            out[key] = False
        else:
            raise ValueError(f"{key} must be true or false")
    return variant_from(params.get("variant", base), **out)


@dataclass
class _Chunk:
    index: int
    start: int  # first sample in the session's audio
    end: int  # one past the last sample
    words: list[str]
    first: int  # sample the transcript claims to start at (before ``start`` when it carries words)


@dataclass
class ResultShaper:
    """One session's results under ``variant``: feed chunks, send what comes back."""

    variant: Variant
    language: str
    targets: list[str]
    sample_rate: int
    _carry: _Chunk | None = None  # boundary: the last chunk, its last word not yet placed
    _held: list[dict[str, Any]] = field(default_factory=list)  # reorder: an even chunk's results

    @property
    def holding(self) -> bool:
        """Something waits for the next chunk (or :meth:`flush`)."""
        return self._carry is not None or bool(self._held)

    def started(self) -> list[dict[str, Any]]:
        """Messages right after RecognitionStarted."""
        if not self.variant.extra_messages:
            return []
        # Not in the seed: an informational message a newer server may send.
        return [{"message": "Info", "type": "session_info", "reason": "emulator: unlisted message", "quota": 100}]

    def chunk(self, index: int, start: int, end: int, words: list[str]) -> list[dict[str, Any]]:
        """Chunk ``index`` covering samples [start, end) holds ``words``: the messages to send now
        (after its AudioAdded, which the server sends itself)."""
        out: list[dict[str, Any]] = []
        if self.variant.extra_messages:
            partial = words[: (len(words) + 1) // 2]
            meta = {"transcript": " ".join(partial), "chunk_index": index, **self._times(start, start, end)}
            out.append({"message": "AddPartialTranscript", "metadata": meta})
        current = _Chunk(index, start, end, list(words), start)
        if self.variant.boundary:
            previous, self._carry = self._carry, current
            if previous is not None:
                if previous.words:
                    # The word cut by the boundary is heard whole with the next chunk's audio
                    # (1 s buffered), so it is reported there, once.
                    current.words.insert(0, previous.words.pop())
                    current.first = max(previous.start, start - round(BUFFER_SECONDS * self.sample_rate))
                out += self._results(previous)
            return out
        return out + self._results(current)

    def flush(self) -> list[dict[str, Any]]:
        """Everything held, in chunk order as far as it can be (before EndOfTranscript, or when
        nothing arrived for :data:`HOLD_SECONDS`)."""
        out: list[dict[str, Any]] = []
        if self._carry is not None:
            carried, self._carry = self._carry, None
            out += self._results(carried)
        out += self._held
        self._held = []
        return out

    def _results(self, c: _Chunk) -> list[dict[str, Any]]:
        transcript = " ".join(c.words)
        times = self._times(c.start, c.first, c.end)
        meta: dict[str, Any] = {
            "transcript": transcript,
            **times,
            "language": self.language,
            "chunk_index": c.index,
            "word_count": len(c.words),
        }
        if self.variant.sparse and c.index % 2 == 1:
            for name in SPARSE_FIELDS:
                del meta[name]
        results = [{"message": "AddTranscript", "metadata": meta}]
        if transcript or self.variant.empty_translations == "send":
            for target in self.targets:
                # A labelled placeholder: the emulator does not translate.
                translation = f"[{target}] {transcript}" if transcript else ""
                meta_t = {"translation": translation, "target_language": target, **times}
                results.append({"message": "AddTranslation", "metadata": meta_t})
        if not self.variant.reorder:
            return results
        if c.index % 2 == 0:
            # Chunks are "processed independently": this one finishes after the next one.
            self._held += results
            return []
        released, self._held = self._held, []
        return results + released

    def _times(self, chunk_start: int, first: int, end: int) -> dict[str, float]:
        origin = chunk_start if self.variant.times == "chunk" else 0
        rate = self.sample_rate
        return {"start_time": round((first - origin) / rate, 3), "end_time": round((end - origin) / rate, 3)}
