"""Issue 18 at the entry points, as child processes: explicit Redis (a single service refuses an
empty REACHLIVE_REDIS_URL with one line, exit 2), unknown REACHLIVE_* variables reported with the
nearest real name, and start-up with Redis down (poller, worker, gateway wait, stay alive and
become ready once Redis is up, with one line lost/back and no traceback)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from shared.child import Service, free_port
from shared.runtime import unknown_variables
from tests.support.outage import OutageRedis

SERVICES = ("gateway", "poller", "worker", "ingest", "relay")


@pytest.mark.parametrize("service", SERVICES)
def test_a_single_service_refuses_an_empty_redis_url(service: str, tmp_path) -> None:
    env = {"REACHLIVE_REDIS_URL": "", "REACHLIVE_REDIS_ULR": "redis://redis:6379/0"}  # the misspelling
    with Service([service], env, tmp_path) as svc:
        assert svc.proc.wait(30) == 2
    out = svc.log()
    refusal = [line for line in out.splitlines() if "REACHLIVE_REDIS_URL is empty" in line]
    assert len(refusal) == 1 and refusal[0].startswith(f"reachlive {service}: "), out
    assert "Traceback" not in out
    # The misspelt variable is named, with the real one.
    assert "REACHLIVE_REDIS_ULR is not a reachlive setting and is ignored; did you mean REACHLIVE_REDIS_URL?" in out
    assert "embedded redis started" not in out


def test_unknown_variables_get_the_nearest_name() -> None:
    env = {
        "REACHLIVE_GATEWAY_LISTN": "x",
        "REACHLIVE_KALTURA__SERVICE_URL": "x",
        "REACHLIVE_ZZZ": "x",
        "REACHLIVE_REDIS_URL": "x",
        "PATH": "x",
    }
    assert unknown_variables(env) == [
        ("REACHLIVE_GATEWAY_LISTN", "REACHLIVE_GATEWAY_LISTEN"),
        ("REACHLIVE_KALTURA__SERVICE_URL", "REACHLIVE_KALTURA_SERVICE_URL"),
        ("REACHLIVE_ZZZ", None),
    ]


def status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def wait(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
def test_start_up_with_redis_down_then_ready_once_it_is_up(tmp_path) -> None:
    redis = OutageRedis(tmp_path)  # its port is fixed, the server not started yet
    down_seconds = 8.0
    ports = {name: free_port() for name in ("gateway", "poller", "worker")}
    common = {
        "REACHLIVE_REDIS_URL": redis.url,
        "REACHLIVE_METRICS_HOST": "127.0.0.1",
        "REACHLIVE_KALTURA_SERVICE_URL": f"http://127.0.0.1:{free_port()}",
        "REACHLIVE_KALTURA_POLL_SECONDS": "3600",
        "REACHLIVE_POLLER_BEAT_MAX_INTERVAL_SECONDS": "0.5",
        "REACHLIVE_GATEWAY_LISTEN": f"127.0.0.1:{free_port()}",
        "REACHLIVE_POLLER_ENCRYPTION_KEYS": "dGVzdHMtcG9sbGVyLWVuY3J5cHRpb24ta2V5LTMyYiE=",  # the worker needs one
    }
    procs = {
        name: Service([name], {**common, "REACHLIVE_METRICS_PORT": str(port)}, tmp_path, name=f"start-{name}")
        for name, port in ports.items()
    }
    try:
        for name, port in ports.items():
            assert wait(lambda p=port: status(p, "/livez") == 200, 30), procs[name].log()[-2000:]
        started = time.monotonic()
        while time.monotonic() - started < down_seconds:
            for name, port in ports.items():
                assert procs[name].alive(), procs[name].log()[-3000:]
                assert status(port, "/readyz") == 503, name
                assert status(port, "/livez") == 200, name
            time.sleep(0.5)
        redis.start()
        up = time.monotonic()
        for name, port in ports.items():
            assert wait(lambda p=port: status(p, "/readyz") == 200, 30), procs[name].log()[-3000:]
            print(f"{name}: ready {time.monotonic() - up:.1f} s after Redis started")
        for name, svc in procs.items():
            assert svc.alive()
            msgs = [json.loads(line).get("msg", "") for line in svc.log().splitlines() if line.startswith("{")]
            lost = [m for m in msgs if m.startswith("redis unreachable at start")]
            back = [m for m in msgs if m.startswith("redis back")]
            assert len(lost) == 1 and len(back) == 1, (name, lost, back)
            assert "Traceback" not in svc.log(), svc.log()[-3000:]
            noisy = [m for m in msgs if "Trying again" in m or "Cannot connect" in m or "Retrying" in m]
            assert not noisy, (name, noisy)
    finally:
        for svc in procs.values():
            assert svc.stop() == 0, svc.log()[-2000:]
        redis.stop()
