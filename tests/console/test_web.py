"""The operator's page over plain HTTP (no browser): only on the gateway's metrics port, only with
the operator token (a missing or wrong one is 401, compared in constant time, never logged), off
(404) without a token setting, and nothing of it on the public caption port."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from services.console import web
from services.demo.stack import Stack
from shared.child import Service, free_port
from tests.console.conftest import CONSOLE_TOKEN
from tests.support.polling import wait_for

PAGE_PATHS = ("/console", "/console/", "/console/status.json", "/console/task/1/captions", "/console/task/1")


def request(
    port: int, path: str, *, method: str = "GET", headers: dict[str, str] | None = None, body: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def admin_port(stack: Stack) -> int:
    port = stack.gateway_metrics_ports[0]
    wait_for(lambda: _answers(port), 60, 0.2, "the gateway's metrics port")
    return port


def _answers(port: int) -> bool:
    try:
        return request(port, "/console/")[0] == 401  # the page is registered once the gateway runs
    except OSError:
        return False


def test_the_page_needs_the_operator_token(stack: Stack, admin_port: int) -> None:
    wrong = CONSOLE_TOKEN[:-1] + "x"
    for path in ("/console/", "/console/status.json", "/console/task/1", "/console/task/1/captions"):
        status, headers, body = request(admin_port, path)
        assert status == 401, path
        assert "set-cookie" not in headers
        assert b'"events"' not in body
        assert request(admin_port, path, headers=bearer(wrong))[0] == 401, path
        assert request(admin_port, path, headers={"Cookie": f"{web.COOKIE}={wrong}"})[0] == 401, path
        # The cookie holds a digest of the token, never the token: the token as cookie is wrong.
        assert request(admin_port, path, headers={"Cookie": f"{web.COOKIE}={CONSOLE_TOKEN}"})[0] == 401, path
    # The 401 of a page is the sign-in form.
    status, _, body = request(admin_port, "/console/")
    assert status == 401 and b'action="/console/login"' in body
    assert request(admin_port, f"/console/?token={wrong}")[0] == 401

    # The right token as a header (scripts).
    status, headers, body = request(admin_port, "/console/status.json", headers=bearer(CONSOLE_TOKEN))
    assert status == 200 and headers["content-type"] == "application/json"
    snap = json.loads(body)
    assert snap["redis"]["ok"] and "events" in snap
    assert "script-src 'self'" in headers["content-security-policy"]

    # Once in a link: a cookie (HttpOnly, SameSite=Strict, only under /console), then the URL
    # without the token.
    status, headers, _ = request(admin_port, f"/console/task/7?token={CONSOLE_TOKEN}&x=1")
    assert status == 303 and headers["location"] == "/console/task/7?x=1"
    cookie = headers["set-cookie"]
    assert CONSOLE_TOKEN not in cookie
    assert {"HttpOnly", "SameSite=Strict", "Path=/console"} <= {p.strip() for p in cookie.split(";")}
    assert "Secure" not in cookie  # reached over plain HTTP: a Secure cookie would never come back
    session = {"Cookie": cookie.split(";")[0]}
    # Through a proxy that ended TLS (X-Forwarded-Proto): the cookie is never sent over plain HTTP.
    tls = {"X-Forwarded-Proto": "https"}
    for path, method in ((f"/console/?token={CONSOLE_TOKEN}", "GET"), ("/console/logout", "POST")):
        status, headers, _ = request(admin_port, path, method=method, headers={**tls, **session})
        assert status == 303 and "Secure" in {p.strip() for p in headers["set-cookie"].split(";")}, path
    status, _, body = request(admin_port, "/console/", headers=session)
    assert status == 200 and b"status.js" in body
    assert request(admin_port, "/console/status.json", headers=session)[0] == 200

    # The sign-in form: a wrong token is the form again; the right one goes back to a console
    # page, never elsewhere.
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert request(admin_port, "/console/login", method="POST", headers=form, body=f"token={wrong}")[0] == 401
    targets = (("/console/task/9", "/console/task/9"), ("//evil.example/x", "/console/"), ("/x", "/console/"))
    for target, expected in targets:
        status, headers, _ = request(
            admin_port, "/console/login", method="POST", headers=form, body=f"token={CONSOLE_TOKEN}&next={target}"
        )
        assert (status, headers["location"]) == (303, expected)
    # Signing out clears the cookie.
    status, headers, _ = request(admin_port, "/console/logout", method="POST", headers=session)
    assert status == 303 and "Max-Age=0" in headers["set-cookie"]

    # The metrics server's own paths are untouched.
    assert request(admin_port, "/metrics")[0] == 200
    # The token never reaches a log.
    for child in stack.children["gateway"]:
        assert child.log_path is not None
        assert CONSOLE_TOKEN not in child.log_path.read_text(errors="replace")


def test_unknown_tasks_and_files_are_not_found(stack: Stack, admin_port: int) -> None:
    status, _, body = request(admin_port, "/console/task/424242/captions", headers=bearer(CONSOLE_TOKEN))
    assert status == 404 and b"no such task" in body
    # Static files: only the package's own, by plain name.
    assert request(admin_port, "/console/static/status.js")[0] == 200
    for path in ("/console/static/../web.py", "/console/static/%2e%2e/web.py", "/console/static/web.py"):
        assert request(admin_port, path)[0] == 404, path


def test_nothing_of_the_page_on_the_public_caption_port(stack: Stack, admin_port: int) -> None:
    public = stack.gateway_ports[0]
    for path in PAGE_PATHS:
        for headers in ({}, bearer(CONSOLE_TOKEN)):
            status, got, body = request(public, path, headers=headers)
            # Refused (426: the port speaks only WebSocket), never the page or its data.
            assert status >= 400, (path, status)
            assert "set-cookie" not in got and b"console" not in body.lower() and b"events" not in body, path
        assert request(public, f"{path}?token={CONSOLE_TOKEN}")[0] >= 400
        # As a WebSocket the port is Kaltura's caption socket whatever the path: the operator
        # token is no caption token there, so the connection closes with nothing read.
        with ws_connect(f"ws://127.0.0.1:{public}{path}", additional_headers=bearer(CONSOLE_TOKEN)) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=30)
            assert closed.value.rcvd is not None and closed.value.rcvd.code != 1000, path


def test_the_page_is_off_without_a_token(stack: Stack, tmp_path: Path) -> None:
    """A gateway without REACHLIVE_GATEWAY_CONSOLE_TOKEN: every /console path is 404."""
    metrics = free_port()
    env = {
        "REACHLIVE_REDIS_URL": stack.redis_url,
        "REACHLIVE_GATEWAY_LISTEN": f"127.0.0.1:{free_port()}",
        "REACHLIVE_GATEWAY_CONSOLE_TOKEN": "",
        "REACHLIVE_METRICS_PORT": str(metrics),
        "REACHLIVE_METRICS_HOST": "127.0.0.1",
    }
    with Service(["gateway"], env, tmp_path) as gateway:
        # Ready: its body runs (where a token would have added the page).
        wait_for(lambda: _ready(metrics) or not gateway.alive(), 60, 0.2, "the gateway ready")
        assert gateway.alive(), gateway.log()
        for path in PAGE_PATHS:
            for headers in ({}, bearer(CONSOLE_TOKEN), bearer("")):
                assert request(metrics, path, headers=headers)[0] == 404, path
        assert request(metrics, "/console/login", method="POST", body=f"token={CONSOLE_TOKEN}")[0] == 501
        assert request(metrics, "/metrics")[0] == 200


def _ready(port: int) -> bool:
    try:
        return request(port, "/readyz")[0] == 200
    except OSError:
        return False


# --- pure parts ------------------------------------------------------------------------------
def test_wrong_tokens_per_address_are_limited_for_a_minute() -> None:
    now = [1000.0]
    limit = web.FailureLimit(per_minute=3, clock=lambda: now[0])
    for _ in range(3):
        assert not limit.blocked("a")
        limit.failed("a")
    assert limit.blocked("a") and not limit.blocked("b")
    now[0] += 61
    assert not limit.blocked("a")


def test_after_sign_in_only_a_console_page() -> None:
    assert web._local("/console/task/1?x=2") == "/console/task/1"
    for target in ("https://evil.example/console/", "//evil.example/console/", "/\\evil.example", "/metrics", ""):
        assert web._local(target) == "/console/", target


def test_the_token_setting_is_refused_when_short(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.settings import GatewaySettings, SettingsError, load

    monkeypatch.setenv("REACHLIVE_GATEWAY_CONSOLE_TOKEN", "short")
    with pytest.raises(SettingsError) as caught:
        load(GatewaySettings)
    assert "short" not in str(caught.value) and "REACHLIVE_GATEWAY_CONSOLE_TOKEN" in str(caught.value)
    monkeypatch.setenv("REACHLIVE_GATEWAY_CONSOLE_TOKEN", CONSOLE_TOKEN)
    assert load(GatewaySettings).console_token.get_secret_value() == CONSOLE_TOKEN
