"""The tasks of an event as caption outputs: which results each wants, and its persisted state.

docs/design.md section 4, "Output": caption tasks want the source-language transcripts, translation
tasks the translations into their target; StartRecognition's ``target_languages`` are the
event's translation targets. Per task the relay persists (in ``keys.relay_state(E)``, field
``task:<id>``) the last audio entry whose result it emitted and its caption builder's state,
atomically with the captions (``writer.CaptionWriter``), so a replay skips what is done; and
its usage counters (field ``usage:<id>``: words captioned, seconds of KWIKmotion sessions that
served it), committed with the captions they count, so a replay or a takeover never counts twice.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from services.relay.audio import id_le
from shared.captions import Built, CaptionBuilder
from shared.registry import LIVE_TRANSLATION, TaskRecord

log = logging.getLogger(__name__)


@dataclass(slots=True)
class TaskOutput:
    record: TaskRecord
    builder: CaptionBuilder
    done: str  # last audio stream id whose result this task got ("0-0": none)
    words: int = 0  # words of its captions written so far
    session_base: float = 0.0  # seconds of KWIKmotion sessions that served it before this one
    session: float = 0.0  # the same, this connection's included (as of its last commit)

    @property
    def id(self) -> str:
        return self.record.id

    def dump(self) -> str:
        return json.dumps({"done": self.done, "builder": self.builder.state()}, separators=(",", ":"))

    def count(self, built: list[Built]) -> None:
        """Add the words of the task's new responses: the text items of its captions responses,
        or of its transcript ones if it gets no captions (the types the export reads)."""
        kind = "captions" if "captions" in self.builder.types else "transcript"
        for b in built:
            if b.type == kind and not b.is_end_of_stream:
                self.words += count_words(b.json)

    def usage(self, session_elapsed: float) -> str:
        """The ``usage:<id>`` value with this connection's session open ``session_elapsed`` s."""
        self.session = self.session_base + max(0.0, session_elapsed)
        return f"{self.words} {self.session:.3f}"


def count_words(response_json: str) -> int:
    """Words (``text`` items) of a serialised response's first alternative."""
    alternatives = json.loads(response_json)["response"]["alternatives"]
    return sum(1 for item in alternatives[0]["items"] if item["kind"] == "text") if alternatives else 0


def parse_usage(saved: str | None) -> tuple[int, float]:
    """A persisted ``usage:<id>`` value → (words, session seconds); (0, 0.0) if none or unreadable."""
    try:
        words, seconds = (saved or "").split()
        return int(words), float(seconds)
    except ValueError:
        return 0, 0.0


def is_translation(task: TaskRecord) -> bool:
    return task.kind == "translation" or task.feature == LIVE_TRANSLATION


def targets_of(tasks: list[TaskRecord]) -> list[str]:
    """The event's translation targets (ISO 639-1), sorted, each once."""
    return sorted({t.language for t in tasks if is_translation(t) and t.language})


def make_output(
    event_id: str, task: TaskRecord, caption_types: str, saved: str | None, cursor: str, usage: str | None = None
) -> TaskOutput:
    """``saved``/``usage``: the task's persisted ``task:<id>`` and ``usage:<id>`` fields."""
    builder = CaptionBuilder(
        task_id=task.id,
        event_id=event_id,
        service_type="translation" if is_translation(task) else "transcription",
        language_code=task.language_code or task.language,
        max_chars=max(1, task.max_chars),
        profanity=task.profanity,
        types=caption_types,
    )
    done = cursor
    if saved:
        try:
            doc = json.loads(saved)
            builder.restore(doc["builder"])
            if not id_le(doc["done"], cursor):
                done = doc["done"]
        except (ValueError, KeyError, TypeError) as exc:
            # Unreadable state: start the builder afresh from the cursor. Its ids are derived
            # from media times, so a result already emitted would carry the same id (the
            # gateway's readers see a repeat with an id they know, never a new caption).
            log.error("bad relay state for task, starting from the cursor: %s", exc, extra={"task_id": task.id})
    words, seconds = parse_usage(usage)
    return TaskOutput(task, builder, done, words, seconds, seconds)


def entry_fields(built: Built, created: float) -> dict[str, str]:
    from shared.captions import to_entry

    return to_entry(built, created).fields()
