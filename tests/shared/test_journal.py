"""The per-event log (shared/journal.py) on real Redis: bounded in length, expiring with the
captions (retention after the event's end), and never raising when Redis is down or frozen."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from shared import journal, keys, registry
from shared.registry import EventRecord
from tests.support.outage import OutageRedis


@pytest.fixture(autouse=True)
def _retention(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("REACHLIVE_RETENTION_DAYS", "2")
    journal.retention_seconds.cache_clear()
    yield
    journal.retention_seconds.cache_clear()


def failures() -> float:
    return REGISTRY.get_sample_value("reachlive_journal_write_failures_total") or 0.0


def expires(client: redis.Redis, event_id: str) -> float:
    """When the event's log expires (epoch s; TTL, as the embedded Redis predates EXPIRETIME)."""
    return time.time() + client.ttl(keys.event_log(event_id))


def test_entries_read_back_in_order_without_secrets(redis_client: redis.Redis) -> None:
    journal.record(redis_client, "E1", "provisioned", task="T1", service="captions", language="en")
    journal.record(redis_client, "E1", "publish_refused", reason="too_early", media_key="mk-plain", access_key="ak")
    journal.record(redis_client, "E1", "status_sent", task="T1", status="READY", now=1_800_000_000.5, seconds=1.25)
    got = journal.read(redis_client, "E1")
    assert [e.kind for e in got] == ["provisioned", "publish_refused", "status_sent"]
    assert got[0].fields == {"task": "T1", "service": "captions", "language": "en"}
    assert got[1].fields == {"reason": "too_early"}  # secret-looking fields are never written
    assert got[2].ts == 1_800_000_000.5 and got[2].fields == {"task": "T1", "status": "READY", "seconds": "1.250"}
    assert got[2].words() == "task=T1 status=READY seconds=1.250"
    assert b"mk-plain" not in b"".join(v for _, f in redis_client.xrange(keys.event_log("E1")) for v in f.values())
    assert [e.kind for e in journal.read(redis_client, "E1", count=2)] == ["publish_refused", "status_sent"]
    assert journal.read(redis_client, "nope") == []


def test_length_is_bounded(redis_client: redis.Redis) -> None:
    n = keys.EVENT_LOG_MAXLEN * 3
    for i in range(n):
        journal.record(redis_client, "E2", "publish_refused", reason="too_early", n=i)
    length = redis_client.xlen(keys.event_log("E2"))
    # MAXLEN ~ trims whole stream nodes (100 entries by default): never fewer than the cap.
    assert keys.EVENT_LOG_MAXLEN <= length <= keys.EVENT_LOG_MAXLEN + 100
    entries = journal.read(redis_client, "E2")
    assert entries[-1].fields["n"] == str(n - 1)  # the newest kept, the oldest dropped
    assert int(entries[0].fields["n"]) == n - length


def test_expiry_follows_the_event_end_and_the_retention(redis_client: redis.Redis) -> None:
    retention = 2 * 86400
    now = time.time()
    # An upcoming event: kept until its end + post-end margin + the retention.
    registry.write_event(redis_client, EventRecord(id="E3", start=now + 100, end=now + 3600, post_end=600))
    journal.record(redis_client, "E3", "provisioned", task="T1")
    assert abs(expires(redis_client, "E3") - (now + 3600 + 600 + retention)) <= 2
    # The event moved later: the next entry carries the expiry with it.
    registry.move_event_window(redis_client, "E3", now + 100, now + 7200)
    journal.record(redis_client, "E3", "window_moved")
    assert abs(expires(redis_client, "E3") - (now + 7200 + 600 + retention)) <= 2
    # An event long over (a late refused publish): counted from now, never already expired.
    registry.write_event(redis_client, EventRecord(id="E4", start=now - 90000, end=now - 86400))
    journal.record(redis_client, "E4", "publish_refused", reason="ended")
    assert abs(expires(redis_client, "E4") - (now + retention)) <= 2
    # No record at all (the event is gone): from now as well.
    journal.record(redis_client, "E5", "event_gone")
    assert abs(expires(redis_client, "E5") - (now + retention)) <= 2


def test_script_reloaded_after_a_flush(redis_client: redis.Redis) -> None:
    journal.record(redis_client, "E6", "a")
    redis_client.script_flush()
    journal.record(redis_client, "E6", "b")
    assert [e.kind for e in journal.read(redis_client, "E6")] == ["a", "b"]


async def test_redis_down_or_frozen_never_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = OutageRedis(tmp_path).start()
    sync = redis.Redis.from_url(server.url, socket_timeout=1, socket_connect_timeout=1)
    client = aioredis.Redis.from_url(server.url, socket_connect_timeout=1)
    try:
        journal.record(sync, "E7", "provisioned")
        await journal.arecord(client, "E7", "publish_accepted", role="primary")
        before = failures()

        server.stop()  # down: connection refused
        journal.record(sync, "E7", "status_sent", status="READY")
        await journal.arecord(client, "E7", "session_opened")
        assert failures() == before + 2

        server.start()  # back: the same clients write again
        await journal.arecord(client, "E7", "session_closed", cause="end_of_stream")

        monkeypatch.setattr(journal, "DEADLINE_SECONDS", 0.3)
        server.freeze()  # frozen: the async writer gives up at its deadline
        await journal.arecord(client, "E7", "failover")
        journal.record(sync, "E7", "status_sent")  # the socket timeout
        assert failures() == before + 4
        server.thaw()

        kinds = [e.kind for e in journal.read(redis.Redis.from_url(server.url), "E7")]
        assert kinds[:3] == ["provisioned", "publish_accepted", "session_closed"]
    finally:
        await client.aclose()
        sync.close()
        server.stop()


def test_throttle_writes_one_entry_a_minute_per_key_and_counts_the_rest() -> None:
    throttle = journal.Throttle(seconds=60, size=2)
    assert throttle.take(("E1", "too_early"), now=0) == 0
    assert [throttle.take(("E1", "too_early"), now=t) for t in (1, 30, 59)] == [None, None, None]
    assert throttle.take(("E1", "too_late"), now=2) == 0  # another reason: its own entry
    assert throttle.take(("E1", "too_early"), now=61) == 3  # the next one says how many it stands for
    assert throttle.take(("E1", "too_early"), now=62) is None
    throttle.take(("E2", "too_early"), now=63)
    throttle.take(("E3", "too_early"), now=64)  # past its size the oldest key is forgotten
    assert throttle.take(("E1", "too_late"), now=65) == 0
