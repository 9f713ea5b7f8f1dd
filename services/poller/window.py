"""When a task's window has passed, and what Kaltura's admin is told then (docs/design.md section 2;
issue 16, decision 7). Pure functions: the callers read the clock, the registry and getJobs.

A task's window is the union of its own dates (getJobs' taskJobData startDate/endDate, which
already carry its feature's preStartTime/postEndTime: facts.md) and its event's media window in
the registry (start − pre_start … end + post_end, the largest over the event's features). The
ingest accepts a publish until that end plus ``REACHLIVE_INGEST_WINDOW_MARGIN_SECONDS``; the
poller judges the window passed only after that margin and ``SLACK_SECONDS`` more, so a publish
accepted at the ingest's last moment has written the event's ``session`` before it is judged.
"""

from __future__ import annotations

from datetime import UTC, datetime

from shared.registry import EventRecord

# Beyond the ingest's margin: clocks of different hosts, the ingest's drain, and the reconcile
# that reads a session flag written a moment earlier.
SLACK_SECONDS = 60.0


def bounds(start: float, end: float, event: EventRecord | None) -> tuple[float, float]:
    """The window (epoch s) of a task with dates ``start``/``end`` (0: unknown) on ``event``."""
    starts = [s for s in (start, event.start - event.pre_start if event and event.start else 0.0) if s > 0]
    ends = [end] + ([event.end + event.post_end] if event and event.end else [])
    return (min(starts) if starts else 0.0), max(ends)


def passed(now: float, end: float, margin: float) -> bool:
    """True once media for a window ending at ``end`` can no longer arrive (0: unknown, never)."""
    return end > 0 and now > end + margin + SLACK_SECONDS


def utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def no_media_reason(start: float, end: float, media_url: str) -> str:
    """errDescription of a no-show: what was missing and what was expected (never the key)."""
    return (
        f"no media was received between {utc(start)} and {utc(end)} (UTC): reachlive expected the event's "
        f"audio as an RTMP publish to the mediaUrl {media_url} with the mediaKey of this task's live caption feature"
    )


def expired_reason(start: float, end: float) -> str:
    """errDescription of an order whose window passed before it was provisioned."""
    return (
        f"the event's window ({utc(start)} to {utc(end)} UTC) ended before the order could be served: "
        "reachlive received it too late to give Kaltura a mediaUrl and captionUrl for it"
    )
