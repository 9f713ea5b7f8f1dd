from __future__ import annotations

import importlib
import importlib.metadata
import subprocess
import sys

from shared.cli import COMMANDS, available


def test_help_lists_only_subcommands_that_import() -> None:
    proc = subprocess.run([sys.executable, "-m", "shared.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode in (0, 2)
    for name, (module, _text) in COMMANDS.items():
        listed = f"    {name} " in proc.stdout
        assert listed == (name in available()), name
        if listed:
            assert callable(importlib.import_module(module).main)


def test_version() -> None:
    proc = subprocess.run([sys.executable, "-m", "shared.cli", "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"reachlive {importlib.metadata.version('reachlive')}"
