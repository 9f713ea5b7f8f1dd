"""What ``reachlive status`` costs at 500 live events (issue 20: cheap enough to run every second).

Setup, on the embedded Redis (or ``REACHLIVE_REDIS_URL``), with the project's own writers: N live
events (a caption and a translation task each, the registry as the poller writes it), each with a
media session opened and audio written by the ingest's coordinator, a primary and a standby
publisher recorded by the ingest's presence writer, a session claimed by one of two relay
consumers (claim epoch, a caption commit with the cursor), and two gateway processes' heartbeats
with one caption connection per task (the gateway's lineage store); plus M events scheduled for
tomorrow, which only sit in the registry's index (read, not shown).

Then ``snapshot()`` is taken K times, as ``reachlive status --watch 1`` would. Printed: wall time
per snapshot (p50 / p95 / max), the client's CPU per snapshot, ``render()`` time, Redis round trips
and commands per snapshot (the snapshot's own count, checked against Redis's INFO commandstats),
Redis's CPU per snapshot (INFO's used_cpu_sys + used_cpu_user), and the JSON's size.

Run: ``.venv/bin/python bench/console.py [events=500] [snapshots=30] [upcoming=500]``. The
machine is shared: figures are an upper bound.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import redis
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._measure import percentile  # noqa: E402
from services.console import status  # noqa: E402
from services.gateway.lineage import LineageStore  # noqa: E402
from services.ingest import presence  # noqa: E402
from services.ingest.coordinator import Coordinator  # noqa: E402
from services.relay.claim import Claimer  # noqa: E402
from services.relay.writer import CaptionWriter, Pending, claim_epoch  # noqa: E402
from shared import keys, redis_health, registry  # noqa: E402
from shared.aio import TaskSet  # noqa: E402
from shared.embedded_redis import EmbeddedRedis  # noqa: E402
from shared.streams import AudioChunk, CaptionEntry  # noqa: E402


def order(client: redis.Redis, event_id: str, start: float, end: float) -> list[str]:
    registry.write_event(client, registry.EventRecord(id=event_id, partner_id="5173642", start=start, end=end))
    tasks = []
    for suffix, kind, lang in (("c", "caption", "en"), ("t", "translation", "fr")):
        task_id = f"{event_id}{suffix}"
        record = registry.TaskRecord(id=task_id, event=event_id, kind=kind, language=lang, status=3)
        registry.write_task(client, record, media_key=f"k-{task_id}", caption_token=f"t-{task_id}")
        tasks.append(task_id)
    return tasks


async def populate(url: str, events: int, upcoming: int) -> None:
    sync = redis.Redis.from_url(url)
    client = aioredis.Redis.from_url(url)
    now = time.time()
    coord = Coordinator(client, chunk_ms=500, retention_seconds=900)
    claimers = [Claimer(client, f"relay-{i}", failover_seconds=10) for i in range(2)]
    await claimers[0].ensure_group()
    per_event: dict[str, list[str]] = {}
    pcm = b"\1\0" * 8000  # 0.5 s
    for i in range(events):
        eid = f"9{i:05d}"
        tasks = per_event[eid] = order(sync, eid, now - 600, now + 3000)
        await coord.mark_seen(eid)
        await coord.open_session(eid)
        await coord.acquire(eid, f"{eid}-a")
        await coord.write(eid, f"{eid}-a", 0, AudioChunk(0.0, 0.0, now - 0.5, pcm), now, 0)
        await presence.announce(client, eid, f"{eid}-a", tasks[0], "198.51.100.7:41000", 0.1)
        await presence.announce(client, eid, f"{eid}-b", tasks[1], "198.51.100.8:41001", 0.2)
    for i in range(upcoming):
        order(sync, f"8{i:05d}", now + 86400, now + 90000)
    # Two relays share the sessions, as new entries come.
    for n, claimer in enumerate(claimers):
        for claimed in await claimer.read_new(events // 2 + (events % 2) * (1 - n), block_ms=10):
            eid = claimed.event_id
            assert eid is not None
            epoch = await claim_epoch(client, eid, claimer.consumer)
            writer = CaptionWriter(client, eid, per_event[eid], epoch, maxlen=10_000, expire_at=0)
            entry = CaptionEntry(json='{"response": {}}', kind="captions", eos=False, created=time.time()).fields()
            state = {
                keys.RELAY_CURSOR: "1-0",
                keys.RELAY_COMMITTED_MEDIA: "0.0",
                keys.RELAY_COMMITTED_AT: repr(time.time()),
                **{keys.relay_captioned_field(t): repr(time.time()) for t in per_event[eid]},
            }
            await writer.commit([Pending(0, entry), Pending(1, entry)], state)
    # Two gateway processes, each with one connection per task of half the events.
    tasks = TaskSet("bench-gateways")
    refs = [(e, t) for e, ts in per_event.items() for t in ts]
    for g in range(2):
        store = LineageStore(client, tasks, redis_health.get("gateway"))
        mine = {ref: 1 for ref in refs[g::2]}
        store.connections = lambda mine=mine: mine
        store._start_beating()
    await asyncio.sleep(1.5)  # the first beats: the connection hashes are written
    assert sync.zcard(keys.GATEWAY_INSTANCES) == 2
    await tasks.close(timeout=5)
    await client.aclose()
    sync.close()


def redis_figures(client: redis.Redis) -> tuple[int, float]:
    """(commands processed so far, Redis CPU seconds so far); INFO itself counts as one."""
    stats = client.info("commandstats")
    calls = sum(int(v["calls"]) for v in stats.values())
    cpu = client.info("cpu")
    return calls, float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])


def measure(url: str, snapshots: int) -> None:
    client = redis.Redis.from_url(url)
    snap = status.snapshot(client)  # warm: connection made, scripts none
    times, cpus, renders = [], [], []
    calls0, rcpu0 = redis_figures(client)
    for _ in range(snapshots):
        t0, c0 = time.perf_counter(), time.process_time()
        snap = status.snapshot(client)
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        t0 = time.perf_counter()
        screen = status.render(snap)
        renders.append(time.perf_counter() - t0)
    calls1, rcpu1 = redis_figures(client)
    live = sum(e["phase"] == "live" for e in snap["events"])
    counted = (calls1 - calls0 - 2) / snapshots  # the two INFO calls of the second reading
    ms = [t * 1000 for t in times]
    print(f"events shown: {len(snap['events'])} ({live} live); screen: {len(screen.splitlines())} lines")
    print(f"snapshot(): p50 {percentile(ms, 0.5):.1f} ms, p95 {percentile(ms, 0.95):.1f} ms, max {max(ms):.1f} ms")
    print(f"  client CPU per snapshot: {1000 * sum(cpus) / snapshots:.1f} ms")
    print(f"  Redis round trips: {snap['cost']['round_trips']}, commands: {snap['cost']['commands']}")
    print(f"  Redis commands per snapshot (INFO commandstats): {counted:.0f}")
    print(f"  Redis CPU per snapshot (INFO used_cpu): {1000 * (rcpu1 - rcpu0) / snapshots:.1f} ms")
    print(f"render(): p50 {1000 * percentile(renders, 0.5):.1f} ms")
    print(f"--json size: {len(json.dumps(snap)) / 1024:.0f} KiB")
    client.close()


def main(argv: list[str]) -> int:
    events = int(argv[0]) if argv else 500
    snapshots = int(argv[1]) if len(argv) > 1 else 30
    upcoming = int(argv[2]) if len(argv) > 2 else 500
    url = os.environ.get("REACHLIVE_REDIS_URL", "")
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        server = None
        if not url:
            server = EmbeddedRedis(Path(tmp)).start()
            url = server.url
        try:
            started = time.perf_counter()
            asyncio.run(populate(url, events, upcoming))
            print(f"console bench: {events} live events, {upcoming} scheduled tomorrow, {snapshots} snapshots")
            print(f"  (setup with the services' writers: {time.perf_counter() - started:.1f} s)")
            measure(url, snapshots)
        finally:
            if server is not None:
                server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
