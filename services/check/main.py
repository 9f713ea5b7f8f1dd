"""``reachlive check``: dispatch to one pre-flight check (each module has ``main(argv)``)."""

from __future__ import annotations

import importlib
import sys

CHECKS = {
    "kwikmotion": ("services.check.kwikmotion", "the speech service: authentication, languages, how results come"),
    "kaltura": ("services.check.kaltura", "the vendor partner: session, privileges, getJobs"),
}

HELP = """\
usage: reachlive check {kwikmotion,kaltura} [options]

Pre-flight checks against the real services, to run before the first real event.
Each reads the same REACHLIVE_* settings as the services, prints what the service
did, one finding per line, and ends with a verdict line. Secrets are never printed.

checks:
  kwikmotion   the speech service at REACHLIVE_KWIKMOTION_URL with the token of
               REACHLIVE_KWIKMOTION_TOKEN: sends the bundled speech sample and reports
               authentication, languages, time base, translations of empty chunks,
               result order, optional fields, unknown messages, latency p50/p95
  kaltura      the vendor partner at REACHLIVE_KALTURA_SERVICE_URL with
               REACHLIVE_KALTURA_PARTNER_ID and REACHLIVE_KALTURA_ADMIN_SECRET (or
               REACHLIVE_KALTURA_APP_TOKEN_ID + REACHLIVE_KALTURA_APP_TOKEN): starts the
               vendor session as the poller does, reads its privileges, calls getJobs
               and reports the pending/scheduled task counts or the call that failed

"reachlive check <check> --help" describes each check's options and output.

exit status: 0 when the pipeline can work with the service, 1 when it cannot,
2 on a usage or settings error.
"""


def main(argv: list[str]) -> int:
    if not argv:
        print(HELP, end="", file=sys.stderr)
        return 2
    if argv[0] in ("-h", "--help"):
        print(HELP, end="")
        return 0
    if argv[0] not in CHECKS:
        print(f"reachlive check: unknown check {argv[0]!r}\n\n{HELP}", end="", file=sys.stderr)
        return 2
    return int(importlib.import_module(CHECKS[argv[0]][0]).main(argv[1:]) or 0)
