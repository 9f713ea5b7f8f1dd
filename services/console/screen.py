"""The text screen of ``reachlive status`` (pure: a snapshot in, lines out)."""

from __future__ import annotations

import time
from typing import Any

from services.console.problems import span

CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear the screen (--watch)


def clock(epoch: float | None) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(epoch)) if epoch else "-"


def day_clock(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(epoch))


def ago(epoch: float | None, now: float) -> str:
    return f"{span(now - epoch)} ago" if epoch else "never"


def when(event: dict[str, Any], now: float) -> str:
    """live for 12m / starts in 5m / window open, starts in 2m / ended 3m ago / cancelled."""
    w = event["window"]
    phase = event["phase"]
    if phase == "upcoming":
        return f"starts in {span(w['start'] - now)} (media from {clock(w['opens'])})"
    if phase == "live":
        if now < w["start"]:
            return f"window open, starts in {span(w['start'] - now)}"
        return f"live for {span(now - w['start'])}"
    if phase == "cancelled":
        return "cancelled"
    if now < w["closes"]:
        return "ended early (media ended by an operator)"
    return f"ended {span(now - w['closes'])} ago"


def render(snap: dict[str, Any]) -> str:
    now = snap["now"]
    events = snap["events"]
    counts = {p: sum(e["phase"] == p for e in events) for p in ("live", "upcoming", "ended")}
    bad = sum(bool(e["problems"]) for e in events)
    lines = [
        f"reachlive status  {day_clock(now)}:{time.strftime('%S', time.gmtime(now))} UTC  "
        f"{counts['live']} live, {counts['upcoming']} upcoming, {counts['ended']} ended  "
        f"gateways {snap['gateways']}  relays {len(snap['relays'])}  "
        f"{bad} event{'s' if bad != 1 else ''} with problems",
    ]
    for problem in snap["problems"]:
        lines.append(f"! {problem}")
    if not events and snap["redis"]["ok"]:
        lines += ["", "no live or upcoming event (next hour)"]
    for event in sorted(events, key=_order):
        lines += ["", *_event(event, now)]
    return "\n".join(lines)


def _order(event: dict[str, Any]) -> tuple[int, int, float]:
    phase = {"live": 0, "upcoming": 1, "ended": 2, "cancelled": 3}.get(event["phase"], 4)
    return (not event["problems"], phase, event["window"]["start"])


def _event(e: dict[str, Any], now: float) -> list[str]:
    """A header (the event and its speech session), a line per task with its publishers (each
    feature publishes on its own key), then the problems."""
    w = e["window"]
    lines = [
        f"EVENT {e['id']}  partner {e['partner_id'] or '-'}  {e['phase'].upper()}  {when(e, now)}  "
        f"{clock(w['start'])}-{clock(w['end'])} UTC  source {e['source_language'] or '-'}  |  "
        f"session {_session(e, now)}"
    ]
    pubs = list(e["publishers"])
    for t in e["tasks"]:
        lang = t["language"] if t["service"] == "captions" else f"{t['source_language']}>{t['language']}"
        readers = ", ".join(f"{n}@{r}" for r, n in sorted(t["connections_by_replica"].items()))
        mine = [p for p in pubs if p["task"] == t["id"]]
        pubs = [p for p in pubs if p["task"] != t["id"]]
        line = (
            f"  {t['id']:<10} {t['service']:<11} {lang:<7} {t['status']:<10} "
            f"readers {t['connections']}{f' ({readers})' if readers else ''}  "
            f"last caption {ago(t['last_caption'], now):<9}"
        )
        lines.append(line + ("  " + _publisher(mine[0]) if mine else "  no publisher"))
        lines += [" " * len(line) + "  " + _publisher(p) for p in mine[1:]]
    if not e["tasks"]:
        lines.append("  no task")
    lines += [f"  {'':<10} publisher of an unknown task: {_publisher(p)}" for p in pubs]
    if e["media"]["ended"]:
        lines.append(f"  media ended at {e['media']['seconds']:.1f}s")
    lines += [f"  ! {problem}" for problem in e["problems"]]
    return lines


def _publisher(p: dict[str, Any]) -> str:
    behind = "" if p["behind_seconds"] is None else f", audio {p['behind_seconds']:.1f}s behind"
    return f"{p['role']} on {p['replica'] or '?'} from {p['address'] or '?'}{behind}"


def _session(e: dict[str, Any], now: float) -> str:
    s = e["session"]
    media = e["media"]
    if s["finished"]:
        return f"finished ({s['outcome'] or 'ready'})" + (f": {s['reason']}" if s["reason"] else "")
    if not s["replica"]:
        if s["queued"]:
            return f"waiting for a relay (audio {media['seconds']:.1f}s)"
        return "none" if not e["session_opened"] else f"no relay (audio {media['seconds']:.1f}s)"
    age = f"for {span(s['age_seconds'])}" if s["age_seconds"] is not None else "age ?"
    lag = "-" if s["lag_seconds"] is None else f"{s['lag_seconds']:.1f}s"
    committed = "-" if s["committed_seconds"] is None else f"{s['committed_seconds']:.1f}s"
    return (
        f"relay {s['replica']} {age}, lag {lag} (audio {s['audio_seconds']:.1f}s, captioned {committed}), "
        f"last commit {ago(s['last_commit'], now)}"
    )
