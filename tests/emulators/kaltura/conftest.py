"""Fixtures for the Kaltura emulator's tests: a started emulator (real HTTP on a free port), a
settable clock, raw HTTP helpers and the official client."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from KalturaClient import KalturaClient, KalturaConfiguration

from emulators.kaltura import KalturaEmulator

VENDOR = 5173642
SECRET = "vendor-secret"


class Clock:
    """A clock the test moves (KS expiry without sleeping)."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def emu(clock: Clock) -> Iterator[KalturaEmulator]:
    with KalturaEmulator(partner_id=VENDOR, admin_secret=SECRET, app_tokens={"0_tok": "apptokenvalue"},
                         clock=clock) as server:  # fmt: skip
        yield server


def client(emu: KalturaEmulator) -> KalturaClient:
    return KalturaClient(KalturaConfiguration(emu.url))


def post(
    emu: KalturaEmulator,
    service: str,
    action: str,
    fields: dict[str, Any] | list[tuple[str, Any]] | None = None,
    *,
    fmt: int | None = 1,
    json_body: dict[str, Any] | None = None,
) -> Any:
    """A raw ``POST /api_v3/service/{service}/action/{action}`` (form fields or a JSON body).
    ``fmt=1`` returns the parsed JSON; otherwise the raw bytes."""
    url = f"{emu.url}/api_v3/service/{service}" + (f"/action/{action}" if action else "")
    if json_body is not None:
        body = dict(json_body)
        if fmt is not None:
            body["format"] = fmt
        data, ctype = json.dumps(body).encode(), "application/json"
    else:
        pairs = list(fields.items()) if isinstance(fields, dict) else list(fields or [])
        if fmt is not None:
            pairs.append(("format", fmt))
        data, ctype = urlencode(pairs).encode(), "application/x-www-form-urlencoded"
    req = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": ctype})
    with urllib.request.urlopen(req, timeout=10) as resp:
        raw = resp.read()
        assert resp.status == 200
    return json.loads(raw) if fmt == 1 else raw


def admin(emu: KalturaEmulator, method: str, path: str, doc: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = json.dumps(doc).encode() if doc is not None else None
    req = urllib.request.Request(
        f"{emu.url}/admin/{path}", data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def vendor_ks(emu: KalturaEmulator) -> str:
    ks = post(emu, "session", "start", {"secret": SECRET, "partnerId": VENDOR, "type": 2})
    assert isinstance(ks, str)
    return ks


def order(emu: KalturaEmulator, clock: Clock, **spec: Any) -> dict[str, Any]:
    """One event an hour from now with a caption task (or the given tasks)."""
    start = int(clock.now) + 3600
    spec.setdefault("start", start)
    spec.setdefault("end", start + 3600)
    return emu.create_event(spec)
