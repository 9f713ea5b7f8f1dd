"""A dedicated redis-server for outage tests (issue 18): the embedded binary on a free port, with
AOF as production runs it, that a test stops and restarts with its data, or freezes (SIGSTOP)
and thaws. Never the session's shared Redis: other tests must not see the outage."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from shared.child import die_with_parent, free_port
from shared.embedded_redis import redis_server_binary


class OutageRedis:
    def __init__(self, data_dir: Path, port: int = 0) -> None:
        self.port = port or free_port()
        self.dir = Path(data_dir) / f"redis-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.frozen = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20.0) -> OutageRedis:
        args = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--loglevel", "warning",
            "--logfile", str(self.dir / "redis.log"),
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = self.dir / "redis.log"
                raise RuntimeError(f"redis-server exited: {log.read_text()[-500:] if log.exists() else ''}")
            if self.ping():  # +PONG, not -LOADING: the data is back
                return self
            time.sleep(0.05)
        raise RuntimeError(f"redis-server on {self.port} did not answer")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM: Redis flushes its AOF and exits (a clean restart keeps the data)."""
        if self.frozen:
            self.thaw()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def freeze(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)
        self.frozen = False

    def __enter__(self) -> OutageRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
