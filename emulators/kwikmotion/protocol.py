"""The emulator's side of the seed, written from the seed alone (not from shared.kwikmotion, so a
misreading in our client is not mirrored here): server payloads, StartRecognition validation,
and the reference transcript replayed in step with the audio time received (``align="time"``;
``align.py`` finds the words in the audio itself)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# Seed, "Authentication Error Responses": the four payloads, field for field (timestamp added
# at send time). Each entry: type, reason, code, details, and the close (code, reason) we use.
# 401 and 403 are not valid WebSocket close codes (RFC 6455 section 7.4.2 reserves 0-999 and
# leaves 1000-2999 to the protocol), so those two close with 1008 Policy Violation and a reason
# starting "authentication_error:" after the Error JSON; the two 4001 cases close with 4001.
AUTH_MISSING = "missing"
AUTH_FORMAT = "format"
AUTH_EXPIRED = "expired"
AUTH_FORBIDDEN = "forbidden"

AUTH_ERRORS: dict[str, tuple[dict[str, Any], tuple[int, str]]] = {
    AUTH_MISSING: (
        {
            "type": "authentication_error",
            "reason": "Authentication required: Missing Authorization header",
            "code": 4001,
        },
        (4001, "authentication_error"),
    ),
    AUTH_FORMAT: (
        {
            "type": "authentication_error",
            "reason": "Authentication required: Invalid Authorization header format",
            "code": 4001,
        },
        (4001, "authentication_error"),
    ),
    AUTH_EXPIRED: (
        {
            "type": "authentication_error",
            "reason": "token_expired",
            "code": 401,
            "details": {"error": True, "message": "token_expired"},
        },
        (1008, "authentication_error: token_expired"),
    ),
    AUTH_FORBIDDEN: (
        {
            "type": "authentication_error",
            "reason": "Insufficient permissions for ailivecaptioning service",
            "code": 403,
            "details": {"error": True, "message": "subscription_required"},
        },
        (1008, "authentication_error: subscription_required"),
    ),
}

# Seed, "Error Codes": code → type, and the close code that ends the connection after it.
INVALID_MESSAGE = (4001, "invalid_message")
INVALID_MODEL = (4004, "invalid_model")
POLICY_VIOLATION = (1008, "policy_violation")
INTERNAL_ERROR = (1011, "internal_error")

AUDIO_TYPES = ("raw", "file")
ENCODING_WIDTH = {"pcm_s16le": 2, "pcm_f32le": 4, "mulaw": 1}  # bytes per mono sample


def error_payload(
    code: int, type_: str, reason: str, details: dict[str, Any] | None = None, now: float | None = None
) -> str:
    """An Error message in the seed's field order: message, type, reason, code, timestamp, details."""
    msg: dict[str, Any] = {
        "message": "Error",
        "type": type_,
        "reason": reason,
        "code": code,
        "timestamp": round(time.time() if now is None else now, 3),
    }
    if details is not None:
        msg["details"] = details
    return json.dumps(msg)


def check_authorization(header_values: list[str], query_token: str | None) -> tuple[str | None, str | None, str]:
    """Return (failure, token, via). failure is None or an AUTH_* key; via is header|query|none.

    Seed: the header is ``Authorization: Bearer <token>`` ("prefixed with Bearer (note the
    space)"). The seed's browser example passes ``?token=`` instead; it is honoured only when
    no header is sent, and ``via`` records which one a client used.
    """
    if not header_values:
        if query_token:
            return None, query_token, "query"
        return AUTH_MISSING, None, "none"
    if len(header_values) != 1:
        return AUTH_FORMAT, None, "header"
    value = header_values[0]
    scheme, sep, token = value.partition(" ")
    if scheme != "Bearer" or not sep or not token or token != token.strip() or " " in token:
        return AUTH_FORMAT, None, "header"
    return None, token, "header"


@dataclass
class StartConfig:
    audio_type: str
    encoding: str
    sample_rate: int
    language: str
    targets: list[str]

    @property
    def width(self) -> int:
        return ENCODING_WIDTH[self.encoding]


class InvalidStart(Exception):
    def __init__(self, code: int, type_: str, reason: str) -> None:
        super().__init__(reason)
        self.code, self.type, self.reason = code, type_, reason


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_start(msg: dict[str, Any], languages: Iterable[str]) -> StartConfig:
    """Validate StartRecognition against the seed's parameter table; raise :class:`InvalidStart`
    with 4001 invalid_message or 4004 invalid_model "Unsupported language: <code>"."""
    supported = set(languages)

    def bad(reason: str) -> InvalidStart:
        return InvalidStart(*INVALID_MESSAGE, reason)

    audio = msg.get("audio_format")
    if not isinstance(audio, dict):
        raise bad("Missing required field: audio_format")
    for name in ("type", "encoding", "sample_rate"):
        if name not in audio:
            raise bad(f"Missing required field: audio_format.{name}")
    # isinstance first: a JSON list or object is unhashable and must not reach the lookups.
    if not isinstance(audio["type"], str) or audio["type"] not in AUDIO_TYPES:
        raise bad("Invalid audio_format.type: must be 'raw' or 'file'")
    if not isinstance(audio["encoding"], str) or audio["encoding"] not in ENCODING_WIDTH:
        raise bad("Invalid audio_format.encoding: must be 'pcm_s16le', 'pcm_f32le' or 'mulaw'")
    if not _is_int(audio["sample_rate"]) or not 0 < audio["sample_rate"] <= 192000:
        raise bad("Invalid audio_format.sample_rate: must be a positive integer")
    config = msg.get("transcription_config")
    if not isinstance(config, dict) or "language" not in config:
        raise bad("Missing required field: transcription_config.language")
    language = config["language"]
    if not isinstance(language, str):
        raise bad("Invalid transcription_config.language: must be a string")
    targets: list[str] = []
    if "translation_config" in msg:
        tconf = msg["translation_config"]
        if not isinstance(tconf, dict) or not isinstance(tconf.get("target_languages", []), list):
            raise bad("Invalid translation_config.target_languages: must be an array of strings")
        targets = tconf.get("target_languages", [])
        if not all(isinstance(t, str) for t in targets):
            raise bad("Invalid translation_config.target_languages: must be an array of strings")
    for code in [language, *targets]:
        if code not in supported:
            raise InvalidStart(*INVALID_MODEL, f"Unsupported language: {code[:32]}")
    return StartConfig(audio["type"], audio["encoding"], audio["sample_rate"], language, list(dict.fromkeys(targets)))


class ReferenceScript:
    """The reference transcript's words spread evenly over ``seconds`` of audio, looped.

    Word k starts at sample ``k * R // n`` (R = samples in ``seconds``, n = words): a chunk
    covering samples [s0, s1) gets exactly the words starting inside it, so any chunking of the
    same audio yields the same words, in order, each once.
    """

    def __init__(self, text: str, seconds: float) -> None:
        if seconds <= 0:
            raise ValueError("reference_seconds must be positive")
        self.words = text.split()
        self.seconds = seconds

    def words_between(self, s0: int, s1: int, sample_rate: int) -> list[str]:
        n = len(self.words)
        total = max(1, round(self.seconds * sample_rate))
        if not n or s1 <= s0:
            return []
        lo = -(-s0 * n // total)  # ceil(s0 * n / R): first k with k*R//n >= s0
        hi = -(-s1 * n // total)
        return [self.words[k % n] for k in range(lo, hi)]
