"""``reachlive``: one console command, a subcommand per deployable (docs/design.md section 6).

A subcommand is listed only if its module is installed, so ``--help`` shows only what works.
Each module exposes ``main(argv: list[str]) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import re
import sys

from shared.settings import SettingsError

# name → (module with main(argv), help)
COMMANDS: dict[str, tuple[str, str]] = {
    "poller": ("services.poller.main", "Celery beat: schedules the Kaltura REACH poll (one active leader)"),
    "worker": ("services.poller.worker", "Celery worker: poll, provision, reconcile, finalize"),
    "ingest": ("services.ingest.main", "RTMP(S) server: event media to 16 kHz PCM on Redis Streams"),
    "relay": ("services.relay.main", "KWIKmotion sessions: event audio to Kaltura caption responses"),
    "gateway": ("services.gateway.main", "caption WebSocket that Kaltura reads"),
    "all": ("services.all.main", "every service in one process tree, for one machine"),
    "demo": ("services.demo.main", "end-to-end demo on the emulators with the speech sample"),
    "emulate": ("emulators.main", "run an emulator: kaltura | kwikmotion"),
    "redis": ("shared.redis_cmd", "run the embedded Redis in the foreground and print its URL"),
    "check": ("services.check.main", "pre-flight checks against the real services: kwikmotion | kaltura"),
    "status": ("services.console.status", "every live and upcoming event, its tasks, publishers and sessions"),
    "event": ("services.console.event", "the history of one event"),
    "captions": ("services.console.captions", "export a task's captions: vtt | srt | json | txt"),
    "usage": ("services.console.usage", "usage records per task, for billing: csv | json"),
    "admin": ("services.console.admin", "step in: restart a session, disconnect, end media, resend, revoke"),
}


def plain(doc: str | None, paragraphs: int = 0) -> str:
    """A module docstring as a command's ``--help`` text: reST markup removed (double backquotes,
    bold), lines re-joined so argparse can wrap them; only the first ``paragraphs`` if given."""
    parts = [" ".join(p.split()) for p in (doc or "").strip().split("\n\n")]
    text = "\n\n".join(parts[:paragraphs] if paragraphs else parts)
    return re.sub(r"\*\*(.+?)\*\*", r"\1", text.replace("``", ""))


def available() -> dict[str, tuple[str, str]]:
    out = {}
    for name, (module, text) in COMMANDS.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            out[name] = (module, text)
    return out


def version() -> str:
    """The installed distribution's version (pyproject.toml), or "unknown" from a bare checkout."""
    try:
        return importlib.metadata.version("reachlive")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = available()
    parser = argparse.ArgumentParser(
        prog="reachlive",
        description="Live captions and live translations for Kaltura REACH. "
        "Settings come from REACHLIVE_* environment variables (see docs/operating.md).",
    )
    parser.add_argument("-V", "--version", action="version", version=f"reachlive {version()}")
    sub = parser.add_subparsers(dest="command", metavar="command", required=True)
    for name, (_module, text) in commands.items():
        sub.add_parser(name, help=text, add_help=False)
    if not argv or argv[0] in ("-h", "--help", "-V", "--version") or argv[0] not in commands:
        parser.parse_args(argv[:1] or ["--help"])
        return 2
    module = importlib.import_module(commands[argv[0]][0])
    try:
        return int(module.main(argv[1:]) or 0)
    except SettingsError as exc:
        print(f"reachlive {argv[0]}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
