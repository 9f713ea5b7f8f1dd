"""Child processes and ports: the one home for what ``reachlive all``, the embedded Redis, the
demo, the benches and the tests use to start a process and wait for it (issue 21).

``Service`` runs a reachlive command as a real child process with its log in a file; every
child started through here gets ``PR_SET_PDEATHSIG`` (``die_with_parent``), so it dies with the
process that started it even when that one is SIGKILLed: no orphan keeps a port or a lock.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn``: between fork and exec, ask the kernel to SIGTERM the child when its parent
    dies (Linux; a no-op elsewhere would hide orphans, so it is only passed on posix)."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now (the kernel's pick): a child told to listen on it gets it unless another
    process takes it first, which on one test machine does not happen in practice."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0, host: str = "127.0.0.1") -> None:
    """Until something accepts connections on ``host:port``; TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout:.0f} s")


class Service:
    """``reachlive <args>`` in a child process with extra environment; logs (JSON) go to a file."""

    def __init__(self, args: list[str], env: dict[str, str], log_dir: Path, name: str | None = None) -> None:
        self.args = args
        self.name = name or args[0]
        self.log_path = Path(log_dir) / f"{self.name}-{time.monotonic_ns()}.log"
        full_env = {**os.environ, "REACHLIVE_LOG_FORMAT": "json", "REACHLIVE_METRICS_PORT": "0", **env}
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shared.cli", *args],
            cwd=ROOT,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent if os.name == "posix" else None,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up (crash test)."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, then SIGKILL past ``timeout`` s; the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
