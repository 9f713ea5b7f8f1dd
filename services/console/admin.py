"""reachlive admin: step in on a live event.

Actions (each logged in the event's history as an operator_action, and logged and counted in
reachlive_operator_actions_total by the service that carries it out):

restart-session EVENT_ID: the relay holding the event's speech session stops it and a relay
(any replica, the same one too) takes it over from the persisted cursor, as after a relay
failure: no audio lost, no caption repeated.

disconnect EVENT_ID [--publisher ID]: the ingest drops the event's publishers (or the one named,
by the id reachlive status shows). The event pauses, it does not end: Kaltura's restream may
publish again at once, and any valid publish resumes it.

end-media EVENT_ID: end the event's media now: its publishers are stopped, further publishes are
refused, the end of stream is written (reason operator), and its tasks finish READY once the
last audio is transcribed, as when the window closes.

resend-status TASK_ID: send the task's final status (READY, or ERROR with its description) to
Kaltura again, through the poller's workers.

revoke TASK_ID: the task's media key and caption token stop working at once; its publishers and
caption connections are closed. The task is cancelled in reachlive (Kaltura is not told).

What does not apply is refused with a message and exit code 1 (unknown id, already ended or
final, no session or publisher); exit code 2 for a settings or Redis problem. Talks to Redis only
(REACHLIVE_REDIS_URL); --wait SECONDS bounds how long an action's effect is awaited and reported
(0: do not wait).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from kombu.exceptions import OperationalError

from shared import commands, journal, keys, operator, registry
from shared.cli import plain
from shared.kaltura import models
from shared.redis_client import text, text_map
from shared.registry import EventRecord, TaskRecord

# How idle the hand-over makes a session's entry: past any relay's failover timeout (the console
# does not know the relays' REACHLIVE_RELAY_FAILOVER_SECONDS), so the next XAUTOCLAIM takes it.
HAND_OVER_IDLE_MS = 86_400_000
WAIT_SECONDS = 15.0
POLL_SECONDS = 0.2
MAX_STREAM = 100_000  # bound of the sessions stream read (one entry per unfinished session)
STATUS_NAMES = {
    models.PENDING: "PENDING",
    models.READY: "READY",
    models.PROCESSING: "PROCESSING",
    models.PENDING_MODERATION: "PENDING_MODERATION",
    models.REJECTED: "REJECTED",
    models.ERROR: "ERROR",
    models.ABORTED: "ABORTED",
    models.PENDING_ENTRY_READY: "PENDING_ENTRY_READY",
    models.SCHEDULED: "SCHEDULED",
}

# Hand a session entry from the relay that holds it (ARGV[2]) to the operator's consumer
# (ARGV[3]), idle ARGV[4] ms: its holder's next heartbeat finds it lost and stops the session
# (services/relay/service.py), and the next XAUTOCLAIM of any relay takes it over. 0 if the
# entry is no longer pending with that holder (finished, or taken over meanwhile).
_HAND_OVER = """
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[5], ARGV[5], 1)
if not p[1] or p[1][2] ~= ARGV[2] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[5], 'IDLE', ARGV[4], 'JUSTID')
return 1
"""

# End an event's media (KEYS: the event's record, its ingest state): the status "ended" that the
# ingest's sweep turns into the end of stream (reason operator) and its admission refuses
# publishes with. -1 unknown event, -2 every task cancelled, -3 already ended, -4 no media yet.
_END_MEDIA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'cancelled' then return -2 end
if status == 'ended' or redis.call('HGET', KEYS[2], 'eos') == '1' then return -3 end
if redis.call('HGET', KEYS[1], 'session') ~= '1' then return -4 end
redis.call('HSET', KEYS[1], 'status', 'ended')
return 1
"""


class Refused(Exception):
    """An action that does not apply; the message says why (exit code 1)."""


@dataclass(frozen=True, slots=True)
class Session:
    """An event's entry on the sessions stream and the relay consumer holding it ("" if none yet)."""

    entry_id: str
    holder: str


# --- reading (pure over Redis replies, unit-tested) ----------------------------------------
def find_session(entries: list[Any], pending: list[Any], event_id: str) -> Session | None:
    """The event's session entry (XRANGE of the sessions stream) and its holder (XPENDING)."""
    for entry_id, fields in entries:
        data = text_map(fields)
        if data.get("event") == event_id:
            eid = text(entry_id)
            holders = {text(p["message_id"]): text(p["consumer"]) for p in pending}
            return Session(eid, holders.get(eid, ""))
    return None


def live_publishers(presence: dict[Any, Any], now: float) -> dict[str, dict[str, Any]]:
    """The event's publishers as the ingest records them for the console (publisher id → record),
    those of a replica that stopped refreshing them left out."""
    out = {}
    for pub_id, raw in text_map(presence).items():
        try:
            info = json.loads(raw)
        except ValueError:
            continue
        if isinstance(info, dict) and now - float(info.get("seen", 0)) <= keys.INGEST_PRESENCE_TTL_SECONDS:
            out[pub_id] = info
    return out


def end_media_refusal(code: int, event_id: str) -> str:
    """The words for a refused end-media (the script's code)."""
    return {
        -1: f"unknown event {event_id}",
        -2: f"every task of event {event_id} is cancelled: its media ends by itself",
        -3: f"the media of event {event_id} has already ended",
        -4: f"event {event_id} has had no media yet: nothing to end (its tasks end when its window closes)",
    }.get(code, f"end-media of event {event_id} refused ({code})")


def status_name(status: int) -> str:
    return STATUS_NAMES.get(status, str(status))


# --- the actions ---------------------------------------------------------------------------
@dataclass
class Admin:
    client: redis.Redis
    redis_url: str
    wait: float = WAIT_SECONDS
    out: Callable[[str], None] = print
    user: str = ""

    def _event(self, event_id: str) -> EventRecord:
        event = registry.read_event_sync(self.client, event_id)
        if event is None:
            raise Refused(f"unknown event {event_id}")
        return event

    def _task(self, task_id: str) -> TaskRecord:
        event_id = self.client.get(keys.task_event(task_id))
        task = registry.read_task_sync(self.client, text(event_id), task_id) if event_id else None
        if task is None:
            raise Refused(f"unknown task {task_id}")
        return task

    def _journal(self, event_id: str, action: str, **fields: str | int | float) -> None:
        journal.record(self.client, event_id, "operator_action", action=action, user=self.user, **fields)

    def _until(self, done: Callable[[], Any]) -> Any:
        """Poll ``done`` until it returns something true or ``wait`` passes (then None)."""
        deadline = time.monotonic() + self.wait
        while True:
            result = done()
            if result or time.monotonic() >= deadline:
                return result or None
            time.sleep(POLL_SECONDS)

    def _session(self, event_id: str) -> Session | None:
        pipe = self.client.pipeline(transaction=False)
        pipe.xrange(keys.SESSIONS_STREAM, "-", "+", count=MAX_STREAM)
        pipe.xpending_range(keys.SESSIONS_STREAM, keys.RELAY_GROUP, "-", "+", MAX_STREAM)
        entries, pending = pipe.execute(raise_on_error=False)
        if isinstance(entries, Exception):
            raise entries
        return find_session(entries, [] if isinstance(pending, Exception) else pending, event_id)

    # restart-session ----------------------------------------------------------------------
    def restart_session(self, event_id: str) -> None:
        event = self._event(event_id)
        state_key = keys.relay_state(event_id)
        if text(self.client.hget(state_key, keys.RELAY_FINISHED) or b"") == "1":
            raise Refused(f"the speech session of event {event_id} has already finished")
        session = self._session(event_id)
        if session is None:
            why = "its media has not started" if event.session != "1" else "it has finished"
            raise Refused(f"event {event_id} has no speech session to restart ({why})")
        if not session.holder:
            raise Refused(f"no relay holds the speech session of event {event_id} yet (all at capacity?)")
        if session.holder == keys.RELAY_OPERATOR_CONSUMER:
            raise Refused(f"a restart of the speech session of event {event_id} is already under way")
        requested = time.time()
        self.client.hset(state_key, keys.RELAY_RESTART, f"{requested:.3f}")
        args = [keys.RELAY_GROUP, session.holder, keys.RELAY_OPERATOR_CONSUMER, HAND_OVER_IDLE_MS, session.entry_id]
        if not self.client.eval(_HAND_OVER, 1, keys.SESSIONS_STREAM, *args):
            self.client.hdel(state_key, keys.RELAY_RESTART)
            raise Refused(f"the speech session of event {event_id} finished or changed hands meanwhile: try again")
        self._journal(event_id, operator.RESTART_SESSION, relay=session.holder)
        self.out(f"restart-session: event {event_id}: the session was taken from relay {session.holder}")

        def taken() -> tuple[str] | None:
            """(the relay that took the session over,) once one has (its claim cleared the mark);
            ("",) if the session is gone (finished meanwhile)."""
            now = self._session(event_id)
            if now is None:
                return ("",)
            if now.holder in ("", keys.RELAY_OPERATOR_CONSUMER) or self.client.hexists(state_key, keys.RELAY_RESTART):
                return None
            return (now.holder,)

        by = self._until(taken) if self.wait > 0 else None
        if by == ("",):
            self.out("restart-session: the session finished meanwhile")
        elif by:
            self.out(f"restart-session: relay {by[0]} took the session over and resumes from the cursor")
        elif self.wait > 0:
            self.out(f"restart-session: no relay took the session over within {self.wait:.0f} s (reachlive status)")

    # disconnect ---------------------------------------------------------------------------
    def disconnect(self, event_id: str, publisher: str = "") -> None:
        event = self._event(event_id)
        if event.status in ("ended", "cancelled") or self._eos(event_id):
            raise Refused(f"the media of event {event_id} has ended: no publisher to disconnect")
        pubs = live_publishers(self.client.hgetall(keys.ingest_presence(event_id)), time.time())
        if publisher and publisher not in pubs:
            raise Refused(f"event {event_id} has no publisher {publisher} (reachlive status lists them)")
        if not pubs:
            raise Refused(f"event {event_id} has no publisher to disconnect")
        targets = {publisher} if publisher else set(pubs)
        heard = operator.publish(self.client, operator.Request(operator.DISCONNECT, event_id, publisher=publisher))
        if not heard:
            raise Refused("no ingest is listening for operator requests (is the ingest running?)")
        self._journal(event_id, operator.DISCONNECT, publisher=publisher or "all", publishers=len(targets))
        names = ", ".join(sorted(targets))
        self.out(f"disconnect: event {event_id}: publisher(s) {names} asked to close")

        def gone() -> bool:
            now = live_publishers(self.client.hgetall(keys.ingest_presence(event_id)), time.time())
            return not targets & set(now)

        if self.wait > 0:
            if self._until(gone):
                self.out("disconnect: closed; the event is paused until a publish resumes it")
            else:
                self.out(f"disconnect: still connected after {self.wait:.0f} s (reachlive status)")

    def _eos(self, event_id: str) -> bool:
        return text(self.client.hget(keys.ingest_state(event_id), "eos") or b"") == "1"

    # end-media ----------------------------------------------------------------------------
    def end_media(self, event_id: str) -> None:
        code = int(self.client.eval(_END_MEDIA, 2, keys.event(event_id), keys.ingest_state(event_id)))
        if code != 1:
            raise Refused(end_media_refusal(code, event_id))
        self._journal(event_id, operator.END_MEDIA)
        self.out(f"end-media: event {event_id}: ended; its publishers are stopped and new publishes refused")
        if self.wait > 0:
            if self._until(lambda: self._eos(event_id)):
                self.out("end-media: end of stream written; the tasks finish once the last audio is transcribed")
            else:
                self.out(f"end-media: no end of stream within {self.wait:.0f} s (is the ingest running?)")

    # resend-status ------------------------------------------------------------------------
    def resend_status(self, task_id: str) -> None:
        task = self._task(task_id)
        name = status_name(task.status)
        if task.status not in models.FINAL_STATUSES:
            raise Refused(f"task {task_id} is {name}: not final yet (its status is sent when it ends)")
        if task.status not in (models.READY, models.ERROR):
            raise Refused(f"task {task_id} is {name}, set on Kaltura's side: reachlive sends no status for it")
        outcome = "ready" if task.status == models.READY else "error"
        commands.send(self.redis_url, commands.FINALIZE, task.id, outcome, task.error, resend=True)
        self._journal(task.event, operator.RESEND_STATUS, task=task.id, status=name)
        self.out(
            f"resend-status: task {task_id}: {name} queued for Kaltura (reachlive event {task.event} shows it sent)"
        )

    # revoke -------------------------------------------------------------------------------
    def revoke(self, task_id: str) -> None:
        task = self._task(task_id)
        if task.cancelled:
            raise Refused(f"task {task_id} is already cancelled: its key and token no longer work")
        # First the services' request (they count the closes as the operator's), then the
        # revocation itself (registry and revocation channel), as the poller's cancel does it.
        heard = operator.publish(self.client, operator.Request(operator.REVOKE, task.event, task.id))
        registry.revoke_task(self.client, task.event, task.id)
        self._journal(task.event, operator.REVOKE, task=task.id, status=status_name(task.status))
        self.out(
            f"revoke: task {task_id}: media key and caption token revoked; its publishers and caption "
            f"connections close ({heard} service process(es) told); Kaltura is not told"
        )
        event = registry.read_event_sync(self.client, task.event)
        if event is not None and event.status == "cancelled":
            self.out(f"revoke: every task of event {task.event} is cancelled now: its media session ends")


# --- the command ---------------------------------------------------------------------------
class _Paragraphs(argparse.HelpFormatter):
    """The description's paragraphs kept apart, each wrapped (argparse would run them together)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = text.split("\n\n")
        return "\n\n".join(textwrap.fill(p, width, initial_indent=indent, subsequent_indent=indent) for p in paragraphs)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reachlive admin", description=plain(__doc__), formatter_class=_Paragraphs)
    sub = p.add_subparsers(dest="action", metavar="action", required=True)

    def action(name: str, what: str, arg: str, waits: bool) -> argparse.ArgumentParser:
        a = sub.add_parser(name, help=what, description=what)
        a.add_argument(arg)
        if waits:
            a.add_argument(
                "--wait",
                type=float,
                default=WAIT_SECONDS,
                metavar="SECONDS",
                help="await the effect (default 15; 0: no)",
            )
        return a

    action(operator.RESTART_SESSION, "restart an event's speech session from its cursor", "EVENT_ID", True)
    d = action(operator.DISCONNECT, "drop an event's publishers (the event pauses)", "EVENT_ID", True)
    d.add_argument("--publisher", default="", metavar="ID", help="only this publisher (as reachlive status shows)")
    action(operator.END_MEDIA, "end an event's media now (tasks finish READY)", "EVENT_ID", True)
    action(operator.RESEND_STATUS, "send a final task's status to Kaltura again", "TASK_ID", False)
    action(operator.REVOKE, "revoke a task's media key and caption token", "TASK_ID", False)
    return p


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in the environment (a container without one)
        return "unknown"


def main(argv: list[str]) -> int:
    from shared.redis_client import sync_client
    from shared.settings import CommonSettings

    args = parser().parse_args(argv)
    url = CommonSettings().redis_url
    if not url:
        print("reachlive admin: REACHLIVE_REDIS_URL is not set", file=sys.stderr)
        return 2
    client = sync_client(url, socket_timeout=5.0, socket_connect_timeout=5.0)
    admin = Admin(client, url, wait=max(0.0, getattr(args, "wait", 0.0)), user=_user())
    run: dict[str, Callable[[], None]] = {
        operator.RESTART_SESSION: lambda: admin.restart_session(args.EVENT_ID),
        operator.DISCONNECT: lambda: admin.disconnect(args.EVENT_ID, args.publisher),
        operator.END_MEDIA: lambda: admin.end_media(args.EVENT_ID),
        operator.RESEND_STATUS: lambda: admin.resend_status(args.TASK_ID),
        operator.REVOKE: lambda: admin.revoke(args.TASK_ID),
    }
    try:
        run[args.action]()
    except Refused as exc:
        print(f"reachlive admin {args.action}: refused: {exc}", file=sys.stderr)
        return 1
    except (redis.RedisError, OSError, OperationalError) as exc:  # OperationalError: the broker (Redis)
        print(f"reachlive admin {args.action}: Redis unreachable ({type(exc).__name__})", file=sys.stderr)
        return 2
    finally:
        client.close()
    return 0
