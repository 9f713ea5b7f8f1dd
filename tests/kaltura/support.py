"""Test helpers around the Kaltura emulator (emulators/kaltura; interface: its admin surface)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import SecretStr

from emulators.kaltura_admin import KalturaAdmin
from shared.settings import KalturaSettings
from tests.support.polling import wait_for as wait_for

VENDOR_PARTNER = 5173642  # the seed's vendorPartnerId
CUSTOMER_PARTNER = 5831172  # the seed's partnerId
ADMIN_SECRET = "vendor-secret"
APP_TOKEN_ID, APP_TOKEN = "tokenid", "tokenvalue"


class Admin(KalturaAdmin):
    """The emulator's admin surface (POST /admin/..., JSON), with the calls the kit lacks."""

    def delete(self, task_id: int | str) -> Any:
        return self._call("POST", f"tasks/{task_id}/delete")

    def fault(self, service: str, action: str, kind: str, *, code: str = "", delay: float = 0.0, count: int = 1) -> Any:
        return self._call(
            "POST",
            "faults",
            {"service": service, "action": action, "kind": kind, "code": code, "delay": delay, "count": count},
        )

    def reset(self) -> Any:
        return self._call("POST", "reset")

    def calls_of(self, service: str, action: str) -> list[dict[str, Any]]:
        return [c for c in self.calls() if c["service"] == service and c["action"] == action]


def event_spec(*tasks: dict[str, Any], start: float | None = None, minutes: int = 60, **extra: Any) -> dict[str, Any]:
    start = int(start or time.time() + 3600)
    spec: dict[str, Any] = {
        "summary": "test townhall",
        "start": start,
        "end": start + minutes * 60,
        "partner_id": CUSTOMER_PARTNER,
        "pre_start": 0,
        "post_end": 0,
        "tasks": list(tasks) or [{"feature": 8, "source_language": "English"}],
        "reach_profile": {"maxCharactersPerCaptionLine": 26, "enableProfanityRemoval": True},
        "duration_limit": 480,
    }
    spec.update(extra)
    return spec


CAPTION = {"feature": 8, "source_language": "English"}


def translation(target: str, source: str = "English") -> dict[str, Any]:
    return {"feature": 11, "source_language": source, "target_language": target}


def settings_for(url: str, *, app_token: bool = False, **over: Any) -> KalturaSettings:
    base: dict[str, Any] = {"service_url": url, "partner_id": VENDOR_PARTNER, "request_timeout_seconds": 5.0}
    if app_token:
        base.update(app_token_id=APP_TOKEN_ID, app_token=SecretStr(APP_TOKEN))
    else:
        base.update(admin_secret=SecretStr(ADMIN_SECRET))
    base.update(over)
    return KalturaSettings(**base)


@contextmanager
def running_emulator(**kw: Any) -> Iterator[Any]:
    from emulators.kaltura import KalturaEmulator

    emu = KalturaEmulator(
        host="127.0.0.1",
        port=0,
        partner_id=VENDOR_PARTNER,
        admin_secret=ADMIN_SECRET,
        app_tokens={APP_TOKEN_ID: APP_TOKEN},
        **kw,
    )
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()
