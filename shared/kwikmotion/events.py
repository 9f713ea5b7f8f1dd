"""Events a :class:`~shared.kwikmotion.session.KwikSession` returns (one per server message)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.kwikmotion.errors import ErrorClass


class KwikProtocolError(Exception):
    """Our own misuse of the session (audio before RecognitionStarted, after EndOfStream, ...).

    A bug in the driver, never caused by what the server sends: server messages produce events.
    """


@dataclass(frozen=True, slots=True)
class RecognitionStarted:
    session_id: str


@dataclass(frozen=True, slots=True)
class AudioAdded:
    seq_no: int
    lag: float | None = None  # seconds from sending the chunk to its AudioAdded


@dataclass(frozen=True, slots=True)
class TranscriptResult:
    """AddTranscript, released in chunk order (``shared.kwikmotion.results``). ``raw`` is the
    message for ``shared.captions.parse_result``, normalized: every seed field present
    (``derived`` names those we had to derive), times on the session clock (whatever time base
    the server uses) and clamped into the chunk (``clamped``)."""

    raw: dict[str, Any] = field(repr=False)
    chunk_index: int
    rtt: float | None = None  # seconds from sending chunk ``chunk_index`` to this transcript
    derived: tuple[str, ...] = ()  # among "word_count", "language", "times"
    clamped: bool = False

    @property
    def transcript(self) -> str:
        return self.raw["metadata"]["transcript"]


@dataclass(frozen=True, slots=True)
class TranslationResult:
    """AddTranslation, released in chunk order. The seed gives it no chunk index: it is the
    translation of the transcript with the same times and a translation owed in its language.
    ``raw`` is normalized: the transcript's times (session clock, clamped). An empty
    transcript's translation that never came is released as an empty one."""

    raw: dict[str, Any] = field(repr=False)
    target_language: str
    chunk_index: int

    @property
    def translation(self) -> str:
        return self.raw["metadata"]["translation"]


@dataclass(frozen=True, slots=True)
class ResultsMissing:
    """Chunk ``chunk_index`` was released without some of its results (``streams``: "transcript"
    or target codes): they never came within the wait (``reason`` "wait"), the session ended
    ("end_of_transcript"), or the server sends none for an empty transcript ("omitted_empty").
    ``empty``: the chunk's transcript is empty (its translations were released as empty ones)."""

    chunk_index: int
    streams: tuple[str, ...]
    reason: str
    empty: bool = False


@dataclass(frozen=True, slots=True)
class TimeBaseDetected:
    """The first result that tells what ``start_time``/``end_time`` count from: "session" (the
    session's first audio) or "chunk" (each chunk's own start)."""

    base: str
    chunk_index: int


@dataclass(frozen=True, slots=True)
class EndOfTranscript:
    reason: str


@dataclass(frozen=True, slots=True)
class KwikError:
    """An ``Error`` message; the session is over (state ``failed``)."""

    code: int | None
    type: str
    reason: str
    error_class: ErrorClass
    details: dict[str, Any] | None = None
    timestamp: float | None = None


@dataclass(frozen=True, slots=True)
class ProtocolViolation:
    """The server sent something the seed does not allow.

    ``fatal``: the session cannot go on (bad JSON, messages out of order, broken seq accounting):
    close and reconnect, which is why the class is RETRYABLE. Not fatal: the message was dropped
    (a malformed result, an unknown message type) and the session goes on.
    """

    reason: str
    fatal: bool
    error_class: ErrorClass = ErrorClass.RETRYABLE
    # Not fatal: why the message was dropped, a fixed set (metric label): "unknown_message", or
    # one of ``shared.kwikmotion.results.DROP_REASONS``.
    label: str = ""


@dataclass(frozen=True, slots=True)
class Timeout:
    """No RecognitionStarted ("start"), EndOfTranscript ("end") or AudioAdded ("ack") in time."""

    what: str
    error_class: ErrorClass = ErrorClass.RETRYABLE


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The WebSocket closed before EndOfTranscript (reported by the driver)."""

    code: int
    reason: str
    error_class: ErrorClass


Event = (
    RecognitionStarted
    | AudioAdded
    | TranscriptResult
    | TranslationResult
    | ResultsMissing
    | TimeBaseDetected
    | EndOfTranscript
    | KwikError
    | ProtocolViolation
    | Timeout
    | ConnectionClosed
)
