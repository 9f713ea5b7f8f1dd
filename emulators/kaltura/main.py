"""``reachlive emulate kaltura``: the Kaltura EMULATOR as a process (for tests, demos, compose).

Prints ``KALTURA_EMULATOR_URL=http://host:port`` on stdout once it listens, then serves until
SIGTERM/SIGINT. Logs (labelled "Kaltura EMULATOR") go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading

from emulators.kaltura.server import BANNER, KalturaEmulator
from shared.logs import setup_logging


def _listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError("expected HOST:PORT")
    return host, int(port)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="reachlive emulate kaltura", description=f"{BANNER}: REACH + Schedule API")
    parser.add_argument("--listen", type=_listen, default=("127.0.0.1", 0), help="HOST:PORT (port 0: any free port)")
    parser.add_argument("--partner-id", type=int, default=5173642, help="the vendor partner id")
    parser.add_argument("--admin-secret", default="vendor-secret", help="the vendor partner's admin secret")
    parser.add_argument(
        "--app-token",
        action="append",
        default=[],
        metavar="ID=TOKEN",
        help="an app token (repeatable); TOKEN may be prefixed with its hash type, e.g. SHA1:value",
    )
    parser.add_argument("--ks-expiry", type=int, default=86400, help="maximum vendor KS lifetime, seconds")
    parser.add_argument("--access-key-expiry", type=int, default=7 * 86400, help="task accessKey lifetime, seconds")
    parser.add_argument(
        "--event",
        action="append",
        default=[],
        metavar="JSON",
        help="create a scheduled event at start (the body of POST /admin/events); repeatable",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)

    setup_logging("auto", args.log_level.upper(), "kaltura-emulator")
    tokens = {}
    for item in args.app_token:
        token_id, sep, value = item.partition("=")
        if not sep:
            parser.error("--app-token expects ID=TOKEN")
        tokens[token_id] = value
    host, port = args.listen
    emu = KalturaEmulator(
        host=host,
        port=port,
        partner_id=args.partner_id,
        admin_secret=args.admin_secret,
        app_tokens=tokens,
        ks_expiry_seconds=args.ks_expiry,
        access_key_expiry_seconds=args.access_key_expiry,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    emu.start()
    for spec in args.event:
        created = emu.create_event(json.loads(spec))
        print(f"KALTURA_EMULATOR_EVENT={json.dumps(created)}", flush=True)
    print(f"KALTURA_EMULATOR_URL={emu.url}", flush=True)
    logging.getLogger("emulators.kaltura").info("%s ready: %s (admin surface under /admin/)", BANNER, emu.url)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
