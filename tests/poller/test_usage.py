"""Usage records at a task's end (services/poller/usage.py, shared/usage.py): one per task
however many times, and on however many workers, its end is settled; what it counts comes from
the ingest's timeline and the relay's counters."""

from __future__ import annotations

import threading
import time
from typing import Any

import redis

from services.poller import lifecycle
from shared import commands, keys, usage
from shared.kaltura.models import PROCESSING, READY
from tests.kaltura.support import CAPTION, Admin, translation, wait_for
from tests.poller.test_reconcile import _scheduled


def _records(client: redis.Redis) -> list[usage.Record]:
    return list(usage.read(client))


def test_finalize_twice_on_two_workers_records_once(
    poller_app: Any, worker: Any, admin: Admin, send: Any, redis_client: redis.Redis
) -> None:
    event_id, (caption, french, aborted) = _scheduled(
        admin, send, redis_client, CAPTION, translation("French"), translation("German")
    )
    send(commands.PROCESSING, event_id)
    wait_for(lambda: all(int(admin.task(t)["status"]) == PROCESSING for t in (caption, french)))
    # What the ingest and the relay keep for the event (their own fields, shared/keys.py).
    redis_client.hset(keys.ingest_state(event_id), "samples", str(16000 * 42 + 8000))
    redis_client.hset(keys.relay_state(event_id), keys.relay_usage_field(caption), "57 40.250")
    redis_client.hset(keys.relay_state(event_id), keys.relay_usage_field(french), "61 40.000")
    before = time.time()

    # The relay's FINALIZE twice through the broker (four worker threads) and, at the same time,
    # reconcile's recovery in two more threads of this process.
    ctx = poller_app.reachlive
    go = threading.Barrier(3)

    def recover() -> None:
        go.wait()
        lifecycle.finalize(ctx, caption, "ready")

    threads = [threading.Thread(target=recover) for _ in range(2)]
    for t in threads:
        t.start()
    send(commands.FINALIZE, caption, "ready", "")
    send(commands.FINALIZE, caption, "ready", "")
    go.wait()
    for t in threads:
        t.join(30)
    send(commands.FINALIZE, french, "error", "speech engine refused the language (4004 invalid_model)")
    admin.abort(aborted)
    send(commands.POLL)  # reconcile cancels the aborted one
    wait_for(lambda: len(_records(redis_client)) == 3, timeout=30)
    send(commands.FINALIZE, caption, "ready", "")
    send(commands.FINALIZE, french, "ready", "")
    send(commands.POLL)
    wait_for(lambda: len(admin.calls_of("reach_entryvendortask", "getJobs")) >= 2)
    time.sleep(1.0)

    records = {r.task_id: r for r in _records(redis_client)}
    assert len(_records(redis_client)) == 3 and set(records) == {caption, french, aborted}
    assert int(admin.task(caption)["status"]) == READY
    rec = records[caption]
    assert (rec.event_id, rec.service, rec.feature, rec.status) == (event_id, "captions", "8", "ready")
    assert (rec.source_language, rec.target_language) == ("en", "en")
    assert (rec.media_seconds, rec.session_seconds, rec.words) == (42.5, 40.25, 57)
    assert rec.partner_id and rec.start < rec.end and before - 1 <= rec.ended <= time.time()
    fr = records[french]
    assert (fr.service, fr.feature, fr.target_language, fr.status, fr.words) == ("translation", "11", "fr", "error", 61)
    assert records[aborted].status == "cancelled" and records[aborted].words == 0
    assert redis_client.zcard(keys.USAGE_RECORDED) == 3
