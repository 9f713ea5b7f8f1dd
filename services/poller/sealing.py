"""Each task's Kaltura ``accessKey`` sealed at rest (issue 19).

The accessKey is a KS on the *customer's* partner (facts.md): whoever reads it can get the task,
read and change the scheduled event's live features until it expires. The poller needs it for the
task's whole life, not once: provisioning (``get``, ``scheduleEvent.get``, ``updateLiveFeature``)
and then every reconcile check of a PROCESSING task (``get`` for its status, ``scheduleEvent.get``
for a moved window), which getJobs no longer lists. Not keeping it would mean an
``extendAccessKey`` (a write at Kaltura minting a fresh KS) per task per poll, so it is kept,
sealed:

- Fernet (``cryptography``: AES-128-CBC with HMAC-SHA256, a timestamped token) with the keys of
  ``REACHLIVE_POLLER_ENCRYPTION_KEYS``: the first seals, every one opens (``MultiFernet``), so a
  key is rotated by putting the new one first; reconcile re-seals what an older key sealed.
- The plaintext is ``<task id>:<accessKey>``: a sealed value copied onto another task's record
  does not open there.
- It lives in the task's record (``keys.TASK_ACCESS_KEY_SEALED``) while the task is live and is
  deleted when the task ends (READY invalidates it anyway) or is cancelled.
- A record of the previous version (plain ``keys.TASK_ACCESS_KEY``) is still read, and reconcile
  replaces it with the sealed field within one poll of the upgrade.
- A value no configured key opens (a key dropped too soon, a lost Secret) is treated like an
  expired accessKey: ``extendAccessKey`` with the vendor's own KS gives a fresh one.

Celery messages carry ids only: the worker re-reads the job from getJobs (vendor KS) to
provision, and the sealed key from the registry to check.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from shared.settings import PollerSettings, SettingsError

log = logging.getLogger(__name__)

VARIABLE = "REACHLIVE_POLLER_ENCRYPTION_KEYS"
KEY_REQUIRED = (
    f"{VARIABLE} is empty: set it (a Kubernetes Secret) to a Fernet key, which seals each task's Kaltura "
    "accessKey in Redis; every worker needs the same one (docs/operating.md 'Secrets' says how to make one)"
)


@dataclass(frozen=True)
class Opened:
    access_key: str
    stale: bool  # sealed with a key other than the first: re-seal with the first


class Sealer:
    """Seals and opens task accessKeys with the configured Fernet keys. Thread-safe."""

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        if not keys:
            raise ValueError("at least one key")
        fernets = [Fernet(k) for k in keys]
        self._first = fernets[0]
        self._any = MultiFernet(fernets)

    @classmethod
    def from_settings(cls, poller: PollerSettings) -> Sealer:
        """The configured keys, or a key of this process only when none is configured (the beat,
        which never opens one; library use). ``reachlive worker`` refuses to start without keys
        (``require_keys``): workers must share them."""
        keys = split_keys(poller.encryption_keys.get_secret_value())
        return cls(keys) if keys else cls.ephemeral()

    @classmethod
    def ephemeral(cls) -> Sealer:
        return cls([Fernet.generate_key()])

    def seal(self, task_id: str, access_key: str) -> str:
        return self._first.encrypt(f"{task_id}:{access_key}".encode()).decode()

    def open(self, task_id: str, sealed: str) -> Opened | None:
        """The accessKey, or None if no configured key opens it or it belongs to another task."""
        token = sealed.encode()
        stale = False
        try:
            plain = self._first.decrypt(token)
        except InvalidToken:
            try:
                plain = self._any.decrypt(token)
            except InvalidToken:
                return None
            stale = True
        owner, sep, access_key = plain.decode().partition(":")
        if not sep or owner != str(task_id):
            return None
        return Opened(access_key, stale)


def split_keys(value: str) -> list[str]:
    return [k.strip() for k in value.split(",") if k.strip()]


def new_key() -> str:
    return Fernet.generate_key().decode()


def require_keys(poller: PollerSettings) -> None:
    """``reachlive worker`` (and ``reachlive all`` on an external Redis): no keys, no start."""
    if not split_keys(poller.encryption_keys.get_secret_value()):
        raise SettingsError(KEY_REQUIRED)
