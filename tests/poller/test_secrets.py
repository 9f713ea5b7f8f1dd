"""Issue 19: the task accessKey (a KS on the customer's partner) is never in a Celery message and
never in Redis in clear; it is sealed with REACHLIVE_POLLER_ENCRYPTION_KEYS while the task is live
and dropped when it ends; records of the previous version (plain) are read and sealed; keys rotate;
a lost key costs an extendAccessKey, not the task; the worker refuses to start without a key.

Against the Kaltura emulator, the embedded Redis and a real Celery worker; every accessKey the
emulator ever issued is looked for in every Redis key, Celery messages decoded."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery.contrib.testing.worker import start_worker

from services.poller import lifecycle
from services.poller.context import Context
from services.poller.sealing import Sealer, new_key
from services.poller.store import access_key
from shared import commands, keys, registry
from shared.child import ROOT
from shared.kaltura.models import PROCESSING, READY, SCHEDULED
from tests.kaltura.support import CAPTION, Admin, event_spec, translation, wait_for
from tests.poller.conftest import ENCRYPTION_KEY
from tests.poller.test_provision import wait_status

QUEUE_KEY = f"{keys.BROKER_PREFIX}{commands.QUEUE}"  # kombu's list for the queue


# --- helpers ------------------------------------------------------------------------------------
def issued_access_keys(emulator: Any) -> set[str]:
    """Every accessKey the emulator has handed out (at the order, and at each extendAccessKey)."""
    return {ks for ks, s in emulator.state.sessions.sessions.items() if s.kind == "access_key"}


def _decoded(value: bytes) -> Iterator[bytes]:
    """``value``, and the bodies of the kombu messages in it (base64 inside JSON), decoded."""
    yield value
    try:
        doc = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            body = node.get("body")
            if isinstance(body, str) and node.get("properties", {}).get("body_encoding") == "base64":
                yield base64.b64decode(body)
            stack.extend(node.values())


def redis_contents(client: redis.Redis) -> list[bytes]:
    """Every key name, field and value in Redis, with Celery message bodies decoded."""
    out: list[bytes] = []
    for name in client.scan_iter(count=1000):
        kind = client.type(name)
        values: list[bytes] = [name]
        if kind == b"string":
            values.append(client.get(name) or b"")
        elif kind == b"hash":
            values += [x for kv in client.hgetall(name).items() for x in kv]
        elif kind == b"list":
            values += client.lrange(name, 0, -1)
        elif kind == b"set":
            values += list(client.smembers(name))
        elif kind == b"zset":
            values += client.zrange(name, 0, -1)
        elif kind == b"stream":
            values += [x for _id, fields in client.xrange(name) for kv in fields.items() for x in kv]
        for value in values:
            out += _decoded(value)
    return out


def assert_nowhere_in_redis(client: redis.Redis, secrets: set[str]) -> None:
    assert secrets
    contents = redis_contents(client)
    leaked = len({s for s in secrets for blob in contents if s.encode() in blob})  # a count: never shown
    assert leaked == 0, f"{leaked} accessKey(s) in clear in Redis"


def queued(client: redis.Redis) -> list[dict[str, Any]]:
    """The Celery messages waiting in the queue: task name, args, kwargs, and the raw item."""
    out = []
    for raw in client.lrange(QUEUE_KEY, 0, -1):
        msg = json.loads(raw)
        args, kwargs, _embed = json.loads(base64.b64decode(msg["body"]))
        out.append({"task": msg["headers"]["task"], "args": args, "kwargs": kwargs, "raw": raw})
    return out


def record(client: redis.Redis, event_id: str, task_id: str) -> registry.TaskRecord:
    rec = registry.read_task_sync(client, event_id, task_id)
    assert rec is not None
    return rec


def in_process(ctx: Context) -> Context:
    """The context with reconcile's checks run here at once instead of through the broker."""

    def check(event_id: str, task_ids: list[str], listed: dict[str, int], holder: str, countdown: float) -> None:
        try:
            lifecycle.check_event(local, event_id, task_ids, listed)
        finally:
            local.check_lock(event_id, holder).release()

    local = dataclasses.replace(ctx, send_check=check)
    return local


def _processing(admin: Admin, send: Any, client: redis.Redis, *tasks: dict[str, Any]) -> tuple[str, list[str]]:
    made = admin.create_event(**event_spec(*(tasks or (CAPTION,))))
    event_id, ids = str(made["event_id"]), made["task_ids"]
    send(commands.POLL)
    wait_status(admin, ids, SCHEDULED)
    wait_for(lambda: all(record(client, event_id, t).status == SCHEDULED for t in ids))
    send(commands.PROCESSING, event_id)
    wait_for(lambda: all(record(client, event_id, t).status == PROCESSING for t in ids))
    return event_id, ids


# --- Celery messages ----------------------------------------------------------------------------
def test_celery_messages_carry_ids_never_an_access_key(
    poller_app: Any, admin: Admin, emulator: Any, redis_client: redis.Redis
) -> None:
    """The poll's reach.provision and reconcile's reach.check_event messages, as they sit in the
    broker: task ids and listed statuses only (the previous version sent whole jobs)."""
    ctx = poller_app.reachlive
    made = admin.create_event(**event_spec(CAPTION, translation("French")))
    event_id, ids = str(made["event_id"]), made["task_ids"]
    lifecycle.poll(ctx)  # no worker yet: the provisions stay in the queue
    provisions = [m for m in queued(redis_client) if m["task"] == commands.PROVISION]
    assert sorted(m["args"] for m in provisions) == sorted([t] for t in ids)
    assert all(m["kwargs"] == {} for m in provisions)
    assert_nowhere_in_redis(redis_client, issued_access_keys(emulator))
    with start_worker(poller_app, pool="threads", concurrency=2, perform_ping_check=False, shutdown_timeout=10):
        wait_status(admin, ids, SCHEDULED)
        wait_for(lambda: all(record(redis_client, event_id, t).status == SCHEDULED for t in ids))
        wait_for(lambda: not redis_client.llen(QUEUE_KEY))
    lifecycle.poll(ctx)  # listed SCHEDULED: reconcile's check of the event, queued
    (check,) = [m for m in queued(redis_client) if m["task"] == commands.CHECK_EVENT]
    assert check["args"][0] == event_id and sorted(check["args"][1]) == sorted(ids)
    assert check["kwargs"] == {"listed": {t: SCHEDULED for t in ids}}
    assert_nowhere_in_redis(redis_client, issued_access_keys(emulator))


def test_a_check_message_of_the_previous_version_is_still_run(
    worker: Any, poller_app: Any, admin: Admin, send: Any, redis_client: redis.Redis
) -> None:
    """An upgrade with checks still queued: their ``jobs`` (whole jobs) are read for the status."""
    event_id, ids = _processing(admin, send, redis_client)
    admin.abort(ids[0])
    old = {ids[0]: {"id": ids[0], "status": PROCESSING, "access_key": "a key the new worker ignores"}}
    poller_app.send_task(commands.CHECK_EVENT, args=[event_id, ids], kwargs={"jobs": old}, queue=commands.QUEUE)
    wait_for(lambda: record(redis_client, event_id, ids[0]).cancelled)


# --- at rest ------------------------------------------------------------------------------------
def test_the_access_key_is_sealed_at_rest_and_dropped_at_the_end(
    worker: Any, poller_app: Any, admin: Admin, send: Any, redis_client: redis.Redis, emulator: Any
) -> None:
    event_id, ids = _processing(admin, send, redis_client, CAPTION, translation("French"))
    # Expired at Kaltura: the next check extends it; the fresh one is stored sealed as well.
    emulator.expire_sessions(kind="access_key", task_id=ids[0])
    send(commands.POLL)
    wait_for(lambda: admin.calls_of("reach_entryvendortask", "extendAccessKey"))
    current = admin.task(ids[0])["accessKey"]
    sealer = poller_app.reachlive.sealer
    wait_for(lambda: access_key(sealer, record(redis_client, event_id, ids[0])) == current)
    assert len(issued_access_keys(emulator)) == 3
    assert_nowhere_in_redis(redis_client, issued_access_keys(emulator))
    for task_id in ids:
        rec = record(redis_client, event_id, task_id)
        assert keys.TASK_ACCESS_KEY not in rec.extra
        sealed = rec.extra[keys.TASK_ACCESS_KEY_SEALED]
        assert Sealer([ENCRYPTION_KEY]).open(task_id, sealed).access_key == admin.task(task_id)["accessKey"]
        assert Sealer([new_key()]).open(task_id, sealed) is None  # another key does not open it
        assert Sealer([ENCRYPTION_KEY]).open(ids[1] if task_id == ids[0] else ids[0], sealed) is None
    # The end: READY for one, the other cancelled (ABORTED at Kaltura): neither keeps a key.
    send(commands.FINALIZE, ids[0], "ready")
    wait_for(lambda: record(redis_client, event_id, ids[0]).status == READY)
    admin.abort(ids[1])
    # Polled until seen, as the beat does: a poll whose event check finds the previous check
    # still running skips it ("busy"; the next poll is the retry), which a loaded CI run hit.
    wait_for(lambda: send(commands.POLL) or record(redis_client, event_id, ids[1]).cancelled, 40, 2)
    for task_id in ids:
        fields = redis_client.hkeys(keys.task(event_id, task_id))
        assert keys.TASK_ACCESS_KEY_SEALED.encode() not in fields and keys.TASK_ACCESS_KEY.encode() not in fields


def test_a_plain_record_of_the_previous_version_is_read_then_sealed(
    worker: Any, poller_app: Any, admin: Admin, send: Any, redis_client: redis.Redis, emulator: Any
) -> None:
    """After an upgrade the live tasks' records still hold the plain ``access_key``: the next
    check uses it (no extendAccessKey) and the poll replaces it with the sealed field."""
    event_id, (task_id,) = _processing(admin, send, redis_client)
    name = keys.task(event_id, task_id)
    plain = admin.task(task_id)["accessKey"]
    redis_client.hdel(name, keys.TASK_ACCESS_KEY_SEALED)
    redis_client.hset(name, keys.TASK_ACCESS_KEY, plain)  # as the previous version wrote it
    gets = len(admin.calls_of("reach_entryvendortask", "get"))
    send(commands.POLL)
    wait_for(lambda: redis_client.hexists(name, keys.TASK_ACCESS_KEY_SEALED))
    wait_for(lambda: len(admin.calls_of("reach_entryvendortask", "get")) > gets)  # the check's get
    assert not redis_client.hexists(name, keys.TASK_ACCESS_KEY)
    assert access_key(poller_app.reachlive.sealer, record(redis_client, event_id, task_id)) == plain
    assert not admin.calls_of("reach_entryvendortask", "extendAccessKey")
    assert not record(redis_client, event_id, task_id).cancelled
    assert_nowhere_in_redis(redis_client, issued_access_keys(emulator))


def test_keys_rotate_and_a_lost_key_costs_an_extension_not_the_task(
    worker: Any, poller_app: Any, admin: Admin, send: Any, redis_client: redis.Redis
) -> None:
    event_id, (task_id,) = _processing(admin, send, redis_client)
    ctx = poller_app.reachlive
    sealed_a = record(redis_client, event_id, task_id).extra[keys.TASK_ACCESS_KEY_SEALED]
    # Rotation: the new key first, the old one still listed; one reconcile re-seals with the new.
    b = new_key()
    lifecycle.reconcile(in_process(dataclasses.replace(ctx, sealer=Sealer([b, ENCRYPTION_KEY]))))
    sealed_b = record(redis_client, event_id, task_id).extra[keys.TASK_ACCESS_KEY_SEALED]
    assert sealed_b != sealed_a
    assert Sealer([b]).open(task_id, sealed_b).access_key == admin.task(task_id)["accessKey"]
    assert Sealer([ENCRYPTION_KEY]).open(task_id, sealed_b) is None  # the old key can go now
    # The key lost (a Secret replaced without the old one): the check extends the accessKey.
    c = new_key()
    lifecycle.reconcile(in_process(dataclasses.replace(ctx, sealer=Sealer([c]))))
    assert len(admin.calls_of("reach_entryvendortask", "extendAccessKey")) == 1
    rec = record(redis_client, event_id, task_id)
    assert (
        Sealer([c]).open(task_id, rec.extra[keys.TASK_ACCESS_KEY_SEALED]).access_key == admin.task(task_id)["accessKey"]
    )
    assert not rec.cancelled and rec.status == PROCESSING


def test_sealer_round_trip_binding_and_rotation() -> None:
    a, b = new_key(), new_key()
    sealed = Sealer([a]).seal("464420602", "djJ8NTgzMTE3MnwsecretKS")
    assert "djJ8NTgzMTE3MnwsecretKS" not in sealed
    assert Sealer([a]).open("464420602", sealed) == Sealer([a, b]).open("464420602", sealed)
    opened = Sealer([b, a]).open("464420602", sealed)
    assert opened is not None and opened.access_key == "djJ8NTgzMTE3MnwsecretKS" and opened.stale
    assert not Sealer([a]).open("464420602", sealed).stale
    assert Sealer([b]).open("464420602", sealed) is None
    assert Sealer([a]).open("464420603", sealed) is None  # another task's record
    assert Sealer([a]).open("464420602", "not a token") is None
    assert Sealer([a]).seal("1", "k") != Sealer([a]).seal("1", "k")  # a fresh IV each time


# --- the commands -------------------------------------------------------------------------------
def _cli(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "reachlive"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "shared.cli"]
    full = {"PATH": "/usr/bin:/bin", "REACHLIVE_DATA_DIR": str(tmp_path / "data"), "REACHLIVE_METRICS_PORT": "0", **env}
    if "PYTHONPATH" in os.environ:  # a checkout other than the installed one (a worktree)
        full["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return subprocess.run([*command, *args], env=full, cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("args", "keys_value", "says"),
    [
        (["worker"], "", "REACHLIVE_POLLER_ENCRYPTION_KEYS is empty"),
        (["all"], "", "REACHLIVE_POLLER_ENCRYPTION_KEYS is empty"),
        (["worker"], "CHANGE_ME", "REACHLIVE_POLLER_ENCRYPTION_KEYS: key 1 of 1 is not a Fernet key"),
        (["worker"], f"{ENCRYPTION_KEY},c2VjcmV0LXRvby1zaG9ydA==", "key 2 of 2 is not a Fernet key"),
    ],
)
def test_a_worker_without_a_good_key_does_not_start(
    args: list[str], keys_value: str, says: str, redis_url: str, tmp_path: Path
) -> None:
    """A worker on a Redis that outlives it (any REACHLIVE_REDIS_URL; ``all`` with one too): its
    stored keys must open in every worker and after a restart. One line, no value shown."""
    proc = _cli(args, {"REACHLIVE_REDIS_URL": redis_url, "REACHLIVE_POLLER_ENCRYPTION_KEYS": keys_value}, tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    for value in filter(None, keys_value.split(",")):
        assert value not in proc.stderr + proc.stdout
