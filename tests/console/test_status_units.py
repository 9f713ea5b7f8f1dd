"""``reachlive status`` on the embedded Redis, its contents written by the services' own writers
(registry, ingest coordinator and presence, relay claim and caption commit, gateway heartbeat):
what is shown, which events, the problems in words, the fixed number of round trips, and a
Redis that cannot be reached."""

from __future__ import annotations

import json
import time
from typing import Any

import redis
import redis.asyncio as aioredis

from services.console import status
from services.gateway.lineage import LineageStore
from services.ingest import presence
from services.ingest.coordinator import Coordinator
from services.relay.claim import Claimer
from services.relay.writer import CaptionWriter, Pending, claim_epoch
from shared import keys, redis_health, registry
from shared.aio import TaskSet
from shared.child import free_port
from shared.streams import AudioChunk, CaptionEntry
from tests.support.polling import eventually

CAPTION, TRANSLATION = "T1", "T2"


def order(client: redis.Redis, event_id: str, start: float, end: float, pre: float = 0, post: float = 0) -> None:
    registry.write_event(
        client, registry.EventRecord(id=event_id, partner_id="42", start=start, end=end, pre_start=pre, post_end=post)
    )
    for task_id, kind, lang in ((CAPTION, "caption", "en"), (TRANSLATION, "translation", "fr")):
        record = registry.TaskRecord(id=f"{event_id}-{task_id}", event=event_id, kind=kind, language=lang, status=3)
        ref = f"{event_id}-{task_id}"
        registry.write_task(client, record, media_key=f"key-{ref}", caption_token=f"tok-{ref}")


async def publish(aredis: aioredis.Redis, event_id: str, seconds: float = 1.0, standby: bool = True) -> Coordinator:
    """As the ingest does for an accepted publish: session opened, the writer's lease, audio
    written, and the console's records of the primary (and a standby)."""
    coord = Coordinator(aredis, chunk_ms=500, retention_seconds=60)
    await coord.mark_seen(event_id)
    await coord.open_session(event_id)
    assert await coord.acquire(event_id, "pub-a")
    n = int(seconds * 16000)
    chunk = AudioChunk(media_time=0.0, pts=0.0, epoch=time.time() - seconds, pcm=b"\0\0" * n)
    assert (await coord.write(event_id, "pub-a", 0, chunk, time.time(), 0))[0] == 1
    await presence.announce(aredis, event_id, "pub-a", f"{event_id}-{CAPTION}", "10.0.0.1:50000", 0.1)
    if standby:
        await presence.announce(aredis, event_id, "pub-b", f"{event_id}-{TRANSLATION}", "10.0.0.2:50001", 0.2)
    return coord


async def relay(aredis: aioredis.Redis, event_id: str, committed: float, consumer: str = "relay-a") -> None:
    """As a relay does: claim the session entry, take the epoch, commit captions with the cursor."""
    claimer = Claimer(aredis, consumer, failover_seconds=10)
    await claimer.ensure_group()
    assert await claimer.read_new(10, block_ms=10)
    epoch = await claim_epoch(aredis, event_id, consumer)
    tasks = [f"{event_id}-{CAPTION}", f"{event_id}-{TRANSLATION}"]
    writer = CaptionWriter(aredis, event_id, tasks, epoch, maxlen=1000, expire_at=0)
    now = time.time()
    entry = CaptionEntry(json='{"response": {}}', kind="captions", eos=False, created=now).fields()
    state = {
        keys.RELAY_CURSOR: "1-0",
        keys.RELAY_COMMITTED_MEDIA: repr(committed),
        keys.RELAY_COMMITTED_AT: repr(now),
        keys.relay_captioned_field(tasks[0]): repr(now),
    }
    await writer.commit([Pending(0, entry)], state)


def event_of(snap: dict[str, Any], event_id: str) -> dict[str, Any]:
    return next(e for e in snap["events"] if e["id"] == event_id)


async def test_a_live_event_as_the_services_write_it(redis_client: redis.Redis, aredis: aioredis.Redis) -> None:
    now = time.time()
    order(redis_client, "E1", now - 120, now + 3600, pre=60, post=60)
    await publish(aredis, "E1")
    await relay(aredis, "E1", committed=0.5)
    tasks = TaskSet("test-gateway")
    store = LineageStore(aredis, tasks, redis_health.get("gateway"))
    store.connections = lambda: {("E1", f"E1-{CAPTION}"): 2}
    store._start_beating()
    try:
        await eventually(lambda: redis_client.zcard(keys.GATEWAY_INSTANCES), 10, what="the gateway's beat")
        snap = status.snapshot(redis_client)
    finally:
        await tasks.close(timeout=5)
    e = event_of(snap, "E1")
    assert (e["phase"], e["partner_id"]) == ("live", "42")
    assert [(p["id"], p["role"], p["address"]) for p in e["publishers"]] == [
        ("pub-a", "primary", "10.0.0.1:50000"),
        ("pub-b", "standby", "10.0.0.2:50001"),
    ]
    assert e["publishers"][0]["replica"] == presence.REPLICA
    assert e["publishers"][0]["behind_seconds"] < 5
    s = e["session"]
    assert (s["replica"], s["claimed_by"]) == ("relay-a", "relay-a")
    assert s["age_seconds"] is not None and s["age_seconds"] < 30
    assert (s["audio_seconds"], s["committed_seconds"], s["lag_seconds"]) == (1.0, 0.5, 0.5)
    t1, t2 = e["tasks"]
    assert (t1["service"], t1["language"], t1["status"], t1["connections"]) == ("captions", "en", "processing", 2)
    assert (t2["service"], t2["language"], t2["connections"]) == ("translation", "fr", 0)
    assert t1["last_caption"] and t2["last_caption"] is None
    assert e["problems"] == [] and snap["problems"] == []
    screen = status.render(snap)
    assert "EVENT E1  partner 42  LIVE  live for 2m" in screen
    assert "relay relay-a" in screen and "10.0.0.1:50000" in screen and "readers 2 (2@" in screen
    # JSON-able: the page serves it as it is, and the screen reads the same from it.
    assert status.render(json.loads(json.dumps(snap))) == screen


async def test_which_events_are_shown(redis_client: redis.Redis) -> None:
    now = time.time()
    order(redis_client, "soon", now + 1800, now + 5400)  # starts in 30 minutes
    order(redis_client, "early", now + 3700, now + 7200, pre=300)  # media from 60 min from now
    order(redis_client, "tomorrow", now + 86400, now + 90000)
    order(redis_client, "just-ended", now - 3600, now - 120)
    order(redis_client, "long-ended", now - 7200, now - 3600)
    snap = status.snapshot(redis_client, now)
    phases = {e["id"]: e["phase"] for e in snap["events"]}
    assert phases == {"soon": "upcoming", "early": "upcoming", "just-ended": "ended"}
    screen = status.render(snap)
    assert "starts in 30m" in screen and "ended 2m00s ago" in screen and "tomorrow" not in screen
    assert "0 live, 2 upcoming, 1 ended" in screen


async def test_problems_in_words(redis_client: redis.Redis, aredis: aioredis.Redis) -> None:
    now = time.time()
    # Window open, started 5 minutes ago, no stream ever arrived.
    order(redis_client, "overdue", now - 300, now + 3600)
    # Window open, not started yet: waiting for the stream is normal.
    order(redis_client, "pre-start", now + 120, now + 3600, pre=300)
    # The publisher went away: paused; and publishes were refused.
    order(redis_client, "paused", now - 600, now + 3600)
    await publish(aredis, "paused", standby=False)
    await presence.retract(aredis, "paused", "pub-a")
    await Coordinator(aredis, chunk_ms=500, retention_seconds=60).release("paused", "pub-a")
    await presence.refused(aredis, "paused", "too_many_publishers")
    await presence.refused(aredis, "paused", "too_many_publishers")
    # Audio flows and no relay has claimed the session.
    order(redis_client, "unclaimed", now - 60, now + 3600)
    await publish(aredis, "unclaimed")
    snap = status.snapshot(redis_client, now)
    words = {e["id"]: e["problems"] for e in snap["events"]}
    assert words["overdue"] == ["overdue: the event started 5m00s ago and no stream has arrived"]
    assert words["pre-start"] == []
    assert words["paused"][0].startswith("no publisher for ")
    assert words["paused"][1].startswith("publish refused 2x: too many publishers (last ")
    assert "audio flows and no relay holds" in words["paused"][2]  # its audio is seconds old
    assert words["unclaimed"] == ["audio flows and no relay holds the speech session (relays down or all full?)"]
    assert "waiting for a relay" in status.render(snap)

    # A relay claims it but lags, then KWIKmotion refuses it, then it retries.
    await relay(aredis, "unclaimed", committed=0.0)
    redis_client.hset(keys.ingest_state("unclaimed"), "samples", str(60 * 16000))  # 60 s received
    assert event_of(status.snapshot(redis_client), "unclaimed")["problems"] == ["captions lag the audio by 1m00s"]
    redis_client.hset(keys.relay_state("unclaimed"), keys.RELAY_RETRYING, f"{time.time() - 30:.3f} drop")
    assert event_of(status.snapshot(redis_client), "unclaimed")["problems"][0].startswith(
        "the speech session is retrying (drop) for "
    )
    redis_client.hsetnx(keys.relay_state("unclaimed"), keys.RELAY_REFUSED_SINCE, repr(time.time() - 90))
    assert event_of(status.snapshot(redis_client), "unclaimed")["problems"][0].startswith(
        "the speech service (KWIKmotion) has refused the session for 1m"
    )
    # Time passes with nothing written: the primary's audio is old news.
    later = event_of(status.snapshot(redis_client, time.time() + 30), "unclaimed")
    assert any("the primary publisher's audio stopped" in p for p in later["problems"])


async def test_round_trips_do_not_grow_with_events(redis_client: redis.Redis, aredis: aioredis.Redis) -> None:
    now = time.time()
    costs = []
    for n in (2, 40):
        for i in range(n):
            eid = f"n{n}-{i}"
            order(redis_client, eid, now - 60, now + 3600)
            await publish(aredis, eid)
        snap = status.snapshot(redis_client)
        costs.append(snap["cost"])
    assert costs[0]["round_trips"] == costs[1]["round_trips"] == 3
    assert costs[1]["commands"] > costs[0]["commands"]


async def test_a_month_of_ended_events_costs_nothing(redis_client: redis.Redis) -> None:
    """The registry keeps events for the retention period (30 days): the snapshot reads the ones
    around now from the window index, not every event of the month."""
    now = time.time()
    order(redis_client, "live", now - 60, now + 3600)
    before = status.snapshot(redis_client, now)["cost"]["commands"]
    for i in range(300):  # ten a day for a month, all over
        order(redis_client, f"old-{i}", now - 86400 * 30 + i * 8640, now - 86400 * 30 + i * 8640 + 3600)
    snap = status.snapshot(redis_client, now)
    assert [e["id"] for e in snap["events"]] == ["live"]
    assert snap["cost"]["commands"] == before


def test_redis_unreachable(monkeypatch: Any, capsys: Any) -> None:
    monkeypatch.setenv("REACHLIVE_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    assert status.main([]) == 2  # the screen says why; 2 as every console command (redis_io)
    out = capsys.readouterr().out
    assert "! Redis unreachable (redis://127.0.0.1:" in out
    assert status.main(["--json"]) == 2
    snap = json.loads(capsys.readouterr().out)
    assert snap["redis"]["ok"] is False and snap["events"] == []
