"""``reachlive emulate kwikmotion``: run the KWIKmotion EMULATOR until SIGTERM/SIGINT.

Prints ``KWIKMOTION_EMULATOR_URL=ws[s]://<host>:<port>/`` on stdout once listening (``--listen
127.0.0.1:0`` picks a free port), so a test or script can read where it is.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import ssl
import sys
from pathlib import Path

from emulators.kwikmotion.server import BANNER, KwikmotionEmulator
from emulators.kwikmotion.variants import EMPTY_TRANSLATIONS, HOLD_SECONDS, TIMES, VARIANT_NAMES
from emulators.media import JFK_TEXT
from shared.logs import setup_logging


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="reachlive emulate kwikmotion",
        description=f"{BANNER}: the KWIKmotion AI Live Captions WebSocket API, for tests and demos only.",
    )
    parser.add_argument("--listen", default="127.0.0.1:8765", help="host:port (port 0 = any free port)")
    parser.add_argument(
        "--token",
        default=os.environ.get("REACHLIVE_KWIKMOTION_TOKEN", ""),
        help="the accepted bearer token (default: $REACHLIVE_KWIKMOTION_TOKEN)",
    )
    parser.add_argument("--forbidden-token", action="append", default=[], help="a token answered with 403")
    parser.add_argument("--max-sessions", type=int, default=100)
    parser.add_argument("--reference-file", type=Path, help="reference transcript (default: the JFK sample)")
    parser.add_argument("--reference-seconds", type=float, default=11.0, help="words spread over (--align time)")
    parser.add_argument(
        "--reference-audio",
        type=Path,
        help="the recording of the reference transcript (default: the JFK sample, with its transcript)",
    )
    parser.add_argument(
        "--align",
        choices=("auto", "audio", "time"),
        default="auto",
        help="audio: the words heard where each chunk matches the reference audio; time: the words "
        "replayed by the session's audio time; auto (default): audio when there is reference audio",
    )
    readings = parser.add_argument_group(
        "readings of the seed (issue 17; see emulators/kwikmotion/README.md)",
        "Each picks how the emulator reads one point the seed leaves open; a flag overrides --variant's.",
    )
    readings.add_argument("--variant", choices=VARIANT_NAMES, help="a named set of the readings below (default: seed)")
    readings.add_argument(
        "--times", choices=TIMES, help="start_time/end_time count from the session (default) or from the chunk's start"
    )
    readings.add_argument(
        "--reorder",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="even chunks' results come after the next chunk's results",
    )
    readings.add_argument(
        "--empty-translations",
        choices=EMPTY_TRANSLATIONS,
        help="send (default) an empty AddTranslation for an empty transcript, or omit it",
    )
    readings.add_argument(
        "--sparse",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="odd chunks' AddTranscript lack word_count and language",
    )
    readings.add_argument(
        "--boundary",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a chunk's last word is reported with the next chunk, whose start_time is then up to 1 s earlier",
    )
    readings.add_argument(
        "--extra-messages",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="unlisted messages: Info after RecognitionStarted, AddPartialTranscript per chunk",
    )
    readings.add_argument(
        "--hold-seconds",
        type=float,
        default=HOLD_SECONDS,
        help=f"held results (--reorder, --boundary) go out after this long without audio (default {HOLD_SECONDS:g})",
    )
    parser.add_argument("--ping-interval", type=float, default=20.0)
    parser.add_argument("--ping-timeout", type=float, default=30.0)
    parser.add_argument("--tls-cert", help="PEM certificate: serve wss:// (the seed's scheme)")
    parser.add_argument("--tls-key", help="PEM private key for --tls-cert")
    parser.add_argument("--log-level", default=os.environ.get("REACHLIVE_LOG_LEVEL", "INFO"))
    parser.add_argument("--log-format", default=os.environ.get("REACHLIVE_LOG_FORMAT", "auto"))
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = _parse(argv)
    host, sep, port = args.listen.rpartition(":")
    if not sep or not port.isdigit():
        print("reachlive emulate kwikmotion: --listen must be host:port", file=sys.stderr)
        return 2
    if not args.token:
        print("reachlive emulate kwikmotion: --token (or REACHLIVE_KWIKMOTION_TOKEN) is required", file=sys.stderr)
        return 2
    setup_logging(args.log_format, args.log_level, "kwikmotion-emulator")
    text = args.reference_file.read_text().strip() if args.reference_file else JFK_TEXT
    if args.align == "audio" and args.reference_audio is None and text.split() != JFK_TEXT.split():
        print("reachlive emulate kwikmotion: --align audio needs --reference-audio", file=sys.stderr)
        return 2
    context = None
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
    emu = KwikmotionEmulator(
        host=host.strip("[]") or "127.0.0.1",
        port=int(port),
        token=args.token,
        max_sessions=args.max_sessions,
        reference_text=text,
        reference_seconds=args.reference_seconds,
        ping_interval=args.ping_interval,
        ping_timeout=args.ping_timeout,
        forbidden_tokens=args.forbidden_token,
        ssl_context=context,
        reference_audio=args.reference_audio,
        align=args.align,
        variant=args.variant,
        times=args.times,
        reorder=args.reorder,
        empty_translations=args.empty_translations,
        sparse=args.sparse,
        boundary=args.boundary,
        extra_messages=args.extra_messages,
        hold_seconds=args.hold_seconds,
    )
    return asyncio.run(_run(emu))


async def _run(emu: KwikmotionEmulator) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await emu.start()
    print(f"{BANNER} (not the real service) listening", flush=True)
    print(f"KWIKMOTION_EMULATOR_URL={emu.url}", flush=True)
    print(f"KWIKMOTION_EMULATOR_VARIANT={emu.variant.describe()}", flush=True)
    await stop.wait()
    await emu.stop()
    return 0
