"""Runs reachlive services as child processes of one parent, restarts a child that dies, and
stops all of them on SIGTERM/SIGINT (children also get PR_SET_PDEATHSIG, so a SIGKILLed parent
leaves no orphans)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from shared.child import die_with_parent

log = logging.getLogger(__name__)


@dataclass
class Child:
    name: str
    args: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = field(default=0.0)
    log_path: Path | None = None  # append the child's output here instead of inheriting stdout

    def start(self) -> None:
        out = open(self.log_path, "ab") if self.log_path else None
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "shared.cli", *self.args],
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT if out else None,
                preexec_fn=die_with_parent,
            )
        finally:
            if out:
                out.close()
        self.started_at = time.monotonic()
        log.info("started %s", self.name, extra={"pid": self.proc.pid})

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Supervisor:
    def __init__(self, children: list[Child], max_backoff: float = 30.0) -> None:
        self.children = children
        self.max_backoff = max_backoff
        self.stopping = threading.Event()

    def run(self) -> int:
        for child in self.children:
            child.start()
        while not self.stopping.wait(0.2):
            for child in self.children:
                self._watch(child)
        return self.shutdown()

    def _watch(self, child: Child) -> None:
        if child.alive():
            return
        now = time.monotonic()
        if child.next_start == 0.0:
            code = child.proc.returncode if child.proc else None
            # Quick deaths back off exponentially; a child that ran a while restarts at once.
            ran = now - child.started_at
            child.restarts = 0 if ran > 60 else child.restarts + 1
            delay = min(self.max_backoff, 0.5 * 2**child.restarts) if child.restarts else 0.0
            child.next_start = now + delay
            log.warning("%s exited with %s; restarting in %.1fs", child.name, code, delay)
        if now >= child.next_start:
            child.next_start = 0.0
            child.start()

    def shutdown(self, timeout: float = 30.0) -> int:
        for child in self.children:
            if child.alive():
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in self.children:
            if child.proc is None:
                continue
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time; killing it", child.name)
                child.proc.kill()
                child.proc.wait()
        return 0
