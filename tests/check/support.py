"""Run ``reachlive check ...`` as a real child process (no mocks of our own components)."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass

from shared.child import ROOT


@dataclass
class Run:
    code: int
    out: str
    err: str

    def row(self, name: str) -> str:
        """The value of the report line ``  <name>   <value>``."""
        for line in self.out.splitlines():
            if line.startswith(f"  {name} "):
                return line[len(name) + 2 :].strip()
        raise AssertionError(f"no {name!r} line in:\n{self.out}")


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any REACHLIVE_* setting of the machine, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REACHLIVE_")}
    return {**env, "REACHLIVE_LOG_FORMAT": "json", **extra}


async def run_check(args: list[str], env: dict[str, str], timeout: float = 120.0) -> Run:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shared.cli", "check", *args, cwd=ROOT, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())
