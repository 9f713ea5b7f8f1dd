"""``reachlive check kaltura``: an operator's pre-flight against the vendor partner (issue 17).

Starts the vendor session exactly as the poller does (``shared.kaltura.KalturaFacade``: the
admin secret, or the app token when one is configured), reads the session back
(``session.get``: partner, type, privileges), lists the PENDING and SCHEDULED tasks with
``reach_entryvendortask.getJobs`` as the poller's beat does, and reads the first listed task
with its own accessKey (``reach_entryvendortask.get``, the ``reach_vendor`` profile) as
provisioning does. Every failure is printed with the call that failed and Kaltura's code and
message (secrets redacted). Exit 0 only when the poller could work.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from shared.kaltura import KalturaError, KalturaFacade
from shared.kaltura.models import LIVE_CAPTION, LIVE_TRANSLATION, PENDING, SCHEDULED, VendorTask
from shared.settings import KalturaSettings, load

STATUS_NAMES = {PENDING: "PENDING", SCHEDULED: "SCHEDULED"}
SESSION_TYPES = {0: "USER", 2: "ADMIN"}
FEATURE_NAMES = {LIVE_CAPTION: "live caption", LIVE_TRANSLATION: "live translation"}
# What an operator does about the codes a pre-flight meets.
HINTS = {
    "START_SESSION_ERROR": "check REACHLIVE_KALTURA_PARTNER_ID and REACHLIVE_KALTURA_ADMIN_SECRET",
    "APP_TOKEN_ID_NOT_FOUND": "check REACHLIVE_KALTURA_APP_TOKEN_ID (and that the token belongs to the partner)",
    "INVALID_APP_TOKEN_HASH": "check REACHLIVE_KALTURA_APP_TOKEN and REACHLIVE_KALTURA_APP_TOKEN_HASH_TYPE",
    "SERVICE_FORBIDDEN": "the session lacks the permission for this call: the partner must be a REACH vendor "
    "(ask Kaltura), and an app token needs a privilege allowing it",
    "INVALID_KS": "the session was refused: check the credentials and the service URL",
    "NETWORK": "check REACHLIVE_KALTURA_SERVICE_URL and the network path to it",
    "HTTP_ERROR": "the service URL answered with an HTTP error: check REACHLIVE_KALTURA_SERVICE_URL",
    "BAD_RESPONSE": "not a Kaltura API answer: check REACHLIVE_KALTURA_SERVICE_URL",
}

DESCRIPTION = """\
Pre-flight check of the Kaltura vendor partner, to run before the first real event.

Uses the poller's settings: REACHLIVE_KALTURA_SERVICE_URL (or --url), REACHLIVE_KALTURA_PARTNER_ID
and REACHLIVE_KALTURA_ADMIN_SECRET, or REACHLIVE_KALTURA_APP_TOKEN_ID + REACHLIVE_KALTURA_APP_TOKEN
(the app token wins when both are set, as in the poller). Secrets are never printed. It prints:

  partner           the configured vendor partner id and service URL
  credentials       admin secret or app token (its id only)
  vendor session    started, or the call that failed (session.start, or
                    session.startWidgetSession / apptoken.startSession) with Kaltura's code
  session           the session as Kaltura reads it back (session.get): partner, type (the
                    poller needs ADMIN), expiry, and the privileges it carries
  getJobs           reach_entryvendortask.getJobs for PENDING and SCHEDULED tasks: the counts by
                    status and feature, or the error (e.g. SERVICE_FORBIDDEN: the partner lacks
                    the REACH vendor permission)
  task access       reach_entryvendortask.get of the first listed task with its accessKey and the
                    reach_vendor response profile, as provisioning reads it (skipped without tasks)
  verdict           OK when the poller could work, NOT OK with the first failure otherwise

Exit status: 0 when OK, 1 when not, 2 on a usage or settings error.
"""


@dataclass
class KalturaReport:
    rows: list[tuple[str, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def row(self, name: str, value: str) -> None:
        self.rows.append((name, value))

    def fail(self, name: str, exc: KalturaError) -> None:
        text = f"{exc.service}.{exc.action} failed: {exc.code}: {exc.message}".rstrip(": ")
        hint = HINTS.get(exc.code)
        self.rows.append((name, f"FAILED: {text}" + (f" ({hint})" if hint else "")))
        self.failures.append(text)


def run_checks(facade: KalturaFacade, settings: KalturaSettings, now: float | None = None) -> KalturaReport:
    """The calls, in the poller's order; stops at the first one the poller cannot do without."""
    rep = KalturaReport()
    rep.row("partner", f"{settings.partner_id} at {settings.service_url}")
    app_token = bool(settings.app_token_id and settings.app_token.get_secret_value())
    how = f"app token {settings.app_token_id} ({settings.app_token_hash_type})" if app_token else "admin secret"
    rep.row("credentials", how)
    try:
        ks = facade.session.ks()
    except KalturaError as exc:
        rep.fail("vendor session", exc)
        return rep
    rep.row("vendor session", "started (appToken.startSession)" if app_token else "started (session.start, ADMIN)")
    try:
        info = facade.call("session", "get", lambda c: c.session.get(), ks=ks)
    except KalturaError as exc:
        rep.row("session", f"not readable ({exc.service}.{exc.action}: {exc.code})")
    else:
        partner, kind = getattr(info, "partnerId", None), getattr(info, "sessionType", None)
        kind_value = getattr(kind, "value", kind)
        expiry = getattr(info, "expiry", None)
        left = f", expires in {int(expiry - (time.time() if now is None else now))} s" if expiry else ""
        kind_name = SESSION_TYPES.get(kind_value, str(kind_value))
        rep.row("session", f"partner {partner}, type {kind_name}{left}")
        rep.row("privileges", getattr(info, "privileges", "") or "(none)")
        if partner not in (None, settings.partner_id):
            rep.failures.append(f"the session is of partner {partner}, not the configured {settings.partner_id}")
    try:
        jobs = facade.get_jobs((PENDING, SCHEDULED))
    except KalturaError as exc:
        rep.fail("getJobs", exc)
        return rep
    rep.row("getJobs", _counts(jobs))
    first = next((j for j in jobs if j.access_key), None)
    if first is None:
        rep.row("task access", "skipped (no listed task with an accessKey)")
        return rep
    try:
        facade.get_task(first.id, first.access_key)
    except KalturaError as exc:
        rep.fail("task access", exc)
    else:
        rep.row("task access", f"ok: task {first.id} read with its accessKey (reach_vendor profile)")
    return rep


def _counts(jobs: list[VendorTask]) -> str:
    statuses = Counter(STATUS_NAMES.get(j.status, str(j.status)) for j in jobs)
    features = Counter(FEATURE_NAMES.get(j.service_feature, f"feature {j.service_feature}") for j in jobs)
    by_status = ", ".join(f"{name} {statuses.get(name, 0)}" for name in ("PENDING", "SCHEDULED"))
    by_feature = ", ".join(f"{name} {n}" for name, n in sorted(features.items()))
    return f"ok: {len(jobs)} task(s) ({by_status})" + (f"; {by_feature}" if by_feature else "")


def render(rep: KalturaReport, *secrets: str) -> list[str]:
    lines = ["reachlive check kaltura"]
    lines += [f"  {name:<17} {value}" for name, value in rep.rows]
    lines += [f"  problem: {text}" for text in rep.failures[1:]]
    if rep.failures:
        lines.append(f"verdict: NOT OK: {rep.failures[0]}")
    else:
        lines.append("verdict: OK: the poller can work with this partner")
    out = []
    for line in lines:
        for secret in secrets:
            if secret and len(secret) >= 4:
                line = line.replace(secret, "***")
        out.append(line)
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="reachlive check kaltura", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="the Kaltura service URL (default: $REACHLIVE_KALTURA_SERVICE_URL)")
    args = parser.parse_args(argv)
    settings = load(KalturaSettings, **({"service_url": args.url} if args.url else {}))
    secrets = (settings.admin_secret.get_secret_value(), settings.app_token.get_secret_value())
    if not settings.partner_id:
        print("reachlive check kaltura: REACHLIVE_KALTURA_PARTNER_ID is not set", file=sys.stderr)
        return 2
    if not any(secrets) or (not secrets[0] and not settings.app_token_id):
        print(
            "reachlive check kaltura: set REACHLIVE_KALTURA_ADMIN_SECRET, or REACHLIVE_KALTURA_APP_TOKEN_ID and "
            "REACHLIVE_KALTURA_APP_TOKEN",
            file=sys.stderr,
        )
        return 2
    rep = run_checks(KalturaFacade(settings), settings)
    for line in render(rep, *secrets):
        print(line, flush=True)
    return 1 if rep.failures else 0
