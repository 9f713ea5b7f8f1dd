"""Typed Kaltura errors: codes kept, retryable or not, secrets redacted, picklable for Celery."""

from __future__ import annotations

import pickle

import pytest

from shared.kaltura import errors
from shared.kaltura.errors import KalturaPermanentError, KalturaRetryableError, make_error, redact

RETRYABLE = [
    errors.CANNOT_UPDATE_SCHEDULE_EVENT_FEATURE,
    errors.INTERNAL_SERVERL_ERROR,
    errors.NETWORK,
    errors.HTTP_ERROR,
    errors.BAD_RESPONSE,
]
PERMANENT = [
    errors.ENTRY_VENDOR_TASK_NOT_FOUND,
    errors.ENTRY_VENDOR_TASK_ITEM_COULD_NOT_BE_UPDATED,
    errors.CANNOT_UPDATE_STATUS_OF_TASK_WHICH_IS_IN_FINAL_STATE,
    errors.CANNOT_EXTEND_ACCESS_KEY,
    errors.FEATURE_NAME_NOT_FOUND,
    errors.SCHEDULE_EVENT_ID_NOT_FOUND,
    errors.INVALID_OBJECT_ID,
    errors.SERVICE_FORBIDDEN,
    errors.MISSING_KS,
    errors.INVALID_KS,
]


@pytest.mark.parametrize("code", RETRYABLE)
def test_retryable(code: str) -> None:
    exc = make_error(code, "m", service="s", action="a")
    assert isinstance(exc, KalturaRetryableError) and exc.retryable and exc.code == code


@pytest.mark.parametrize("code", PERMANENT)
def test_permanent(code: str) -> None:
    exc = make_error(code, "m")
    assert isinstance(exc, KalturaPermanentError) and not exc.retryable and exc.code == code


def test_expired_ks_is_matched_in_the_message() -> None:
    assert make_error(errors.INVALID_KS, 'Invalid KS "abc" Error "-1,EXPIRED"').expired_ks
    assert not make_error(errors.INVALID_KS, 'Invalid KS "abc" Error "-3,INVALID_SIGNATURE"').expired_ks
    assert not make_error(errors.SERVICE_FORBIDDEN, "EXPIRED").expired_ks


def test_redaction() -> None:
    ks = "djJ8NTE3MzY0MnxTECRETKSVALUE"
    assert ks not in redact(f'Invalid KS "{ks}" Error "-1,EXPIRED"')
    assert "EXPIRED" in redact(f'Invalid KS "{ks}" Error "-1,EXPIRED"')
    assert ks not in redact(f"something about {ks}", ks)


def test_pickles_with_type_and_code() -> None:
    exc = make_error(errors.CANNOT_UPDATE_SCHEDULE_EVENT_FEATURE, "locked", service="s", action="a")
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is KalturaRetryableError and back.code == exc.code and back.action == "a"
