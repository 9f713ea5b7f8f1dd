"""What a KWIKmotion error means for a session (docs/design.md section 4, seed "Error Codes").

Three classes decide what the relay does next:

- PERMANENT: the same request would fail again (4001 invalid_message: we sent something malformed;
  4004 invalid_model: unsupported language). The session's tasks fail with the reason.
- CONFIG: the credentials are wrong (authentication_error with 4001, 401 token_expired, 403
  subscription_required). Nothing the session does fixes it: alert and retry slowly, never spin.
- RETRYABLE: the server is busy or broke (1008 at capacity, 1011 internal_error, a dropped
  connection, anything unknown). Reconnect with backoff and replay the audio not yet transcribed.
"""

from __future__ import annotations

import enum

# Seed, "Error Codes" and "Authentication Error Responses".
INVALID_MESSAGE = 4001
INVALID_MODEL = 4004
POLICY_VIOLATION = 1008
INTERNAL_ERROR = 1011
AUTH_FAILED = 401
AUTH_FORBIDDEN = 403

AUTHENTICATION_ERROR = "authentication_error"

# Close codes some servers use to carry HTTP 401/403 (401/403 are not valid WebSocket close
# codes, RFC 6455 section 7.4); the emulator closes those cases with 1008 after the Error JSON.
_CONFIG_CLOSE_CODES = frozenset({AUTH_FAILED, AUTH_FORBIDDEN, 4401, 4403})
# Words in a close reason that mean the credentials were refused (the emulator's 1008 close
# reasons for 401/403 start with "authentication_error").
_AUTH_WORDS = ("authentication", "token_expired", "subscription_required", "permission", "unauthorized")


class ErrorClass(enum.StrEnum):
    PERMANENT = "permanent"
    CONFIG = "config"
    RETRYABLE = "retryable"


def classify_error(code: int | None, type_: str | None, reason: str = "") -> ErrorClass:
    """Classify one ``{"message": "Error", ...}`` payload by its code and type."""
    type_ = (type_ or "").lower()
    if type_ == AUTHENTICATION_ERROR or code in (AUTH_FAILED, AUTH_FORBIDDEN):
        return ErrorClass.CONFIG
    if code == INVALID_MESSAGE:
        # 4001 is shared by invalid_message and the two header authentication errors; an
        # unknown type falls back to the reason text.
        if type_ == "invalid_message":
            return ErrorClass.PERMANENT
        return ErrorClass.CONFIG if _mentions_auth(reason) else ErrorClass.PERMANENT
    if code == INVALID_MODEL or type_ in ("invalid_model", "invalid_message"):
        return ErrorClass.PERMANENT
    return ErrorClass.RETRYABLE


def classify_close(code: int, reason: str = "") -> ErrorClass:
    """Classify a WebSocket close (code and reason) that ended a session before EndOfTranscript.

    1000/1001/1006 (a normal close or a drop in mid-session), 1008 (capacity), 1011 (internal)
    and unknown codes are RETRYABLE; 4004 is PERMANENT; 4001 is CONFIG when its reason speaks
    of authentication and PERMANENT otherwise; 401/403 (and 4401/4403) are CONFIG, as is a 1008
    whose reason speaks of authentication (how the emulator closes after a 401/403 Error).
    """
    if code in _CONFIG_CLOSE_CODES:
        return ErrorClass.CONFIG
    if code == INVALID_MESSAGE:
        return ErrorClass.CONFIG if _mentions_auth(reason) else ErrorClass.PERMANENT
    if code == INVALID_MODEL:
        return ErrorClass.PERMANENT
    if code == POLICY_VIOLATION and _mentions_auth(reason):
        return ErrorClass.CONFIG
    return ErrorClass.RETRYABLE


def _mentions_auth(reason: str) -> bool:
    low = (reason or "").lower()
    return any(word in low for word in _AUTH_WORDS)
