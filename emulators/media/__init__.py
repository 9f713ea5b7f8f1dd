"""The speech sample used by the demo, the restreamer and the tests (see README.md here)."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
JFK_FLAC = HERE / "jfk.flac"
JFK_TEXT = (HERE / "jfk.txt").read_text().strip()
