"""Error classification (docs/design.md section 4): permanent, configuration fault, retryable."""

from __future__ import annotations

import pytest

from shared.kwikmotion import SUPPORTED_LANGUAGES, ErrorClass, classify_close, classify_error, is_supported_language


@pytest.mark.parametrize(
    ("code", "type_", "reason", "expected"),
    [
        (4001, "invalid_message", "Malformed JSON", ErrorClass.PERMANENT),
        (4004, "invalid_model", "Unsupported language: xyz", ErrorClass.PERMANENT),
        (4001, "authentication_error", "Authentication required: Missing Authorization header", ErrorClass.CONFIG),
        (401, "authentication_error", "token_expired", ErrorClass.CONFIG),
        (403, "authentication_error", "Insufficient permissions for ailivecaptioning service", ErrorClass.CONFIG),
        (401, "", "", ErrorClass.CONFIG),
        (4001, "", "Authentication required: Invalid Authorization header format", ErrorClass.CONFIG),
        (4001, "", "bad input", ErrorClass.PERMANENT),
        (None, "invalid_model", "", ErrorClass.PERMANENT),
        (1008, "policy_violation", "Server at capacity", ErrorClass.RETRYABLE),
        (1011, "internal_error", "Server processing error", ErrorClass.RETRYABLE),
        (5000, "whatever", "", ErrorClass.RETRYABLE),
        (None, "", "", ErrorClass.RETRYABLE),
    ],
)
def test_classify_error(code: int | None, type_: str, reason: str, expected: ErrorClass) -> None:
    assert classify_error(code, type_, reason) is expected


@pytest.mark.parametrize(
    ("code", "reason", "expected"),
    [
        (1000, "", ErrorClass.RETRYABLE),  # closed before EndOfTranscript
        (1001, "going away", ErrorClass.RETRYABLE),
        (1006, "", ErrorClass.RETRYABLE),  # dropped, no close frame
        (1008, "policy_violation", ErrorClass.RETRYABLE),  # at capacity
        (1011, "internal_error", ErrorClass.RETRYABLE),
        (4004, "invalid_model", ErrorClass.PERMANENT),
        (4001, "invalid_message", ErrorClass.PERMANENT),
        (4001, "authentication_error", ErrorClass.CONFIG),
        (1008, "authentication_error: token_expired", ErrorClass.CONFIG),
        (1008, "authentication_error: subscription_required", ErrorClass.CONFIG),
        (401, "", ErrorClass.CONFIG),
        (403, "", ErrorClass.CONFIG),
        (4401, "", ErrorClass.CONFIG),
        (4403, "", ErrorClass.CONFIG),
        (4999, "", ErrorClass.RETRYABLE),
    ],
)
def test_classify_close(code: int, reason: str, expected: ErrorClass) -> None:
    assert classify_close(code, reason) is expected


def test_languages_are_the_seeds_table() -> None:
    assert len(SUPPORTED_LANGUAGES) == 59 == len(set(SUPPORTED_LANGUAGES))
    for code in ("en", "ar", "fr", "nl", "kmr", "ckb", "zh", "cy"):
        assert is_supported_language(code)
    for code in ("xyz", "EN", "en-US", "", "eng"):
        assert not is_supported_language(code)
