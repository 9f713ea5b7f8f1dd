"""Redis memory per hour of captions kept (issue 20: captions are kept REACHLIVE_RETENTION_DAYS,
30 by default, after the event; what does that cost?).

One event with a captions task (English) and a translation task (French), ``hours`` of media
(default 1) of continuous speech at ``wpm`` words a minute (default 150, a conversational rate;
the speech sample is 120), in the relay's default 2 s KWIKmotion chunks: each chunk one
AddTranscript and one AddTranslation, turned into Kaltura responses by the relay's own code
(``relay.outputs.make_output``: the caption builder with the reach profile's 26-character lines)
and committed by the relay's own commit script (``relay.writer.CaptionWriter``: the XADDs with the
relay state fields, as in production) into the embedded Redis (6.2, default stream node sizes).
Then ``MEMORY USAGE <key> SAMPLES 0`` (exact) of each task's captions stream, of the relay state,
and of what else the event leaves for the retention period (registry records, ingest state, a
usage record per task).

Printed per hour of media, for the default response types (transcript,captions) and, for
comparison, captions only (REACHLIVE_CAPTION_TYPES=captions). Run:
``.venv/bin/python bench/retention.py [hours=1] [wpm=150]``.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

import redis
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.relay.outputs import entry_fields, make_output  # noqa: E402
from services.relay.writer import CaptionWriter, Pending, caption_maxlen, claim_epoch  # noqa: E402
from shared import keys, registry, usage  # noqa: E402
from shared.captions import AnchoredTimeBase, parse_result  # noqa: E402
from shared.embedded_redis import EmbeddedRedis  # noqa: E402
from shared.registry import EventRecord, TaskRecord  # noqa: E402

CHUNK = 2.0  # REACHLIVE_RELAY_CHUNK_SECONDS default

# Public-domain speech (Kennedy's inaugural address) and a French rendering, looped.
ENGLISH = (
    "We observe today not a victory of party but a celebration of freedom symbolizing an end as well as "
    "a beginning signifying renewal as well as change. For I have sworn before you and Almighty God the "
    "same solemn oath our forebears prescribed nearly a century and three quarters ago. The world is very "
    "different now. And so, my fellow Americans, ask not what your country can do for you; ask what you "
    "can do for your country. My fellow citizens of the world, ask not what America will do for you, but "
    "what together we can do for the freedom of man."
).split()
FRENCH = (
    "Nous célébrons aujourd'hui non pas la victoire d'un parti mais la liberté, symbole d'une fin aussi "
    "bien que d'un commencement, signe de renouveau aussi bien que de changement. Car j'ai prêté devant "
    "vous et devant Dieu tout-puissant le même serment solennel que nos ancêtres ont prescrit il y a près "
    "d'un siècle et trois quarts. Le monde est très différent aujourd'hui. Ainsi, mes chers compatriotes, "
    "ne demandez pas ce que votre pays peut faire pour vous ; demandez ce que vous pouvez faire pour votre "
    "pays. Mes chers concitoyens du monde, ne demandez pas ce que l'Amérique fera pour vous, mais ce que "
    "nous pouvons faire ensemble pour la liberté de l'homme."
).split()


def _take(words: list[str], start: int, n: int) -> str:
    return " ".join(words[(start + i) % len(words)] for i in range(n))


def results(i: int, wpm: float) -> list[dict]:
    """Chunk ``i``'s AddTranscript and AddTranslation (times of the chunk: the relay's offsets)."""
    per_chunk = wpm / 60 * CHUNK
    first, n = int(i * per_chunk), int((i + 1) * per_chunk) - int(i * per_chunk)
    fr_first, fr_n = int(first * len(FRENCH) / len(ENGLISH)), max(1, round(n * len(FRENCH) / len(ENGLISH)))
    meta = {"start_time": 0.0, "end_time": CHUNK}
    text = _take(ENGLISH, first, n)
    return [
        {
            "message": "AddTranscript",
            "metadata": {**meta, "transcript": text, "language": "en", "chunk_index": i, "word_count": n},
        },
        {
            "message": "AddTranslation",
            "metadata": {**meta, "translation": _take(FRENCH, fr_first, fr_n), "target_language": "fr"},
        },
    ]


async def write_event(url: str, event_id: str, hours: float, wpm: float, types: str) -> tuple[str, str]:
    """The event's registry records and ``hours`` of captions of its two tasks, as the relay
    writes them. Returns the task ids."""
    client = redis.Redis.from_url(url)
    aclient = aioredis.Redis.from_url(url)
    now = time.time()
    end = now + hours * 3600
    registry.write_event(client, EventRecord(event_id, "1234567", now, end, 600, 600, "en", "en-US", "live", "1"))
    tasks = [
        TaskRecord(f"{event_id}1", event_id, "1234567", 8, "caption", "en", "en-US", 26, status=3, start=now, end=end),
        TaskRecord(
            f"{event_id}2", event_id, "1234567", 11, "translation", "fr", "fr-FR", 26, status=3, start=now, end=end
        ),
    ]
    for t in tasks:
        registry.write_task(client, t, media_key=f"mk-{t.id}", caption_token=f"ct-{t.id}")
    outs = [make_output(event_id, t, types, None, "0-0") for t in tasks]
    epoch = await claim_epoch(aclient, event_id)
    writer = CaptionWriter(
        aclient, event_id, [t.id for t in tasks], epoch, caption_maxlen(now - 600, end + 600), int(end + 30 * 86400)
    )
    tb = AnchoredTimeBase(0.0, 0.0, now)
    chunks = int(hours * 3600 / CHUNK)
    for i in range(chunks):
        pend: list[Pending] = []
        state: dict[str, str] = {}
        for msg in results(i, wpm):
            result = parse_result(msg)
            for n, out in enumerate(outs):
                if out.builder.accepts(result):
                    built = out.builder.build(result, CHUNK * i, tb)
                    pend += [Pending(n, entry_fields(b, time.time())) for b in built]
                    out.done = f"{int(now * 1000) + i}-0"
                    out.count(built)
                    state[keys.relay_task_field(out.id)] = out.dump()
                    state[keys.relay_usage_field(out.id)] = out.usage(CHUNK * (i + 1))
        state[keys.RELAY_CURSOR] = f"{int(now * 1000) + i}-0"
        await writer.commit(pend, state)
    final = {keys.RELAY_FINISHED: "1", keys.RELAY_OUTCOME: "ready", keys.RELAY_REASON: ""}
    pend = [
        Pending(n, entry_fields(b, time.time()))
        for n, o in enumerate(outs)
        for b in o.builder.end_of_stream(chunks * CHUNK, tb)
    ]
    await writer.commit(pend, final)
    client.hset(
        keys.ingest_state(event_id),
        mapping={
            "samples": str(chunks * 32000),
            "eos": "1",
            "pts_end": "0",
            "epoch_end": repr(end),
            "alive": repr(end),
            "writer": "p",
        },
    )
    for t in tasks:
        rec = registry.read_task_sync(client, event_id, t.id)
        assert rec is not None
        from services.poller.usage import build

        usage.append(client, build(client, rec, 2, end), 30 * 86400, end)
    await aclient.aclose()
    client.close()
    return tasks[0].id, tasks[1].id


def memory(client: redis.Redis, key: str) -> int:
    return int(client.memory_usage(key, samples=0) or 0)


def measure(url: str, hours: float, wpm: float, types: str, event_id: str) -> None:
    client = redis.Redis.from_url(url)
    before = int(client.info("memory")["used_memory"])
    caption, translation = asyncio.run(write_event(url, event_id, hours, wpm, types))
    grown = int(client.info("memory")["used_memory"]) - before
    rows = []
    for name, task in (("captions task (en)", caption), ("translation task (fr)", translation)):
        key = keys.captions(event_id, task)
        entries = client.xlen(key)
        kinds = {}
        for _id, f in client.xrange(key):
            kinds[f[b"kind"].decode()] = kinds.get(f[b"kind"].decode(), 0) + 1
        rows.append((name, memory(client, key), entries, kinds))
    print(f"REACHLIVE_CAPTION_TYPES={types}, {hours:g} h of speech at {wpm:g} words/min, {CHUNK:g} s chunks:")
    for name, size, entries, kinds in rows:
        print(
            f"  {name}: {size / hours / 1e6:.2f} MB per hour of captions "
            f"({size / hours:,.0f} bytes; {entries / hours:,.0f} responses/h: {kinds})"
        )
    other = {
        "relay state": memory(client, keys.relay_state(event_id)),
        "registry (event, its task set, 2 tasks, 2 task→event)": sum(
            memory(client, k)
            for k in (
                keys.event(event_id),
                keys.event_tasks(event_id),
                keys.task(event_id, caption),
                keys.task(event_id, translation),
                keys.task_event(caption),
                keys.task_event(translation),
            )
        ),
        "ingest state": memory(client, keys.ingest_state(event_id)),
    }
    print("  kept with them, per event (whatever its length): " + ", ".join(f"{k} {v:,} B" for k, v in other.items()))
    print(f"  check: Redis used_memory grew {grown / hours / 1e6:.2f} MB per hour for the whole event (both tasks)")
    client.close()


def usage_record_bytes(url: str) -> None:
    client = redis.Redis.from_url(url)
    client.delete(keys.USAGE_STREAM, keys.USAGE_RECORDED)
    now = time.time()
    n = 2000
    for i in range(n):
        rec = usage.Record(
            "1234567",
            str(90000000 + i // 2),
            str(1700000000 + i),
            "captions",
            "8",
            "en",
            "en",
            "ready",
            now - 3600,
            now,
            now,
            3600.0,
            3598.25,
            9000,
        )
        usage.append(client, rec, 30 * 86400, now + i)
    size = memory(client, keys.USAGE_STREAM) + memory(client, keys.USAGE_RECORDED)
    print(f"usage records: {size / n:,.0f} bytes per task (stream + the recorded set, {n} records)")
    client.close()


def main() -> None:
    hours = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    wpm = float(sys.argv[2]) if len(sys.argv) > 2 else 150.0
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp)) as server:
        version = redis.Redis.from_url(server.url).info("server")["redis_version"]
        print(f"Redis {version} (MEMORY USAGE ... SAMPLES 0)")
        measure(server.url, hours, wpm, "transcript,captions", "91000001")
        measure(server.url, hours, wpm, "captions", "91000002")
        usage_record_bytes(server.url)


if __name__ == "__main__":
    main()
