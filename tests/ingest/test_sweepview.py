"""The end-of-stream sweep's view of the open events (services/ingest/sweepview.py): a record is
re-read when old or when it may say the event is over, so the sweep costs few commands per
event and never acts on a stale record. Real Redis, the registry's own writers."""

from __future__ import annotations

import time

import redis
import redis.asyncio as aioredis

from services.ingest import sweepview
from services.ingest.coordinator import Coordinator
from services.ingest.sweepview import SweepView
from shared import keys, registry
from tests.ingest.conftest import make_event


def processed(client: redis.Redis) -> int:
    return int(client.info("stats")["total_commands_processed"])


async def test_open_events_are_not_read_again_until_their_records_are_old(
    redis_client: redis.Redis, aredis: aioredis.Redis
) -> None:
    ids = [f"ev{i}" for i in range(20)]
    for event_id in ids:
        make_event(redis_client, event_id, f"t-{event_id}", f"key-{event_id}")
    view = SweepView(aredis, Coordinator(aredis, chunk_ms=1000, retention_seconds=60), margin_seconds=0)
    now = time.time()
    first = await view.read(ids, now)
    assert [record.id for record, _ in first if record] == ids
    before = processed(redis_client)
    again = await view.read(ids, now + 1)
    # INFO itself and the one ZMSCORE of the window index: no record or alive read at all.
    assert processed(redis_client) - before <= 2
    assert again == first
    before = processed(redis_client)
    await view.read(ids, now + sweepview.REFRESH_SECONDS)
    assert processed(redis_client) - before >= 2 * len(ids)  # an HGETALL and an HGET each


async def test_an_event_that_looks_over_is_read_on_every_sweep(
    redis_client: redis.Redis, aredis: aioredis.Redis
) -> None:
    """A window that has closed (as last read) is checked again at once, so an extension written
    meanwhile is seen before the sweep could end the event; a cancellation within the refresh
    period is seen at its end."""
    now = time.time()
    make_event(redis_client, "closing", "t1", "k1", start=now - 600, end=now - 1)
    make_event(redis_client, "open", "t2", "k2", start=now - 600, end=now + 600)
    view = SweepView(aredis, Coordinator(aredis, chunk_ms=1000, retention_seconds=60), margin_seconds=0)
    [(closing, _), (_open, _)] = await view.read(["closing", "open"], now)
    assert closing is not None and closing.window()[1] < now
    redis_client.hset(keys.event("closing"), "end", repr(now + 600))  # the poller moves the window
    redis_client.hset(keys.event("open"), "status", "cancelled")
    [(closing, _), (still, _)] = await view.read(["closing", "open"], now + 0.25)
    assert closing is not None and closing.window()[1] > now
    assert still is not None and still.status != "cancelled"  # within the refresh period: cached
    [_, (cancelled, _)] = await view.read(["closing", "open"], now + sweepview.REFRESH_SECONDS)
    assert cancelled is not None and cancelled.status == "cancelled"


async def test_a_vanished_event_is_read_again_and_forgotten_when_no_longer_open(
    redis_client: redis.Redis, aredis: aioredis.Redis
) -> None:
    make_event(redis_client, "gone", "t1", "k1")
    view = SweepView(aredis, Coordinator(aredis, chunk_ms=1000, retention_seconds=60), margin_seconds=0)
    now = time.time()
    [(record, _)] = await view.read(["gone"], now)
    assert record is not None
    redis_client.delete(keys.event("gone"))
    # Within the refresh period the cached record still stands (nothing is due on it) ...
    [(record, _)] = await view.read(["gone"], now + 1)
    assert record is not None
    # ... and once old it is read again: gone (the sweep then ends the event's media).
    [(record, _)] = await view.read(["gone"], now + sweepview.REFRESH_SECONDS)
    assert record is None
    await view.read([], now + 6)
    assert not view._known


async def test_a_window_moved_earlier_is_seen_at_the_next_sweep(
    redis_client: redis.Redis, aredis: aioredis.Redis
) -> None:
    """Kaltura's event ends early: the poller moves the window (registry.move_event_window, which
    writes the window index too); the view reads the record again at its next run, not after
    REFRESH_SECONDS, from the index's one ZMSCORE for every open event."""
    now = time.time()
    make_event(redis_client, "early", "t1", "k1", start=now - 600, end=now + 600)
    make_event(redis_client, "steady", "t2", "k2", start=now - 600, end=now + 600)
    view = SweepView(aredis, Coordinator(aredis, chunk_ms=1000, retention_seconds=60), margin_seconds=0)
    await view.read(["early", "steady"], now)
    registry.move_event_window(redis_client, "early", now - 600, now - 1)
    before = processed(redis_client)
    [(early, _), (steady, _)] = await view.read(["early", "steady"], now + 0.25)
    assert early is not None and early.window()[1] < now
    assert steady is not None and steady.window()[1] > now
    # ZMSCORE, then the moved event's record and alive (HGETALL, HGET), and INFO: not the other's.
    assert processed(redis_client) - before <= 4
