from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

from shared.embedded_redis import EmbeddedRedis


def test_embedded_redis_supports_the_stream_commands(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path) as server:
        client = redis.Redis.from_url(server.url)
        first = client.xadd("s", {"n": "1"})
        client.xadd("s", {"n": "2"})
        client.xgroup_create("s", "g", id="0")
        got = client.xreadgroup("g", "c1", {"s": ">"}, count=1)
        assert got[0][1][0][0] == first
        time.sleep(0.05)
        # Redis 6.2 answers [next, entries]; 7.0 adds a third element (deleted ids).
        reply = client.xautoclaim("s", "g", "c2", min_idle_time=10, start_id="0")
        assert [entry[0] for entry in reply[1]] == [first]
        assert client.xclaim("s", "g", "c2", 0, [first], justid=True) == [first]
        version = client.info("server")["redis_version"]
        assert tuple(int(p) for p in version.split(".")[:2]) >= (6, 2)
        client.close()
    assert not server.dir.exists()


def test_embedded_redis_dies_with_a_parent_killed_by_sigkill(tmp_path: Path) -> None:
    code = (
        "import sys, time\n"
        "from shared.embedded_redis import EmbeddedRedis\n"
        f"s = EmbeddedRedis({str(tmp_path)!r}).start()\n"
        "print(s.proc.pid, s.port, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    pid, port = (int(x) for x in parent.stdout.readline().split())
    assert redis.Redis(port=port).ping()
    parent.send_signal(signal.SIGKILL)
    parent.wait(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    assert not _alive(pid), "redis-server outlived its parent"


def test_the_command_stops_its_redis_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "REACHLIVE_DATA_DIR": str(tmp_path), "REACHLIVE_REDIS_URL": ""}
    proc = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "redis"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    url = proc.stdout.readline().strip().split("=", 1)[1]
    client = redis.Redis.from_url(url)
    assert client.ping()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    try:
        client.ping()
        raise AssertionError("redis still answers after the command exited")
    except redis.ConnectionError:
        pass
    assert list(tmp_path.iterdir()) == []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes (its parent is gone; init reaps it).
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"
