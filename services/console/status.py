"""reachlive status: one screen of every live and upcoming event.

An event is shown while its media window (start - preStartTime to end + postEndTime) opens within
the next hour, is open now, or closed less than five minutes ago, and while its media session is
open. For each: partner, window, tasks (service, language, status), publishers (primary or
standby, ingest replica, remote address, seconds since their latest audio arrived), the relay
replica holding the speech session with its age and lag (audio received by the ingest vs
captions committed), caption readers connected per task, the last caption time, and what is
wrong, in words.

Reads Redis only (REACHLIVE_REDIS_URL), in three pipelined round trips whatever the number of
events (cheap enough to run every second at 500 live events: bench/console.py).

--watch [SECONDS] redraws the screen in place every SECONDS (default 2) until Ctrl-C. --json
prints the snapshot (the same data) for scripts. Redis unreachable: the screen says so and the
exit status is 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import redis

from services.console import problems, screen
from services.console.redis_io import NO_REDIS
from shared import keys
from shared.cli import plain
from shared.kaltura import models
from shared.redis_client import sync_client, text, text_map

VERSION = 1
UPCOMING_SECONDS = 3600.0  # events whose window opens within this are shown
RECENT_SECONDS = 300.0  # and those whose window closed this recently
MAX_STREAM = 100_000  # bound of the sessions stream reads (one entry per unfinished session)
SAMPLE_RATE = 16000

STATUS_NAMES = {
    models.PENDING: "pending",
    models.READY: "ready",
    models.PROCESSING: "processing",
    models.PENDING_MODERATION: "pending_moderation",
    models.REJECTED: "rejected",
    models.ERROR: "error",
    models.ABORTED: "aborted",
    models.PENDING_ENTRY_READY: "pending_entry_ready",
    models.SCHEDULED: "scheduled",
}
_TASK_READ = ("kind", "language", "language_code", "status", "cancelled", "error", "start", "end")
_RELAY_READ = (
    keys.RELAY_EPOCH,
    keys.RELAY_CURSOR,
    keys.RELAY_FINISHED,
    keys.RELAY_OUTCOME,
    keys.RELAY_REASON,
    keys.RELAY_REFUSED_SINCE,
    keys.RELAY_CLAIMED_AT,
    keys.RELAY_CLAIMED_BY,
    keys.RELAY_COMMITTED_MEDIA,
    keys.RELAY_COMMITTED_AT,
    keys.RELAY_RETRYING,
)


class Counted:
    """Round trips and commands of one snapshot (the bench prints them; the JSON carries them)."""

    def __init__(self) -> None:
        self.round_trips = 0
        self.commands = 0

    def run(self, pipe: Any) -> list[Any]:
        self.round_trips += 1
        self.commands += len(pipe.command_stack)
        # A missing consumer group (no relay started yet) must not fail the whole screen.
        return pipe.execute(raise_on_error=False)


def _f(value: Any, default: float | None = None) -> float | None:
    try:
        return float(text(value)) if value not in (None, b"", "") else default
    except ValueError:
        return default


def _ok(reply: Any) -> Any:
    return None if isinstance(reply, Exception) else reply


def snapshot(client: redis.Redis, now: float | None = None) -> dict[str, Any]:
    """Every live and upcoming event as JSON-able data (see the module doc); raises the client's
    error when Redis is unreachable."""
    now = time.time() if now is None else now
    cost = Counted()

    # 1: the indexes. Events come from the registry's set and the ingest's open sessions.
    pipe = client.pipeline(transaction=False)
    # The events whose window closed recently or is still to close (the registry keeps a month).
    pipe.zrangebyscore(keys.EVENTS_BY_CLOSE, now - RECENT_SECONDS, "+inf")
    pipe.smembers(keys.INGEST_ACTIVE)
    pipe.xrange(keys.SESSIONS_STREAM, "-", "+", count=MAX_STREAM)
    pipe.xpending_range(keys.SESSIONS_STREAM, keys.RELAY_GROUP, "-", "+", MAX_STREAM)
    pipe.zrangebyscore(keys.GATEWAY_INSTANCES, now - keys.GATEWAY_CONNECTIONS_TTL_SECONDS, "+inf")
    registered, active_raw, entries, pending, instances = cost.run(pipe)
    active = {text(e) for e in _ok(active_raw) or ()}
    event_ids = sorted({text(e) for e in _ok(registered) or ()} | active)
    owners = _owners(_ok(entries) or [], _ok(pending) or [])
    gateways = [text(i) for i in _ok(instances) or ()]

    # 2: every event's record and task ids; every live gateway's connections.
    pipe = client.pipeline(transaction=False)
    for event_id in event_ids:
        pipe.hmget(keys.event(event_id), keys.EVENT_FIELDS)
        pipe.smembers(keys.event_tasks(event_id))
    for instance in gateways:
        pipe.hgetall(keys.gateway_connections(instance))
    replies = cost.run(pipe)
    readers = _readers(gateways, replies[2 * len(event_ids) :])
    chosen: list[tuple[dict[str, Any], list[str]]] = []
    for i, event_id in enumerate(event_ids):
        record = _ok(replies[2 * i])
        if not record or record[0] is None:
            continue
        event = _event(dict(zip(keys.EVENT_FIELDS, (text(v) if v is not None else "" for v in record), strict=True)))
        if _shown(event, now, event_id in active):
            chosen.append((event, sorted(text(t) for t in _ok(replies[2 * i + 1]) or ())))

    # 3: what the ingest, the relay and the gateways keep of the chosen events.
    pipe = client.pipeline(transaction=False)
    for event, task_ids in chosen:
        eid = event["id"]
        pipe.hmget(keys.ingest_state(eid), ["samples", "epoch_end", "alive", "eos"])
        pipe.get(keys.ingest_primary(eid))
        pipe.hgetall(keys.ingest_presence(eid))
        pipe.hgetall(keys.ingest_refused(eid))
        fields = [*_RELAY_READ]
        for t in task_ids:
            fields += [keys.relay_captioned_field(t), keys.relay_ended_field(t)]
        pipe.hmget(keys.relay_state(eid), fields)
        for t in task_ids:
            pipe.hmget(keys.task(eid, t), _TASK_READ)
    replies = cost.run(pipe)

    out = []
    at = 0
    for event, task_ids in chosen:
        n = 5 + len(task_ids)
        mine, at = replies[at : at + n], at + n
        out.append(_assemble(event, task_ids, mine, owners.get(event["id"]), readers, now))
    snap = {
        "v": VERSION,
        "now": now,
        "redis": {"ok": True, "error": ""},
        "gateways": len(gateways),
        "relays": sorted({o["replica"] for o in owners.values()}),
        "events": out,
        "cost": {"round_trips": cost.round_trips, "commands": cost.commands},
    }
    snap["problems"] = problems.overall(snap)
    return snap


def _owners(entries: list[Any], pending: list[Any]) -> dict[str, dict[str, Any]]:
    """Event id → the relay consumer holding its session entry (and how long since its last
    heartbeat of it); an entry no relay has claimed yet maps to an empty owner."""
    by_entry = {}
    for entry_id, fields in entries:
        event_id = text_map(fields or {}).get("event")
        if event_id:
            by_entry[text(entry_id)] = event_id
    out: dict[str, dict[str, Any]] = {e: {"replica": "", "idle_seconds": None} for e in by_entry.values()}
    for p in pending:
        event_id = by_entry.get(text(p["message_id"]))
        if event_id is not None:
            out[event_id] = {
                "replica": text(p["consumer"]),
                "idle_seconds": int(p["time_since_delivered"]) / 1000,
                "deliveries": int(p["times_delivered"]),
            }
    return out


def _readers(instances: list[str], replies: list[Any]) -> dict[tuple[str, str], dict[str, int]]:
    """(event, task) → {gateway replica: open caption connections}."""
    out: dict[tuple[str, str], dict[str, int]] = {}
    for instance, raw in zip(instances, replies, strict=True):
        conns = text_map(_ok(raw) or {})
        host = conns.pop(keys.GATEWAY_CONNECTIONS_HOST, "") or instance
        for ref, count in conns.items():
            event_id, _, task_id = ref.partition(" ")
            out.setdefault((event_id, task_id), {})[host] = int(count)
    return out


def _event(d: dict[str, str]) -> dict[str, Any]:
    start, end = _f(d["start"], 0.0) or 0.0, _f(d["end"], 0.0) or 0.0
    pre, post = _f(d["pre_start"], 0.0) or 0.0, _f(d["post_end"], 0.0) or 0.0
    return {
        "id": d["id"],
        "partner_id": d["partner_id"],
        "status": d["status"] or "scheduled",
        "source_language": d["source_language"],
        "session_opened": d["session"] == "1",
        "window": {"start": start, "end": end, "opens": start - pre, "closes": end + post},
    }


def _shown(event: dict[str, Any], now: float, active: bool) -> bool:
    w = event["window"]
    return active or (w["opens"] - UPCOMING_SECONDS <= now <= w["closes"] + RECENT_SECONDS)


def _phase(event: dict[str, Any], now: float, eos: bool) -> str:
    w = event["window"]
    if event["status"] == "cancelled":
        return "cancelled"
    if event["status"] == "ended":  # an operator ended its media (reachlive admin end-media)
        return "ended"
    if now < w["opens"]:
        return "upcoming"
    if now <= w["closes"] and not eos:
        return "live"
    return "ended"


def _assemble(
    event: dict[str, Any],
    task_ids: list[str],
    replies: list[Any],
    owner: dict[str, Any] | None,
    readers: dict[tuple[str, str], dict[str, int]],
    now: float,
) -> dict[str, Any]:
    state_raw, primary_raw, presence_raw, refused_raw, relay_raw, *per_task = (_ok(r) for r in replies)
    eid = event["id"]
    samples, epoch_end, alive, eos = state_raw or (None, None, None, None)
    media = {
        "seconds": (_f(samples, 0.0) or 0.0) / SAMPLE_RATE,
        "last_audio": _f(epoch_end),
        "last_publisher": _f(alive),
        "ended": text(eos or b"") == "1",
        "open": event["session_opened"] and text(eos or b"") != "1",
    }
    primary = text(primary_raw) if primary_raw else ""
    event["phase"] = _phase(event, now, media["ended"])
    event["media"] = media
    event["publishers"] = _publishers(presence_raw or {}, primary, media, now)
    event["refused"] = _refusals(refused_raw or {}, now)
    relay = [text(v) if v is not None else "" for v in relay_raw or [None] * (len(_RELAY_READ) + 2 * len(task_ids))]
    state = dict(zip(_RELAY_READ, relay, strict=False))
    event["session"] = _session(state, owner, media, now)
    tasks = []
    for i, task_id in enumerate(task_ids):
        record = per_task[i]
        captioned = relay[len(_RELAY_READ) + 2 * i]
        ended = relay[len(_RELAY_READ) + 2 * i + 1]
        tasks.append(_task(eid, task_id, record, captioned, ended, event, readers))
    event["tasks"] = tasks
    event["problems"] = problems.of_event(event, now)
    return event


def _publishers(presence: dict[Any, Any], primary: str, media: dict[str, Any], now: float) -> list[dict[str, Any]]:
    out = []
    for pub_id, raw in text_map(presence).items():
        try:
            info = json.loads(raw)
        except ValueError:
            continue
        seen = float(info.get("seen", 0))
        if now - seen > keys.INGEST_PRESENCE_TTL_SECONDS:
            continue  # its replica stopped refreshing it (crashed): not a publisher any more
        role = "primary" if pub_id == primary else "standby"
        # The primary's latest audio is on the timeline (exact, now); a standby's is what its
        # replica measured at its last refresh (seconds ago: aging it would count those too).
        if role == "primary" and media["last_audio"]:
            behind = now - media["last_audio"]
        else:
            behind = float(info.get("behind", 0))
        out.append(
            {
                "id": pub_id,
                "task": str(info.get("task", "")),
                "role": role,
                "replica": str(info.get("replica", "")),
                "address": str(info.get("address", "")),
                "behind_seconds": round(max(0.0, behind), 1),
                "seen_seconds": round(max(0.0, now - seen), 1),
            }
        )
    out.sort(key=lambda p: (p["role"] != "primary", p["task"], p["id"]))
    if primary and not any(p["role"] == "primary" for p in out):
        # The lease is held by a publisher this snapshot has no record of (a replica of an
        # earlier version, or its record not written yet).
        behind = round(max(0.0, now - media["last_audio"]), 1) if media["last_audio"] else None
        unknown = {"id": primary, "task": "", "role": "primary", "replica": "", "address": ""}
        out.insert(0, {**unknown, "behind_seconds": behind, "seen_seconds": None})
    return out


def _refusals(raw: dict[Any, Any], now: float) -> list[dict[str, Any]]:
    fields = text_map(raw)
    out = []
    for reason, count in fields.items():
        if reason.endswith(keys.INGEST_REFUSED_AT):
            continue
        at = _f(fields.get(reason + keys.INGEST_REFUSED_AT), 0.0) or 0.0
        if now - at <= RECENT_SECONDS and count.isdigit():
            out.append({"reason": reason, "count": int(count), "last": at})
    return sorted(out, key=lambda r: -r["last"])


def _session(state: dict[str, str], owner: dict[str, Any] | None, media: dict[str, Any], now: float) -> dict[str, Any]:
    claimed_at = _f(state.get(keys.RELAY_CLAIMED_AT))
    committed = _f(state.get(keys.RELAY_COMMITTED_MEDIA))
    retrying_since, _, cause = state.get(keys.RELAY_RETRYING, "").partition(" ")
    lag = None
    if committed is not None or owner:
        lag = round(max(0.0, media["seconds"] - (committed or 0.0)), 1)
    return {
        "replica": (owner or {}).get("replica", ""),
        "queued": owner is not None and not owner.get("replica"),
        "heartbeat_age_seconds": (owner or {}).get("idle_seconds"),
        "claimed_by": state.get(keys.RELAY_CLAIMED_BY, ""),
        "age_seconds": round(now - claimed_at, 1) if claimed_at else None,
        "audio_seconds": round(media["seconds"], 1),
        "committed_seconds": round(committed, 1) if committed is not None else None,
        "lag_seconds": lag,
        "last_commit": _f(state.get(keys.RELAY_COMMITTED_AT)),
        "refused_since": _f(state.get(keys.RELAY_REFUSED_SINCE)),
        "retrying_since": _f(retrying_since),
        "retry_cause": cause,
        "finished": state.get(keys.RELAY_FINISHED) == "1",
        "outcome": state.get(keys.RELAY_OUTCOME, ""),
        "reason": state.get(keys.RELAY_REASON, ""),
    }


def _task(
    event_id: str,
    task_id: str,
    record: Any,
    captioned: str,
    ended: str,
    event: dict[str, Any],
    readers: dict[tuple[str, str], dict[str, int]],
) -> dict[str, Any]:
    values = record or [None] * len(_TASK_READ)
    d = dict(zip(_TASK_READ, (text(v) if v is not None else "" for v in values), strict=True))
    code = int(d["status"]) if d["status"].isdigit() else 0
    by_replica = readers.get((event_id, task_id), {})
    return {
        "id": task_id,
        "service": "translation" if d["kind"] == "translation" else "captions",
        "language": d["language"],
        "language_code": d["language_code"],
        "source_language": event["source_language"],
        "status": "cancelled" if d["cancelled"] == "1" else STATUS_NAMES.get(code, str(code or "unknown")),
        "status_code": code,
        "error": d["error"] or ended,
        "connections": sum(by_replica.values()),
        "connections_by_replica": by_replica,
        "last_caption": _f(captioned),
    }


def render(snap: dict[str, Any]) -> str:
    """The text screen of a snapshot (services/console/screen.py)."""
    return screen.render(snap)


def outage(url_shown: str, exc: BaseException, now: float | None = None) -> dict[str, Any]:
    """The snapshot when Redis cannot be read: no events, the outage in words."""
    message = f"Redis unreachable ({url_shown}): {type(exc).__name__}: {exc}"
    return {
        "v": VERSION,
        "now": time.time() if now is None else now,
        "redis": {"ok": False, "error": message},
        "gateways": 0,
        "relays": [],
        "events": [],
        "problems": [message],
        "cost": {"round_trips": 0, "commands": 0},
    }


def main(argv: list[str]) -> int:
    from shared.redis_client import redacted
    from shared.settings import CommonSettings

    parser = argparse.ArgumentParser(prog="reachlive status", description=plain(__doc__))
    parser.add_argument(
        "--watch", nargs="?", type=float, const=2.0, default=None, metavar="SECONDS", help="redraw every SECONDS (2)"
    )
    parser.add_argument("--json", action="store_true", help="print the snapshot as JSON")
    args = parser.parse_args(argv)
    url = CommonSettings().redis_url
    if not url:
        print("reachlive status: REACHLIVE_REDIS_URL is not set", file=sys.stderr)
        return 2
    client = sync_client(url, socket_timeout=5.0, socket_connect_timeout=5.0)
    shown = redacted(url)

    def take() -> dict[str, Any]:
        try:
            return snapshot(client)
        except (redis.RedisError, OSError) as exc:
            return outage(shown, exc)

    try:
        if args.watch is None:
            snap = take()
            print(json.dumps(snap, indent=1) if args.json else render(snap))
            return 0 if snap["redis"]["ok"] else NO_REDIS  # as every console command (redis_io)
        every = max(0.2, args.watch)
        while True:
            snap = take()
            body = json.dumps(snap) if args.json else render(snap)
            if args.json:
                print(body, flush=True)
            else:
                sys.stdout.write(screen.CLEAR + body + "\n")
                sys.stdout.flush()
            time.sleep(max(0.0, every - (time.time() - snap["now"])))
    except KeyboardInterrupt:
        return 0
    finally:
        client.close()
