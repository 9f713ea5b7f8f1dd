"""``reachlive admin resend-status`` on the poller's side (issue 20): FINALIZE with resend=True
sends the task's stored final status to Kaltura again (a plain second FINALIZE sends nothing:
final states never change); a task not READY/ERROR here sends nothing; a status Kaltura refuses
(another final status there) is logged, not retried. Real worker, real Redis, the emulator."""

from __future__ import annotations

from typing import Any

import redis

from services.poller.resend import resend_status
from shared import commands, journal
from shared.kaltura.models import ABORTED, PROCESSING, READY, SCHEDULED
from tests.kaltura.support import CAPTION, Admin, translation, wait_for
from tests.poller.test_relay_end import _live


def _status_calls(admin: Admin, task_id: str) -> list[int]:
    return [
        int(c["params"]["entryVendorTask"]["status"])
        for c in admin.calls_of("reach_entryvendortask", "updateJob")
        if str(c["params"].get("id")) == str(task_id) and c["code"] is None
    ]


def test_resend_sends_the_stored_final_status_again(
    worker: Any, admin: Admin, send: Any, redis_client: redis.Redis, redis_url: str, poller_app: Any
) -> None:
    event_id, (done, live) = _live(admin, send, redis_client, CAPTION, translation("French"))
    send(commands.FINALIZE, done, "ready", "")
    wait_for(lambda: int(admin.task(done)["status"]) == READY)
    assert _status_calls(admin, done) == [SCHEDULED, PROCESSING, READY]
    send(commands.FINALIZE, done, "ready", "")  # a finalize never sends a final status twice ...
    commands.send(redis_url, commands.FINALIZE, done, "ready", "", resend=True)  # ... a resend does
    wait_for(lambda: _status_calls(admin, done) == [SCHEDULED, PROCESSING, READY, READY])
    resent = {"task": done, "status": "READY", "resent": "operator"}
    wait_for(lambda: any(e.fields == resent for e in journal.read(redis_client, event_id) if e.kind == "status_sent"))

    ctx = poller_app.reachlive
    assert resend_status(ctx, live) == "not_final"  # PROCESSING: its status is sent when it ends
    assert resend_status(ctx, "999999999") == "unknown"
    assert _status_calls(admin, live) == [SCHEDULED, PROCESSING]
    # Kaltura's side holds another final status (set there): refused, nothing changes.
    admin._call("POST", f"tasks/{done}/status", {"status": ABORTED})
    assert resend_status(ctx, done) == "refused"
    assert int(admin.task(done)["status"]) == ABORTED
