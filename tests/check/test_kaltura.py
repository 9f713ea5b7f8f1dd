"""``reachlive check kaltura`` as a child process against the Kaltura emulator: the vendor session
(admin secret or app token), privileges, getJobs counts, and refusals named with their call."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from emulators.kaltura import KalturaEmulator
from tests.check.support import clean_env, run_check

VENDOR = 5173642
SECRET = "vendor-secret-0123456789"
APP_TOKEN = "apptokenvalue-0123456789"


@pytest.fixture
def emu() -> Iterator[KalturaEmulator]:
    with KalturaEmulator(partner_id=VENDOR, admin_secret=SECRET, app_tokens={"0_tok": APP_TOKEN}) as server:
        start = int(time.time()) + 3600
        server.create_event(start=start, end=start + 3600, tasks=[
            {"feature": 8, "source_language": "English"},
            {"feature": 11, "source_language": "English", "target_language": "French"},
        ])  # fmt: skip
        yield server


def env(emu: KalturaEmulator, **extra: str) -> dict[str, str]:
    base = {"REACHLIVE_KALTURA_SERVICE_URL": emu.url, "REACHLIVE_KALTURA_PARTNER_ID": str(VENDOR)}
    return clean_env(**{**base, **extra})


def no_secret(text: str) -> None:
    assert SECRET not in text and APP_TOKEN not in text


async def test_admin_secret(emu: KalturaEmulator) -> None:
    [task, _] = emu.tasks()
    emu.set_status(task["id"], 9)  # one SCHEDULED, one PENDING
    run = await run_check(["kaltura"], env(emu, REACHLIVE_KALTURA_ADMIN_SECRET=SECRET))
    assert run.code == 0, run.out + run.err
    no_secret(run.out + run.err)
    assert run.row("partner") == f"{VENDOR} at {emu.url}"
    assert run.row("credentials") == "admin secret"
    assert run.row("vendor session") == "started (session.start, ADMIN)"
    assert run.row("session").startswith(f"partner {VENDOR}, type ADMIN, expires in ")
    assert run.row("privileges") == "(none)"
    assert run.row("getJobs") == "ok: 2 task(s) (PENDING 1, SCHEDULED 1); live caption 1, live translation 1"
    assert run.row("task access").startswith("ok: task ")
    assert run.out.splitlines()[-1] == "verdict: OK: the poller can work with this partner"
    calls = [(c["service"], c["action"]) for c in emu.calls]
    assert ("reach_entryvendortask", "getJobs") in calls and ("session", "get") in calls
    getjobs = next(c for c in emu.calls if c["action"] == "getJobs")
    assert getjobs["params"]["filter"]["statusIn"] == "1,9"  # PENDING and SCHEDULED, as the poller asks


async def test_app_token(emu: KalturaEmulator) -> None:
    run = await run_check(
        ["kaltura"], env(emu, REACHLIVE_KALTURA_APP_TOKEN_ID="0_tok", REACHLIVE_KALTURA_APP_TOKEN=APP_TOKEN)
    )
    assert run.code == 0, run.out + run.err
    no_secret(run.out + run.err)
    assert run.row("credentials") == "app token 0_tok (SHA256)"
    assert run.row("vendor session") == "started (appToken.startSession)"
    assert run.row("getJobs").startswith("ok: 2 task(s) (PENDING 2, SCHEDULED 0)")


async def test_bad_secret(emu: KalturaEmulator) -> None:
    wrong = "wrong-secret-0123456789"
    run = await run_check(["kaltura"], env(emu, REACHLIVE_KALTURA_ADMIN_SECRET=wrong))
    assert run.code == 1, run.out + run.err
    assert wrong not in run.out + run.err
    assert run.row("vendor session").startswith("FAILED: session.start failed: START_SESSION_ERROR: ")
    assert "check REACHLIVE_KALTURA_PARTNER_ID and REACHLIVE_KALTURA_ADMIN_SECRET" in run.row("vendor session")
    assert run.out.splitlines()[-1].startswith("verdict: NOT OK: session.start failed: START_SESSION_ERROR")
    assert "getJobs" not in run.out


async def test_service_forbidden_on_get_jobs(emu: KalturaEmulator) -> None:
    emu.add_fault(service="reach_entryvendortask", action="getJobs", kind="error", code="SERVICE_FORBIDDEN", count=0)
    run = await run_check(["kaltura"], env(emu, REACHLIVE_KALTURA_ADMIN_SECRET=SECRET))
    assert run.code == 1, run.out + run.err
    no_secret(run.out + run.err)
    assert run.row("vendor session") == "started (session.start, ADMIN)"
    assert run.row("getJobs").startswith("FAILED: reach_entryvendortask.getJobs failed: SERVICE_FORBIDDEN: ")
    assert run.out.splitlines()[-1].startswith(
        "verdict: NOT OK: reach_entryvendortask.getJobs failed: SERVICE_FORBIDDEN"
    )
    assert run.err == ""


async def test_task_access_refused(emu: KalturaEmulator) -> None:
    emu.add_fault(service="reach_entryvendortask", action="get", kind="error", code="INVALID_KS", count=0)
    run = await run_check(["kaltura"], env(emu, REACHLIVE_KALTURA_ADMIN_SECRET=SECRET))
    assert run.code == 1
    assert run.row("task access").startswith("FAILED: reach_entryvendortask.get failed: INVALID_KS")


async def test_settings_errors() -> None:
    run = await run_check(["kaltura"], clean_env(REACHLIVE_KALTURA_ADMIN_SECRET=SECRET))
    assert run.code == 2 and "REACHLIVE_KALTURA_PARTNER_ID is not set" in run.err
    run = await run_check(["kaltura"], clean_env(REACHLIVE_KALTURA_PARTNER_ID="1"))
    assert run.code == 2 and "REACHLIVE_KALTURA_ADMIN_SECRET" in run.err
    run = await run_check(["kaltura", "--help"], clean_env())
    assert run.code == 0 and "getJobs" in run.out and "SERVICE_FORBIDDEN" in run.out


async def test_unreachable() -> None:
    base = {"REACHLIVE_KALTURA_PARTNER_ID": str(VENDOR), "REACHLIVE_KALTURA_ADMIN_SECRET": SECRET}
    run = await run_check(["kaltura", "--url", "http://127.0.0.1:1"], clean_env(**base))
    assert run.code == 1
    assert run.row("vendor session").startswith("FAILED: session.start failed: NETWORK: ")
