"""The shipped compose nginx (deploy/compose/nginx.conf) in front of a real gateway (issue 19): it
exposes the caption path only, logs no query string (``?token=``), and appends the client's
address to X-Forwarded-For, which the gateway (REACHLIVE_GATEWAY_TRUSTED_PROXY_HOPS=1) keys its
failed-auth limit on: an attacker behind the proxy neither locks out another client nor escapes
by sending its own X-Forwarded-For.

Runs the real nginx binary, so it is skipped where none is installed (``apt-get install
nginx-light``); tests/deploy checks the same file statically everywhere. Clients come from
distinct loopback addresses (127.0.0.2, 127.0.0.3: all of 127/8 is local on Linux)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from shared.child import free_port
from tests.gateway.helpers import add_caption, make_task
from tests.gateway.test_hostile import expect_close, recv_json, wait_for

ROOT = Path(__file__).resolve().parents[2]
NGINX = shutil.which("nginx") or (Path("/usr/sbin/nginx").exists() and "/usr/sbin/nginx") or None
pytestmark = pytest.mark.skipif(NGINX is None, reason="no nginx binary")

ATTACKER, OTHER = "127.0.0.2", "127.0.0.3"


def shipped_config(tmp: Path, listen: int, gateway_port: int) -> str:
    """deploy/compose/nginx.conf with the host-specific lines pointed at this test's ports and
    files (each must be there: the file the test runs is the one compose ships)."""
    conf = (ROOT / "deploy/compose/nginx.conf").read_text()
    temp = "".join(f"  {d}_temp_path {tmp}/{d};\n" for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    for old, new in (
        ("listen 8080;", f"listen 127.0.0.1:{listen};"),
        ("set $gateway gateway:8080;", f"set $gateway 127.0.0.1:{gateway_port};"),
        ("resolver 127.0.0.11 valid=10s ipv6=off;", ""),
        ("access_log /dev/stdout caption;", f"access_log {tmp}/access.log caption;"),
        ("error_log /dev/stderr crit;", f"error_log {tmp}/error.log crit;"),
        ("http {\n", "http {\n" + temp),
    ):
        assert old in conf, f"deploy/compose/nginx.conf no longer has {old!r}"
        conf = conf.replace(old, new, 1)
    return conf


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[tuple[Path, int, list]]:
    """Yields (dir, port, holder); the test puts the gateway port in holder, then calls start."""
    procs: list[subprocess.Popen[bytes]] = []
    port = free_port()

    def start(gateway_port: int) -> None:
        conf = tmp_path / "nginx.conf"
        conf.write_text(shipped_config(tmp_path, port, gateway_port))
        cmd = [str(NGINX), "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log")]
        cmd += ["-g", f"daemon off; pid {tmp_path}/nginx.pid;"]
        check = subprocess.run([*cmd, "-t"], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE))

    try:
        yield tmp_path, port, [start]
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(15)


async def http_get(port: int, path: str) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return int(raw.split(b" ", 2)[1])


async def wait_listening(port: int) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            assert time.monotonic() < deadline, "nginx did not listen"
            await asyncio.sleep(0.05)


async def test_shipped_nginx_exposes_the_caption_path_logs_no_token_and_limits_per_client(
    start_gateway, redis_client, nginx
):
    tmp, port, (start,) = nginx
    token = make_task(redis_client)
    add_caption(redis_client, "E1", "T1", 0)
    # As docker-compose.yml sets it for the gateways behind this nginx.
    gw = await start_gateway(auth_failures_per_minute=3, trusted_proxy_hops=1)
    start(gw.port)
    await wait_listening(port)
    url = f"ws://127.0.0.1:{port}/v1/captions"

    # Only the caption path: not the probes, not the metrics, not another path.
    for path in ("/metrics", "/readyz", "/livez", "/healthz", "/v1/captions/x", "/"):
        assert await http_get(port, path) == 404, path

    # Captions through the proxy, the token in the query.
    async with connect(f"{url}?token={token}", local_addr=(OTHER, 0)) as ws:
        assert (await recv_json(ws))["response"]["start"] == 0.0

    # The attacker's bad tokens block the attacker...
    for _ in range(3):
        async with connect(f"{url}?token=wrong", local_addr=(ATTACKER, 0)) as ws:
            await expect_close(ws, 4001)
    for headers in ({}, {"X-Forwarded-For": OTHER}, {"X-Forwarded-For": f"198.51.100.7, {OTHER}"}):
        with pytest.raises(InvalidStatus) as info:  # its own X-Forwarded-For does not help it
            async with connect(f"{url}?token=wrong", local_addr=(ATTACKER, 0), additional_headers=headers):
                pass
        assert info.value.response.status_code == 429
    # ... and nobody else behind the same proxy; and the attacker's valid token is served.
    async with connect(f"{url}?token=wrong", local_addr=(OTHER, 0)) as ws:
        await expect_close(ws, 4001)
    async with connect(f"{url}?token={token}", local_addr=(ATTACKER, 0)) as ws:
        assert (await recv_json(ws))["response"]["start"] == 0.0

    # The access log has the connections (path, status), never a query string or the token.
    def logged() -> str:
        return (tmp / "access.log").read_text()

    await wait_for(lambda: logged().count("/v1/captions") >= 8)
    log = logged()
    assert log.count("/v1/captions") >= 8 and " 429 " in log and " 101 " in log, log
    assert "token" not in log and token not in log and "?" not in log, log
