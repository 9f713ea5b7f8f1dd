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
    """AddTranscript; ``raw`` is the whole message for ``shared.captions.parse_result``."""

    raw: dict[str, Any] = field(repr=False)
    chunk_index: int
    rtt: float | None = None  # seconds from sending chunk ``chunk_index`` to this transcript

    @property
    def transcript(self) -> str:
        return self.raw["metadata"]["transcript"]


@dataclass(frozen=True, slots=True)
class TranslationResult:
    """AddTranslation. The seed gives it no chunk index, so ``chunk_index`` is that of the
    earliest transcript still owed a translation in this language (None if none is)."""

    raw: dict[str, Any] = field(repr=False)
    target_language: str
    chunk_index: int | None

    @property
    def translation(self) -> str:
        return self.raw["metadata"]["translation"]


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
    | EndOfTranscript
    | KwikError
    | ProtocolViolation
    | Timeout
    | ConnectionClosed
)
