"""``reachlive emulate kaltura|kwikmotion``: the emulators of the two outside services."""

from __future__ import annotations

import importlib
import sys

EMULATORS = {
    "kaltura": "emulators.kaltura.main",
    "kwikmotion": "emulators.kwikmotion.main",
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in EMULATORS:
        print(f"usage: reachlive emulate {{{'|'.join(EMULATORS)}}} [options]", file=sys.stderr)
        return 2
    return int(importlib.import_module(EMULATORS[argv[0]]).main(argv[1:]) or 0)
