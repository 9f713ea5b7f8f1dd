"""The two one-machine commands as an operator runs them: ``reachlive all`` (every service in one
process tree: up, a dead child restarted, clean stop on SIGTERM, no orphans when the parent is
killed) and ``reachlive demo`` (what ``make demo`` runs: the sample's words arrive as captions)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulators.media import JFK_TEXT
from shared.child import free_port, wait_port

SERVICES = 5  # worker, poller, ingest, relay, gateway


def children_of(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().split("\0")
    except OSError:
        return []


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def service_pids(parent: int) -> dict[str, int]:
    """The ``reachlive <service>`` children of ``parent``, by service name."""
    out = {}
    for pid in children_of(parent):
        args = cmdline(pid)
        if "shared.cli" in args:
            out[args[args.index("shared.cli") + 1]] = pid
    return out


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"not in {timeout}s: {what}")


def service_counts(parent: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for pid in children_of(parent):
        args = cmdline(pid)
        if "shared.cli" in args:
            name = args[args.index("shared.cli") + 1]
            counts[name] = counts.get(name, 0) + 1
    return counts


def all_env(tmp_path: Path, ingest: int, gateway: int) -> dict[str, str]:
    return {
        **os.environ,
        "REACHLIVE_REDIS_URL": "",  # the command starts its embedded Redis
        "REACHLIVE_DATA_DIR": str(tmp_path / "data"),
        "REACHLIVE_METRICS_PORT": "0",
        "REACHLIVE_INGEST_LISTEN": f"127.0.0.1:{ingest}",
        "REACHLIVE_GATEWAY_LISTEN": f"127.0.0.1:{gateway}",
        "REACHLIVE_LOG_FORMAT": "json",
    }


def test_replicas_are_parsed_and_the_beat_runs_once() -> None:
    from services.all.main import build_children, parse_replicas

    assert parse_replicas("") == {}
    assert parse_replicas("ingest=2, relay=3") == {"ingest": 2, "relay": 3}
    for bad in ("ingest", "ingest=0", "ingest=x", "nope=2", "poller=2"):
        with pytest.raises(ValueError):
            parse_replicas(bad)
    children = build_children("redis://x", 9100, replicas={"worker": 2, "ingest": 2})
    assert [c.name for c in children] == ["worker-0", "worker-1", "poller", "ingest-0", "ingest-1", "relay", "gateway"]
    # one metrics port each, and Celery node names that differ
    assert [c.env["REACHLIVE_METRICS_PORT"] for c in children] == [str(9100 + i) for i in range(7)]
    assert children[0].args == ["worker", "--hostname", "worker0@%h"] and children[2].args == ["poller"]


def test_all_runs_replicas_sharing_their_ports(tmp_path: Path) -> None:
    """``--replicas``: two ingest and two gateway processes on one port each (SO_REUSEPORT), two
    relays and workers; all serve, and SIGTERM stops every one of them."""
    ingest, gateway = free_port(), free_port()
    log = open(tmp_path / "all.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "all", "--replicas", "ingest=2,gateway=2,relay=2,worker=2"],
        env=all_env(tmp_path, ingest, gateway),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    try:
        want = {"worker": 2, "poller": 1, "ingest": 2, "relay": 2, "gateway": 2}
        wait_until(lambda: service_counts(proc.pid) == want, 60, "every replica started")
        wait_port(ingest, 60)
        wait_port(gateway, 60)
        # Both gateways bound the port (one failing to would be restarted again and again).
        time.sleep(3)
        assert service_counts(proc.pid) == want, (tmp_path / "all.log").read_text()[-3000:]
        for _ in range(8):  # the kernel spreads these between the two; each must answer
            with urllib.request.urlopen(f"http://127.0.0.1:{gateway}/healthz", timeout=5) as resp:
                assert resp.status == 200
        pids = children_of(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        for pid in pids:
            wait_until(lambda pid=pid: not running(pid), 10, f"child {pid} {cmdline(pid)} gone")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def all_cmd(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, int]]:
    ingest, gateway = free_port(), free_port()
    env = all_env(tmp_path, ingest, gateway)
    log = open(tmp_path / "all.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "all"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    try:
        wait_port(ingest, 60)
        wait_port(gateway, 60)
        wait_until(lambda: len(service_pids(proc.pid)) == SERVICES, 30, "every service started")
        yield proc, ingest, gateway
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def test_all_runs_every_service_and_stops_cleanly_on_sigterm(all_cmd) -> None:
    proc, _ingest, _gateway = all_cmd
    pids = service_pids(proc.pid)
    assert set(pids) == {"worker", "poller", "ingest", "relay", "gateway"}
    redis_pids = [p for p in children_of(proc.pid) if p not in pids.values()]
    assert redis_pids, "no embedded Redis child"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    for pid in [*pids.values(), *redis_pids]:
        wait_until(lambda pid=pid: not running(pid), 10, f"child {pid} {cmdline(pid)} gone")


def test_all_restarts_a_service_that_dies(all_cmd) -> None:
    proc, ingest, _gateway = all_cmd
    old = service_pids(proc.pid)["ingest"]
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: service_pids(proc.pid).get("ingest") not in (None, old), 30, "ingest restarted")
    wait_port(ingest, 30)
    assert proc.poll() is None


def test_a_killed_all_leaves_no_orphans(all_cmd) -> None:
    proc, _ingest, _gateway = all_cmd
    pids = children_of(proc.pid)  # the services and the embedded Redis
    assert len(pids) == SERVICES + 1
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for pid in pids:
        wait_until(lambda pid=pid: not running(pid), 40, f"orphan {pid} {cmdline(pid)} gone")


def test_demo_shows_the_sample_as_captions_and_ends_ready(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REACHLIVE_")}  # embedded defaults
    proc = subprocess.run(
        [sys.executable, "-m", "shared.cli", "demo"],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr[-3000:]
    assert "Kaltura EMULATOR" in out and "KWIKmotion EMULATOR" in out  # labelled as such on screen
    assert f"Captions received:    {JFK_TEXT}" in out
    assert " captions    en " in out and " translation fr " in out
    final = next(line for line in out.splitlines() if line.startswith("Kaltura: final task statuses"))
    assert final.count("READY") == 2, final
