"""The commands and flags the deployment files run exist in the code (`reachlive … --help`)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
import yaml

from emulators.main import EMULATORS
from shared.cli import available
from tests.deploy.manifests import OVERLAYS, ROOT, render, workloads


def _commands() -> set[tuple[str, ...]]:
    out: set[tuple[str, ...]] = set()
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for svc in compose["services"].values():
        if "reachlive" in str(svc.get("image", "")):
            out.add(tuple(svc["command"]))
    for overlay in OVERLAYS:
        for w in workloads(render(f"overlays/{overlay}")):
            for c in w["spec"]["template"]["spec"]["containers"]:
                if "reachlive" in c["image"]:
                    out.add(tuple(c["args"]))
    return out


COMMANDS = sorted(_commands())


def test_all_deployed_commands_found() -> None:
    names = {c[0] for c in COMMANDS}
    assert {"poller", "worker", "ingest", "relay", "gateway", "emulate"} <= names


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_command_and_flags_exist(args: tuple[str, ...]) -> None:
    if args[0] not in available():
        pytest.skip(f"reachlive {args[0]}: module not written yet")
    # `emulate kaltura --listen X`: the subcommand words, then --help.
    words = list(args[:2]) if args[0] == "emulate" else [args[0]]
    if args[0] == "emulate" and importlib.util.find_spec(EMULATORS[args[1]]) is None:
        pytest.skip(f"emulator {args[1]}: module not written yet")
    out = subprocess.run(
        [sys.executable, "-m", "shared.cli", *words, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    for flag in (a for a in args if a.startswith("--")):
        assert flag in out.stdout, f"{flag} is not an option of reachlive {' '.join(words)}"
