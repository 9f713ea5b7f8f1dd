"""KWIKmotion AI Live Captions protocol, sans-I/O (seed: kwikmotion-live-captions-api.txt).

The relay drives :class:`KwikSession` over a WebSocket it owns; the emulator shares only the
language list and the seed's constants.
"""

from shared.kwikmotion.errors import (
    AUTHENTICATION_ERROR,
    INTERNAL_ERROR,
    INVALID_MESSAGE,
    INVALID_MODEL,
    POLICY_VIOLATION,
    ErrorClass,
    classify_close,
    classify_error,
)
from shared.kwikmotion.events import (
    AudioAdded,
    ConnectionClosed,
    EndOfTranscript,
    Event,
    KwikError,
    KwikProtocolError,
    ProtocolViolation,
    RecognitionStarted,
    ResultsMissing,
    TimeBaseDetected,
    Timeout,
    TranscriptResult,
    TranslationResult,
)
from shared.kwikmotion.languages import SUPPORTED_LANGUAGES, is_supported_language
from shared.kwikmotion.messages import BYTES_PER_SAMPLE, ENCODINGS
from shared.kwikmotion.results import DROP_REASONS, MISSING_REASONS, TIME_BASES, ChunkResults
from shared.kwikmotion.session import KwikSession, State

__all__ = [
    "AUTHENTICATION_ERROR",
    "BYTES_PER_SAMPLE",
    "DROP_REASONS",
    "ENCODINGS",
    "INTERNAL_ERROR",
    "INVALID_MESSAGE",
    "INVALID_MODEL",
    "MISSING_REASONS",
    "POLICY_VIOLATION",
    "SUPPORTED_LANGUAGES",
    "TIME_BASES",
    "AudioAdded",
    "ChunkResults",
    "ConnectionClosed",
    "EndOfTranscript",
    "ErrorClass",
    "Event",
    "KwikError",
    "KwikProtocolError",
    "KwikSession",
    "ProtocolViolation",
    "RecognitionStarted",
    "ResultsMissing",
    "State",
    "TimeBaseDetected",
    "Timeout",
    "TranscriptResult",
    "TranslationResult",
    "classify_close",
    "classify_error",
    "is_supported_language",
]
