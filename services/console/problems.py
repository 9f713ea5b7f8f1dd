"""What is wrong with an event, in words (pure: from the snapshot data of ``status.snapshot``).

Each problem is one sentence an operator acts on (README, "Operating"): the stream that never
arrived, publishes refused, the speech service refusing or the session reconnecting, audio that
flows with no relay transcribing it, captions lagging, nobody reading a task's captions.
"""

from __future__ import annotations

from typing import Any

# Audio that arrived at the ingest this recently counts as flowing.
FLOWING_SECONDS = 10.0
# Captions committed further behind the audio received than this: lagging. A chunk (2 s) plus
# KWIKmotion's latency (< 1.5 s) plus a result wait is normal; a minute is a stuck session.
LAG_SECONDS = 20.0
# A relay that has not renewed its claim of a session for this long is gone (the default
# failover timeout is 10 s: another relay takes the session over by then).
HEARTBEAT_SECONDS = 10.0
# A primary publisher whose latest audio is older than this is stalled (the lease lapses in 5 s).
STALLED_SECONDS = 10.0
# Readers: only after captions have flowed this long is a task without one a problem (Kaltura's
# client connects when the event starts, and reconnects within seconds).
READER_GRACE_SECONDS = 60.0


def span(seconds: float | None) -> str:
    """12s, 5m, 2h03m, 3d04h."""
    if seconds is None:
        return "?"
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s" if s < 600 else f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def flowing(event: dict[str, Any], now: float) -> bool:
    last = event["media"]["last_audio"]
    return bool(event["media"]["open"] and last and now - last < FLOWING_SECONDS)


def of_event(event: dict[str, Any], now: float) -> list[str]:
    out: list[str] = []
    w, media, session = event["window"], event["media"], event["session"]
    live = event["phase"] == "live"
    pubs = event["publishers"]
    if live and not pubs:
        if not event["session_opened"] and media["seconds"] == 0:
            if now >= w["start"]:
                out.append(f"overdue: the event started {span(now - w['start'])} ago and no stream has arrived")
        else:
            since = media["last_publisher"] or media["last_audio"]
            gone = f" for {span(now - since)}" if since else ""
            out.append(f"no publisher{gone}: the media is paused (a publish with any of the event's keys resumes it)")
    for r in event["refused"]:
        out.append(f"publish refused {r['count']}x: {r['reason'].replace('_', ' ')} (last {span(now - r['last'])} ago)")
    primary = next((p for p in pubs if p["role"] == "primary"), None)
    if live and primary is not None and (primary["behind_seconds"] or 0) > STALLED_SECONDS:
        out.append(f"the primary publisher's audio stopped {span(primary['behind_seconds'])} ago (stalled?)")
    if session["refused_since"]:
        out.append(
            f"the speech service (KWIKmotion) has refused the session for {span(now - session['refused_since'])}: "
            "check the KWIKmotion token and the event's language; the tasks fail at the deadline"
        )
    elif session["retrying_since"] and not session["finished"]:
        cause = f" ({session['retry_cause']})" if session["retry_cause"] else ""
        out.append(f"the speech session is retrying{cause} for {span(now - session['retrying_since'])}")
    if flowing(event, now) and not session["finished"]:
        age = session["heartbeat_age_seconds"]
        if not session["replica"]:
            out.append("audio flows and no relay holds the speech session (relays down or all full?)")
        elif age is not None and age > HEARTBEAT_SECONDS:
            out.append(
                f"relay {session['replica']} stopped renewing the speech session {span(age)} ago: a takeover is due"
            )
        elif (session["lag_seconds"] or 0) > LAG_SECONDS:
            out.append(f"captions lag the audio by {span(session['lag_seconds'])}")
    if session["finished"] and session["outcome"] == "error":
        out.append(f"the speech session ended in error: {session['reason']}")
    for task in event["tasks"]:
        if task["status"] == "error":
            out.append(f"task {task['id']} failed: {task['error'] or 'error'}")
        elif task["error"] and task["status"] not in ("ready", "cancelled"):
            out.append(f"task {task['id']}: {task['error']}")
        last = task["last_caption"]
        if (
            live
            and task["status"] not in ("cancelled", "error", "ready")
            and task["connections"] == 0
            and last
            and now - last < FLOWING_SECONDS * 3
            and session["age_seconds"]
            and session["age_seconds"] > READER_GRACE_SECONDS
        ):
            out.append(f"task {task['id']}: captions are written and no caption reader is connected")
    return out


def overall(snap: dict[str, Any]) -> list[str]:
    out = []
    if not snap["redis"]["ok"]:
        out.append(snap["redis"]["error"])
    # (No "no gateway" here: a gateway heartbeats from its first caption connection on, so an
    # idle one is not seen; a live task without a reader is told per task.)
    return out
