"""``reachlive admin resend-status TASK_ID`` (issue 20): send a task's final status to Kaltura
again, e.g. after Kaltura's side lost it or showed it wrong.

It rides the FINALIZE command (``resend=True``): the same Celery task, its retries declared once
(a transient Kaltura failure backs off and retries), the same worker pool, the same vendor KS.
A finalize never changes a final status (lifecycle.finalize: a second one is a no-op), so this is
its own path: the status and errDescription stored in the registry when the task ended are sent
as they were. It is idempotent at Kaltura (the same status again changes nothing but the task's
update time). A task that is not READY or ERROR here is left alone: the console refuses those,
and a command that arrives late (the record expired, a status changed) must not invent one.
"""

from __future__ import annotations

import logging

from services.poller import metrics
from services.poller.context import Context
from services.poller.store import find_task
from shared import journal, operator
from shared.kaltura import errors
from shared.kaltura.errors import KalturaPermanentError
from shared.kaltura.models import ERROR, READY
from shared.logs import log_context

log = logging.getLogger(__name__)

NAMES = {READY: "READY", ERROR: "ERROR"}


def resend_status(ctx: Context, task_id: str) -> str:
    """updateJob with the task's stored final status; "resent", or why not ("unknown",
    "not_final", "refused": Kaltura holds another final status or no longer knows the task)."""
    with log_context(task_id=task_id):
        rec = find_task(ctx.redis, task_id)
        if rec is None:
            log.warning("operator resend-status: the registry does not know the task (expired?)")
            return "unknown"
        if rec.status not in NAMES:
            log.warning("operator resend-status: the task is not READY or ERROR here (%s): nothing sent", rec.status)
            return "not_final"
        name = NAMES[rec.status]
        description = (rec.error or "live captioning failed")[:1000] if rec.status == ERROR else None
        try:
            ctx.kaltura.update_job(task_id, rec.status, err_description=description)
        except KalturaPermanentError as exc:
            if exc.code not in (
                errors.CANNOT_UPDATE_STATUS_OF_TASK_WHICH_IS_IN_FINAL_STATE,
                errors.ENTRY_VENDOR_TASK_NOT_FOUND,
            ):
                raise
            extra = {"event_id": rec.event}
            log.warning("operator resend-status: Kaltura refused %s (%s)", name, exc.code, extra=extra)
            journal.record(ctx.redis, rec.event, "status_refused", task=task_id, status=name, code=exc.code)
            return "refused"
        metrics.OPERATOR_ACTIONS.labels(operator.RESEND_STATUS).inc()
        log.warning("operator resend-status: %s sent to Kaltura again", name, extra={"event_id": rec.event})
        journal.record(ctx.redis, rec.event, "status_sent", task=task_id, status=name, resent="operator")
        return "resent"
