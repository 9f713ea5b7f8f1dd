"""CaptionBuilder: one task's KWIKmotion results → Kaltura responses (sans-I/O, no clock).

One builder per REACH task. The relay feeds it every validated result meant for the task, with
the session's time offset and a time base, and XADDs what comes back to ``captions:{task}``.

Responses (Kaltura seed, "Websocket response - schema" and the sections after it):

- ``transcript``: one final response per result (KWIKmotion results are final per chunk), even
  for silence (empty items: "the entire audio duration is covered by transcript responses").
- ``captions``: the result's words as non-overlapping two-line blocks (``layout``), none for
  silence.
- ``end_of_stream``: one empty final response per wanted type with ``is_end_of_stream: true``.

Ids are UUIDv5 (``NAMESPACE``) of ``task:<task id>:<position>``, the position derived from the
input alone: ``<type>:<start ms>-<end ms>:<block index>`` where start/end are the result's media
times (offset applied) in whole milliseconds and the block index counts the result's captions
blocks (0 for its transcript response); ``<type>:eos`` for the end of stream. Rebuilding the same
result (after a relay takeover) therefore yields the same ids.

State across results (``state()`` / ``restore()``, JSON-safe for Redis): the end of the last
captions block (never overlap it), the end of the last transcript (where the end-of-stream
transcript starts), the last result's position (a result at or before it was already built and
returns nothing, so replayed audio does not duplicate captions) and the end-of-stream flag.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Iterable
from typing import Any, NamedTuple

import pydantic_core

from shared.captions.layout import blocks_of, place, units_of
from shared.captions.models import Envelope
from shared.captions.profanity import censor_tokens
from shared.captions.results import Transcript, Translation
from shared.captions.text import TimedToken, join, spread, tokenize
from shared.captions.timebase import TimeBase
from shared.streams import CaptionEntry

NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/reachlive/captions")
TYPES = ("transcript", "captions")
SERVICE_TYPES = ("transcription", "translation")
STATE_VERSION = 1
_NS_BYTES = NAMESPACE.bytes


def speaker_id(event_id: str | int) -> str:
    """The one speaker of an event (KWIKmotion has no diarization), stable across relays."""
    return str(uuid.uuid5(NAMESPACE, f"event:{event_id}:speaker"))


def response_id(task_id: str | int, position: str) -> str:
    """``str(uuid.uuid5(NAMESPACE, f"task:{task_id}:{position}"))``, without the UUID object
    (this runs once per response; the test suite checks it equals ``uuid.uuid5``)."""
    h = bytearray(hashlib.sha1(_NS_BYTES + f"task:{task_id}:{position}".encode()).digest()[:16])
    h[6] = (h[6] & 0x0F) | 0x50  # version 5 (RFC 4122 section 4.3)
    h[8] = (h[8] & 0x3F) | 0x80  # RFC 4122 variant
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


class Built(NamedTuple):
    """One response, serialised (``json`` is ``{"response": {...}}``), with what a reader filters on."""

    type: str
    id: str
    json: str
    is_end_of_stream: bool
    start: float
    end: float

    def model(self) -> Envelope:
        return Envelope.model_validate_json(self.json)


def to_entry(built: Built, created: float) -> CaptionEntry:
    """The ``captions:{task}`` stream entry of a response; ``created`` is the epoch of writing."""
    return CaptionEntry(json=built.json, kind=built.type, eos=built.is_end_of_stream, created=created)


def _ms(t: float) -> int:
    return round(t * 1000)


def _types(types: str | Iterable[str]) -> tuple[str, ...]:
    if isinstance(types, str):
        types = types.split(",")
    wanted = {t.strip() for t in types if t.strip()}
    if not wanted or wanted - set(TYPES):
        raise ValueError(f"response types must be among {TYPES}, got {sorted(wanted)}")
    return tuple(t for t in TYPES if t in wanted)


class CaptionBuilder:
    """Builds one task's responses. See the module doc for the rules and the id scheme."""

    def __init__(
        self,
        *,
        task_id: str | int,
        event_id: str | int,
        service_type: str,
        language_code: str,
        max_chars: int = 26,
        profanity: bool = False,
        types: str | Iterable[str] = TYPES,
    ) -> None:
        if service_type not in SERVICE_TYPES:
            raise ValueError(f"service_type must be one of {SERVICE_TYPES}")
        if not language_code:
            raise ValueError("language_code is empty")
        if not isinstance(max_chars, int) or max_chars < 1:
            raise ValueError("max_chars must be a positive integer")
        self.task_id = str(task_id)
        self.event_id = str(event_id)
        self.service_type = service_type
        self.language_code = language_code
        self.max_chars = max_chars
        self.profanity = bool(profanity)
        self.types = _types(types)
        self.speaker = speaker_id(event_id)
        self._primary = language_code.split("-")[0].split("_")[0].casefold()
        self._last_caption_end: float | None = None
        self._last_transcript_end: float | None = None
        self._last_key: tuple[int, int] | None = None
        self._ended = False

    # --- state ------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "last_caption_end": self._last_caption_end,
            "last_transcript_end": self._last_transcript_end,
            "last_result": list(self._last_key) if self._last_key is not None else None,
            "ended": self._ended,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Load a ``state()``; raises ``ValueError`` for anything that is not one."""
        try:
            if state["v"] != STATE_VERSION:
                raise ValueError(f"unsupported caption state version {state['v']!r}")
            cap, tr, last, ended = (
                state["last_caption_end"],
                state["last_transcript_end"],
                state["last_result"],
                state["ended"],
            )
            cap = None if cap is None else float(cap)
            tr = None if tr is None else float(tr)
            key = None if last is None else (int(last[0]), int(last[1]))
            if not isinstance(ended, bool):
                raise ValueError("ended is not a boolean")
            if not all(math.isfinite(t) for t in (cap, tr) if t is not None):
                raise ValueError("times must be finite")
        except (KeyError, TypeError, IndexError) as exc:
            raise ValueError(f"bad caption state: {exc!r}") from None
        self._last_caption_end, self._last_transcript_end, self._last_key, self._ended = cap, tr, key, ended

    @property
    def ended(self) -> bool:
        return self._ended

    # --- building ---------------------------------------------------------------------------
    def accepts(self, result: Transcript | Translation) -> bool:
        """Whether the result is this task's: transcripts for transcription tasks, translations
        into this task's language (primary subtag: "fr" serves "fr-CA") for translation tasks."""
        if isinstance(result, Transcript):
            return self.service_type == "transcription"
        return self.service_type == "translation" and result.target_language.casefold() == self._primary

    def build(self, result: Transcript | Translation, offset: float, time_base: TimeBase) -> list[Built]:
        """The responses of one result, whose times are ``offset`` + KWIKmotion's (the media
        time of the session's first audio). Returns ``[]`` for a result already built (at or
        before the last one) and after the end of stream; raises ``ValueError`` for a result
        that is not this task's (see ``accepts``)."""
        if not self.accepts(result):
            lang = result.target_language if isinstance(result, Translation) else result.language
            raise ValueError(f"a {result.kind} in {lang!r} is not for this {self.service_type} task")
        if not math.isfinite(offset):
            raise ValueError("offset must be a finite number of seconds")
        start = round(offset + result.start_time, 3)
        end = round(offset + result.end_time, 3)
        key = (_ms(start), _ms(end))
        if self._ended or (self._last_key is not None and key <= self._last_key):
            return []
        tokens = tokenize(result.text)
        if self.profanity:
            tokens = censor_tokens(tokens)
        timed = spread(tokens, start, end)
        pos = f"{key[0]}-{key[1]}"
        out: list[Built] = []
        if "transcript" in self.types:
            out.append(self._built("transcript", f"transcript:{pos}:0", start, end, join(tokens), timed, time_base))
        if "captions" in self.types and any(t[0] for t in tokens):
            blocks = blocks_of(units_of(timed, self.max_chars), self.max_chars)
            self._last_caption_end = place(blocks, end, self._last_caption_end)
            for i, b in enumerate(blocks):
                out.append(
                    self._built(
                        "captions", f"captions:{pos}:{i}", b.start, b.end, "\n".join(b.lines), b.items, time_base
                    )
                )
        if self._last_transcript_end is None or end > self._last_transcript_end:
            self._last_transcript_end = end
        self._last_key = key
        return out

    def end_of_stream(self, media_time: float, time_base: TimeBase) -> list[Built]:
        """The final responses (``is_end_of_stream: true``, no items), one per wanted type.

        The transcript one covers from the last transcript's end to ``media_time`` (transcripts
        cover the whole audio); the captions one is empty and zero-length at the later of
        ``media_time`` and the last block's end, so it overlaps nothing. Calling it again gives
        the same responses; ``build`` returns nothing afterwards.
        """
        t = round(media_time, 3)
        out: list[Built] = []
        if "transcript" in self.types:
            s = self._last_transcript_end if self._last_transcript_end is not None else t
            out.append(self._built("transcript", "transcript:eos", s, max(s, t), "", [], time_base, eos=True))
        if "captions" in self.types:
            s = max(t, self._last_caption_end) if self._last_caption_end is not None else t
            out.append(self._built("captions", "captions:eos", s, s, "", [], time_base, eos=True))
        self._ended = True
        return out

    def _built(
        self,
        rtype: str,
        position: str,
        start: float,
        end: float,
        text: str,
        items: list[TimedToken],
        time_base: TimeBase,
        *,
        eos: bool = False,
    ) -> Built:
        rid = response_id(self.task_id, position)
        pts = round(time_base.pts(start), 3)
        epoch = round(time_base.epoch(start), 3)
        speaker = self.speaker
        body = {
            "id": rid,
            "type": rtype,
            "service_type": self.service_type,
            "language_code": self.language_code,
            "start": start,
            "end": end,
            "start_pts": pts,
            "start_epoch": epoch,
            "is_final": True,
            "is_end_of_stream": eos,
            "speakers": [{"id": speaker, "label": None}],
            "alternatives": [
                {
                    "transcript": text,
                    "start": start,
                    "end": end,
                    "start_pts": pts,
                    "start_epoch": epoch,
                    "items": [
                        {"start": s, "end": e, "kind": "text" if w else "punct", "value": v, "speaker_id": speaker}
                        for w, v, _, s, e in items
                    ],
                }
            ],
        }
        # Serialised straight from plain values (pydantic-core's encoder): validating through
        # ``Envelope`` here would cost ~3x the whole build; the tests check every response the
        # builder makes against ``Envelope`` strictly instead.
        data = pydantic_core.to_json({"response": body}).decode()
        return Built(type=rtype, id=rid, json=data, is_end_of_stream=eos, start=start, end=end)
