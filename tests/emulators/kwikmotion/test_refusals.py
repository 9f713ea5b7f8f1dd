"""Refusals on demand (issue 16): a valid token refused with the seed's 401 / 403 payloads, a
language refused with 4004, for ``count`` connections or until cleared, set over the admin HTTP
API on the emulator's own port and through ``emu.faults``."""

from __future__ import annotations

import asyncio
import json

import pytest

from emulators.kwikmotion import KwikmotionEmulator
from shared.kwikmotion import KwikSession
from tests.emulators.kwikmotion.support import eventually, open_ws, recv_json, start
from tests.emulators.kwikmotion.test_admin_cli import base, http
from tests.emulators.kwikmotion.test_protocol import EXPIRED, FORBIDDEN_PAYLOAD, assert_seed_error, closed_with

REFUSALS = {
    401: (EXPIRED, (1008, "authentication_error: token_expired"), "expired"),
    403: (FORBIDDEN_PAYLOAD, (1008, "authentication_error: subscription_required"), "forbidden"),
}


async def admin(emu: KwikmotionEmulator, path: str, method: str = "POST") -> tuple[int, dict]:
    status, _, body = await asyncio.to_thread(http, f"{base(emu)}/admin/{path}", method)
    return status, json.loads(body)


async def refused(emu: KwikmotionEmulator, status: int) -> None:
    """One connection with the valid token, refused with the seed's payload for ``status``."""
    payload, close, auth = REFUSALS[status]
    async with open_ws(emu) as ws:
        assert_seed_error(await recv_json(ws), payload)  # before we send anything
        assert await closed_with(ws) == close
    await eventually(lambda: emu.sessions[-1].finished)
    record = emu.sessions[-1]
    assert (record.auth, record.session_id, record.closed_code, record.closed_reason) == (auth, None, *close)
    assert record.faults == [f"refuse_auth_{status}"]
    assert emu.active == 0


async def accepted(emu: KwikmotionEmulator, language: str = "en", targets: list[str] | None = None) -> None:
    async with open_ws(emu) as ws:
        await start(ws, language, targets)
    await eventually(lambda: emu.sessions[-1].finished)
    assert emu.sessions[-1].auth == "ok" and emu.sessions[-1].faults == []


@pytest.mark.parametrize("status", [401, 403])
async def test_refuse_auth_for_count_connections_over_http(emu: KwikmotionEmulator, status: int) -> None:
    code, faults = await admin(emu, f"faults?refuse_auth={status}&count=2")
    assert code == 200 and (faults["refuse_auth"], faults["count"]) == (status, 2)
    await refused(emu, status)
    await refused(emu, status)
    assert (await admin(emu, "faults", "GET"))[1]["refuse_auth"] is None  # fired twice, cleared itself
    await accepted(emu)


async def test_refuse_auth_until_cleared(emu: KwikmotionEmulator) -> None:
    emu.faults.update({"refuse_auth": 403, "persistent": True})
    for _ in range(3):
        await refused(emu, 403)
    code, faults = await admin(emu, "faults/clear")
    assert code == 200 and (faults["refuse_auth"], faults["persistent"]) == (None, False)
    await accepted(emu)

    await admin(emu, "faults?refuse_auth=401&persistent=true")
    await refused(emu, 401)
    await refused(emu, 401)
    assert (await admin(emu, "faults?refuse_auth=none"))[1]["refuse_auth"] is None  # cleared by value too
    await accepted(emu)

    await admin(emu, "faults?refuse_auth=401&persistent=true")
    assert (await admin(emu, "faults", "DELETE"))[1]["refuse_auth"] is None  # and by DELETE
    await accepted(emu)


async def test_refuse_auth_values_are_checked(emu: KwikmotionEmulator) -> None:
    for query in ("refuse_auth=4001", "refuse_auth=402", "refuse_auth=x"):
        assert (await admin(emu, f"faults?{query}"))[0] == 400, query
    assert emu.faults.refuse_auth is None


async def refused_language(emu: KwikmotionEmulator, language: str, targets: list[str], bad: str) -> None:
    async with open_ws(emu) as ws:
        await ws.send(KwikSession(language, targets).start(0))
        error = await recv_json(ws)
        assert error.pop("timestamp") > 0
        assert error == {"message": "Error", "type": "invalid_model", "reason": f"Unsupported language: {bad}",
                         "code": 4004}  # fmt: skip
        assert await closed_with(ws) == (4004, "invalid_model")
    await eventually(lambda: emu.sessions[-1].finished)
    assert emu.sessions[-1].faults == ["refuse_language"] and emu.sessions[-1].session_id is None


async def test_refuse_language_as_source_or_target(emu: KwikmotionEmulator) -> None:
    code, faults = await admin(emu, "faults?refuse_language=de,%20fr&persistent=true")
    assert code == 200 and faults["refuse_language"] == "de,fr"
    await accepted(emu, "en", ["es"])  # a session naming neither is served
    await refused_language(emu, "fr", [], "fr")
    await refused_language(emu, "en", ["es", "de"], "de")
    await admin(emu, "faults", "DELETE")
    await accepted(emu, "en", ["de", "fr"])

    emu.faults.update({"refuse_language": "de"})  # count 1: one refusal, then served again
    await refused_language(emu, "en", ["de"], "de")
    await accepted(emu, "en", ["de"])
