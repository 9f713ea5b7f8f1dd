"""Kaltura sessions (KS) as the emulator issues and checks them (facts.md "Calls and permissions").

Kinds of KS:
- ``vendor``: the vendor partner's ADMIN (type 2) session, from ``session.start`` with its admin
  secret, from an app token (``appToken.startSession``), or generated locally by the official
  client (``KalturaClient.generateSession``, a KS v1 signed with the admin secret);
- ``vendor_user``: a USER (type 0) session of the vendor partner: not enough for REACH jobs;
- ``widget``: ``session.startWidgetSession`` (only good for ``appToken.startSession``);
- ``access_key``: a task's ``accessKey``, a session of the *customer* partner limited to the
  REACH vendor role, invalidated when the task becomes READY.

Strings look like Kaltura's KS v2 (``base64url("v2|<partnerId>|" + encrypted fields)``, so they
start with ``djJ8``); the emulator keeps the fields in a table instead of encrypting them.
Errors follow the server: unknown → ``INVALID_KS`` ``-1,INVALID_STR``; expired → ``-5,EXPIRED``;
invalidated → ``-6,LOGOUT`` (ks.php constants).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from dataclasses import dataclass

from emulators.kaltura.errors import KalturaAPIError, api_error

ADMIN = 2
USER = 0

INVALID_STR = (-1, "INVALID_STR")
EXPIRED = (-5, "EXPIRED")
LOGOUT = (-6, "LOGOUT")


@dataclass
class Session:
    ks: str
    kind: str  # vendor | vendor_user | widget | access_key
    partner_id: int
    session_type: int
    user_id: str
    expiry: int
    privileges: str = ""
    task_id: str | None = None
    event_id: int | None = None
    revoked: bool = False

    def info(self) -> dict[str, object]:
        """A KalturaSessionInfo."""
        return {
            "ks": self.ks,
            "sessionType": self.session_type,
            "partnerId": self.partner_id,
            "userId": self.user_id,
            "expiry": self.expiry,
            "privileges": self.privileges,
            "objectType": "KalturaSessionInfo",
        }


def new_ks_string(partner_id: int) -> str:
    head = f"v2|{partner_id}|".encode()
    # 72 bytes in all (a multiple of 3): 96 base64 characters and no '=', like the seed's accessKey.
    body = os.urandom(max(48, 72 - len(head)))
    return base64.urlsafe_b64encode(head + body).decode().rstrip("=")


class SessionStore:
    """Issued sessions by KS string. Not thread-safe: the emulator holds its lock around calls."""

    def __init__(self, vendor_partner_id: int, admin_secret: str) -> None:
        self.vendor_partner_id = vendor_partner_id
        self.admin_secret = admin_secret
        self.sessions: dict[str, Session] = {}

    def issue(
        self,
        kind: str,
        partner_id: int,
        expiry: int,
        *,
        session_type: int = ADMIN,
        user_id: str = "",
        privileges: str = "",
        task_id: str | None = None,
        event_id: int | None = None,
    ) -> Session:
        ks = new_ks_string(partner_id)
        session = Session(ks, kind, partner_id, session_type, user_id, int(expiry), privileges, task_id, event_id)
        self.sessions[ks] = session
        return session

    def validate(self, ks: str, now: float) -> Session:
        """The session of ``ks``, or the server's INVALID_KS."""
        session = self.sessions.get(ks) or self._v1(ks)
        if session is None:
            raise _invalid(ks, INVALID_STR)
        if session.revoked:
            raise _invalid(ks, LOGOUT)
        if session.expiry <= now:
            raise _invalid(ks, EXPIRED)
        return session

    def _v1(self, ks: str) -> Session | None:
        """A KS v1 the official client generated locally with the vendor's admin secret."""
        try:
            decoded = base64.b64decode(ks.encode(), validate=False)
            signature, info = decoded.split(b"|", 1)
            fields = info.decode().split(";")
            partner_id, expiry, session_type, user_id = int(fields[0]), int(fields[2]), int(fields[3]), fields[5]
            privileges = ";".join(fields[6:])
        except (ValueError, IndexError, UnicodeDecodeError, binascii.Error):
            return None
        if partner_id != self.vendor_partner_id:
            return None
        expected = hashlib.sha1(self.admin_secret.encode() + info).hexdigest().encode()
        if not hmac.compare_digest(expected, signature):
            return None
        kind = "vendor" if session_type == ADMIN else "vendor_user"
        return Session(ks, kind, partner_id, session_type, user_id, expiry, privileges)

    def expire(self, now: float, kind: str | None = None, task_id: str | None = None) -> int:
        """Make matching sessions expired (admin hook for tests). Returns how many."""
        count = 0
        for session in self.sessions.values():
            if (kind in (None, "all") or session.kind == kind) and (task_id is None or session.task_id == task_id):
                session.expiry = min(session.expiry, int(now) - 1)
                count += 1
        return count

    def revoke_task(self, task_id: str) -> None:
        for session in self.sessions.values():
            if session.task_id == task_id:
                session.revoked = True

    def drop_access_keys(self) -> None:
        self.sessions = {k: s for k, s in self.sessions.items() if s.kind != "access_key"}


def _invalid(ks: str, reason: tuple[int, str]) -> KalturaAPIError:
    return api_error("INVALID_KS", ks, reason[0], reason[1])
