"""Kaltura API errors as typed exceptions (docs/design.md section 2, item 6; facts.md "Wire format").

Every error keeps Kaltura's ``code`` and says whether a retry can help (``retryable``). Messages
never carry a secret: an ``INVALID_KS`` message quotes the KS (the server's template is
``Invalid KS "%KSID%" Error "%ERR_CODE%,%ERR_DESC%"``), so it is redacted on the way in.
"""

from __future__ import annotations

import re

# facts.md: the codes a vendor meets.
ENTRY_VENDOR_TASK_NOT_FOUND = "ENTRY_VENDOR_TASK_NOT_FOUND"
ENTRY_VENDOR_TASK_ITEM_COULD_NOT_BE_UPDATED = "ENTRY_VENDOR_TASK_ITEM_COULD_NOT_BE_UPDATED"
CANNOT_UPDATE_STATUS_OF_TASK_WHICH_IS_IN_FINAL_STATE = "CANNOT_UPDATE_STATUS_OF_TASK_WHICH_IS_IN_FINAL_STATE"
CANNOT_EXTEND_ACCESS_KEY = "CANNOT_EXTEND_ACCESS_KEY"
FEATURE_NAME_NOT_FOUND = "FEATURE_NAME_NOT_FOUND"
CANNOT_UPDATE_SCHEDULE_EVENT_FEATURE = "CANNOT_UPDATE_SCHEDULE_EVENT_FEATURE"
SCHEDULE_EVENT_ID_NOT_FOUND = "SCHEDULE_EVENT_ID_NOT_FOUND"
INVALID_OBJECT_ID = "INVALID_OBJECT_ID"
SERVICE_FORBIDDEN = "SERVICE_FORBIDDEN"
MISSING_KS = "MISSING_KS"
INVALID_KS = "INVALID_KS"
INTERNAL_SERVERL_ERROR = "INTERNAL_SERVERL_ERROR"  # sic: Kaltura spells it so

# Our own codes for failures below the Kaltura API (no KalturaAPIException came back).
NETWORK = "NETWORK"  # connection refused/reset, timeout
HTTP_ERROR = "HTTP_ERROR"  # a non-200 status (5xx from a proxy or the server)
BAD_RESPONSE = "BAD_RESPONSE"  # not a Kaltura XML envelope

# Transient: a retry (with backoff) can succeed. CANNOT_UPDATE_SCHEDULE_EVENT_FEATURE is the
# schedule event's lock, but the server also rethrows FEATURE_NAME_NOT_FOUND as it (facts.md),
# so its retries must be bounded and followed by a fresh look at the task (the poller does so).
RETRYABLE_CODES = frozenset(
    {
        CANNOT_UPDATE_SCHEDULE_EVENT_FEATURE,
        INTERNAL_SERVERL_ERROR,
        NETWORK,
        HTTP_ERROR,
        BAD_RESPONSE,
    }
)

_KS_IN_MESSAGE = re.compile(r'(Invalid KS )"[^"]*"', re.IGNORECASE)


def redact(message: str, *secrets: str) -> str:
    """Drop the quoted KS of an INVALID_KS message and any given secret from a message."""
    out = _KS_IN_MESSAGE.sub(r'\1"***"', message or "")
    for secret in secrets:
        if secret and len(secret) >= 8:
            out = out.replace(secret, "***")
    return out


class KalturaError(Exception):
    """A failed Kaltura call: ``code`` (Kaltura's, or NETWORK/HTTP_ERROR/BAD_RESPONSE), a redacted
    ``message``, ``service``/``action`` of the call, and ``retryable``."""

    retryable = False

    def __init__(self, code: str, message: str = "", *, service: str = "", action: str = "") -> None:
        self.code = code
        self.message = message
        self.service = service
        self.action = action
        super().__init__(f"{service}.{action}: {code}: {message}" if service else f"{code}: {message}")

    @property
    def expired_ks(self) -> bool:
        """INVALID_KS whose message says EXPIRED (there is no EXPIRED_KS code; facts.md)."""
        return self.code == INVALID_KS and "EXPIRED" in self.message.upper()

    def __reduce__(self):  # picklable across Celery's retry/failure handling
        return (_rebuild, (type(self), self.code, self.message, self.service, self.action))


def _rebuild(cls: type[KalturaError], code: str, message: str, service: str, action: str) -> KalturaError:
    return cls(code, message, service=service, action=action)


class KalturaRetryableError(KalturaError):
    """Transient: network, 5xx, INTERNAL_SERVERL_ERROR, the schedule event's feature lock."""

    retryable = True


class KalturaPermanentError(KalturaError):
    """A retry cannot help: the reason is worth telling a Kaltura admin."""


def make_error(code: str, message: str = "", *, service: str = "", action: str = "") -> KalturaError:
    cls = KalturaRetryableError if code in RETRYABLE_CODES else KalturaPermanentError
    return cls(code, message, service=service, action=action)
