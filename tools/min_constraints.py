"""Print pip constraints pinning every direct dependency of pyproject.toml to its lower bound.

``make test-min`` installs the project with these constraints and runs the suite, so each ``>=``
in pyproject.toml is a version the tests ran with, not a guess. Usage::

    python tools/min_constraints.py [--extra dev] [pyproject.toml] > constraints.txt

Only the runtime ``dependencies`` are pinned unless ``--extra NAME`` is given: they are what a
deployment installs; the test tools (the ``dev`` extra) stay at the newest allowed release.
Transitive dependencies are left to pip (the lowest direct versions must work with what pip
picks for them today, which is what a fresh install of the lowest versions would get).
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement


def lower_bound(req: Requirement) -> str:
    """The version named by the requirement's ``>=`` (or ``==``/``~=``) clause."""
    for spec in req.specifier:
        if spec.operator in (">=", "==", "~=", "==="):
            return spec.version
    raise ValueError(f"{req.name}: no lower bound (>=) to test with: {req}")


def constraints(pyproject: Path, extras: list[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    lines = list(project.get("dependencies", []))
    for extra in extras:
        lines += project.get("optional-dependencies", {})[extra]
    pins = []
    for line in lines:
        req = Requirement(line)
        # Constraints files take no extras ("redis[hiredis]"): the pin is on the distribution.
        pins.append(f"{req.name}=={lower_bound(req)}")
    return pins


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pyproject", nargs="?", type=Path, default=Path("pyproject.toml"))
    parser.add_argument("--extra", action="append", default=[], help="also pin this optional-dependencies group")
    args = parser.parse_args(argv)
    try:
        pins = constraints(args.pyproject, args.extra)
    except ValueError as exc:
        print(f"min_constraints: {exc}", file=sys.stderr)
        return 2
    print("\n".join(pins))
    return 0


if __name__ == "__main__":
    sys.exit(main())
