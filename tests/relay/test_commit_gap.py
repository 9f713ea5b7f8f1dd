"""Caption commits lost by a Redis failover (issue 18): the old master acknowledged a commit that
never reached the replica promoted in its place. Simulated deterministically on the one real
Redis: the relay state is rolled back exactly as a lagging replica has it (the last commit's
caption entries gone, ``keys.RELAY_COMMIT``, the cursor and the task positions as before it), then
the event goes on. The relay's next commit finds the stored state behind it, the session restarts
from the persisted cursor, and the lost captions are computed again: every word once, no
response id twice."""

from __future__ import annotations

import asyncio
import logging
import time

import redis
from prometheus_client import REGISTRY

from emulators.media import JFK_TEXT
from emulators.registry import make_event
from services.relay import connection
from services.relay.writer import CaptionWriter, CommitGap, Pending, claim_epoch
from shared import keys
from tests.relay.helpers import (
    CHUNK_BYTES,
    audio_entries,
    check_captions,
    config,
    feed_part,
    finalize_commands,
    jfk_pcm,
    open_session,
    responses,
    session_acked,
)
from tests.support.polling import eventually as wait_for


def _gaps() -> float:
    return REGISTRY.get_sample_value("reachlive_relay_commit_gaps_total") or 0.0


def _state(client: redis.Redis, event_id: str) -> dict[bytes, bytes]:
    return client.hgetall(keys.relay_state(event_id))


async def _settled(client: redis.Redis, event_id: str, last_audio: bytes) -> dict[bytes, bytes]:
    """Wait until the relay committed everything up to ``last_audio`` and nothing moved for a
    while (it is waiting for more audio): the state a replica may lag behind."""
    key = keys.relay_state(event_id)
    await wait_for(lambda: client.hget(key, keys.RELAY_CURSOR) == last_audio, 30)
    while True:
        before = _state(client, event_id)
        await asyncio.sleep(0.5)
        if _state(client, event_id) == before:
            return before


def _roll_back(
    client: redis.Redis,
    event_id: str,
    task_ids: list[str],
    snapshot: dict,
    tails: dict,
    audio_dump: bytes,
    since: list[tuple[bytes, dict]],
) -> int:
    """Make the relay state what a replica that missed the commits since ``snapshot`` holds:
    the state hash as it was, the caption entries written since gone, and the audio their trim
    (XTRIM MINID) removed back (the audio as it was, plus the entries ``since`` added since, same
    ids). One MULTI: atomic against the relay's own script. Returns how many caption entries were
    removed."""
    removed = 0
    audio = keys.audio(event_id)
    tmp = audio + ":rollback"
    with client.pipeline(transaction=True) as pipe:
        pipe.delete(keys.relay_state(event_id))
        pipe.hset(keys.relay_state(event_id), mapping=snapshot)
        pipe.restore(tmp, 0, audio_dump, replace=True)
        for entry_id, fields in since:
            pipe.xadd(tmp, fields, id=entry_id)
        pipe.rename(tmp, audio)
        for t in task_ids:
            ids = [i for i, _f in client.xrange(keys.captions(event_id, t), f"({tails[t]}", "+")]
            removed += len(ids)
            if ids:
                pipe.xdel(keys.captions(event_id, t), *ids)
        pipe.execute()
    return removed


def _tail(client: redis.Redis, key: str) -> str:
    last = client.xrevrange(key, "+", "-", count=1)
    return last[0][0].decode() if last else "0-0"


async def test_commit_lost_by_a_failover_is_computed_again(
    redis_client, emu, relays, redis_url, caplog, monkeypatch
) -> None:
    caplog.set_level(logging.INFO)
    # Every commit that moves the cursor trims the audio (the relay trims every few seconds of
    # media otherwise), so the lost commits surely trimmed some: the replay must not need it.
    monkeypatch.setattr(connection, "TRIM_EVERY_SECONDS", 0.0)
    pcm = jfk_pcm()
    ev = make_event(redis_client, "gap1", targets=("fr",))
    audio = keys.audio(ev.id)
    gaps = _gaps()
    relays.start(config(redis_url, emu.url))
    open_session(redis_client, ev.id)
    # Whole chunks, one at a time, so the relay's commits can be told apart.
    feed_part(redis_client, ev.id, pcm, 0, 2 * CHUNK_BYTES)
    snapshot = await _settled(redis_client, ev.id, _tail(redis_client, audio).encode())
    tails = {t: _tail(redis_client, keys.captions(ev.id, t)) for t in ev.task_ids}
    audio_dump = redis_client.dump(audio)
    audio_head = redis_client.xrange(audio, count=1)[0][0]
    since = [
        (redis_client.xadd(audio, fields), fields)
        for fields in audio_entries(pcm[2 * CHUNK_BYTES : 3 * CHUNK_BYTES], t0=2 * CHUNK_BYTES / 32000)
    ]
    after = await _settled(redis_client, ev.id, _tail(redis_client, audio).encode())
    epoch, committed = after[keys.RELAY_COMMIT.encode()].decode().split(":")
    was = snapshot[keys.RELAY_COMMIT.encode()].decode().split(":")
    assert was[0] == epoch and int(was[1]) < int(committed), (was, committed)
    # The lost commits trimmed the audio behind their cursor (exactly: a 500 ms entry outweighs a
    # stream node's 4 kB, so each is a node of its own); a lagging replica still has it.
    assert redis_client.xrange(audio, count=1)[0][0] > audio_head
    removed = await asyncio.to_thread(_roll_back, redis_client, ev.id, ev.task_ids, snapshot, tails, audio_dump, since)
    assert removed > 0, "the rolled back commits wrote no caption"
    sessions = len(emu.started_sessions())
    # The event goes on: the relay's next commit follows one the state no longer has.
    feed_part(redis_client, ev.id, pcm, 3 * CHUNK_BYTES, len(pcm), eos=True)
    await wait_for(lambda: session_acked(redis_client) and len(finalize_commands(redis_client)) == 2, 60)
    duration = round(len(pcm) / 32000, 3)
    check_captions(responses(redis_client, ev.id, ev.caption_task), duration, JFK_TEXT.split())
    check_captions(responses(redis_client, ev.id, ev.translation_tasks["fr"]), duration)
    assert _gaps() == gaps + 1
    assert len(emu.started_sessions()) == sessions + 1, "the session restarted once, from the cursor"
    # The restarted session replayed the audio after the persisted cursor: the third chunk again.
    replay = emu.started_sessions()[-1].audio
    start = pcm.find(replay[:CHUNK_BYTES])
    assert pcm[start:] == replay, (start, len(pcm), len(replay))
    assert start in (CHUNK_BYTES, 2 * CHUNK_BYTES), start  # the cursor, or the prime before it
    lines = [r.getMessage() for r in caplog.records if "redis lost earlier commits" in r.getMessage()]
    assert len(lines) == 1, lines
    assert sorted(finalize_commands(redis_client)) == sorted([t, "ready", ""] for t in ev.task_ids)


async def test_gap_applied_and_retried_commits_told_apart(aredis, redis_client) -> None:
    """The script's answers: a commit after the stored one is applied; the same commit again
    (its reply lost) is found applied, not a gap; a commit after one the state lacks is a gap,
    and writes nothing; a new connection's first commit follows what is stored."""
    ev = make_event(redis_client, "gap2", targets=())
    epoch = await claim_epoch(aredis, ev.id)
    writer = CaptionWriter(aredis, ev.id, [ev.caption_task], epoch, 1000, int(time.time()) + 3600)
    captions = keys.captions(ev.id, ev.caption_task)

    def entry(n: int) -> Pending:
        return Pending(0, {"n": str(n)})

    one = writer.prepare([entry(1)], {keys.RELAY_CURSOR: "1-0"})
    assert await writer.apply(one) is True
    assert await writer.apply(one) is False  # retried after a lost reply: applied once
    two = writer.prepare([entry(2)], {keys.RELAY_CURSOR: "2-0"})
    assert await writer.apply(two) is True
    # A failover lost commit two: the state is commit one's.
    redis_client.hset(
        keys.relay_state(ev.id), mapping={keys.RELAY_COMMIT: f"{epoch}:{one.seq}", keys.RELAY_CURSOR: "1-0"}
    )
    redis_client.xdel(captions, redis_client.xrevrange(captions, count=1)[0][0])
    three = writer.prepare([entry(3)], {keys.RELAY_CURSOR: "3-0"})
    try:
        await writer.apply(three)
        raise AssertionError("a commit after a lost one was applied")
    except CommitGap as gap:
        assert gap.after == two.seq
    assert [f[b"n"] for _i, f in redis_client.xrange(captions)] == [b"1"]
    assert redis_client.hget(keys.relay_state(ev.id), keys.RELAY_CURSOR) == b"1-0"
    # The session restarts from the stored state: its next commit follows commit one.
    writer.numbers.resync(redis_client.hget(keys.relay_state(ev.id), keys.RELAY_COMMIT).decode(), epoch)
    again = writer.prepare([entry(2)], {keys.RELAY_CURSOR: "2-0"})
    assert again.seq > three.seq and again.after == one.seq
    assert await writer.apply(again) is True
    # Commit three, landing late (sent before the gap was seen), is older than what is stored.
    assert await writer.apply(three) is False
    assert [f[b"n"] for _i, f in redis_client.xrange(captions)] == [b"1", b"2"]
    # A new claim's first commit follows whatever the earlier owner stored.
    newer = await claim_epoch(aredis, ev.id)
    owner = CaptionWriter(aredis, ev.id, [ev.caption_task], newer, 1000, int(time.time()) + 3600)
    owner.numbers.resync(f"{epoch}:{again.seq}", newer)
    assert await owner.apply(owner.prepare([entry(3)], {})) is True
    # ... and one of its commits lost entirely (the stored number is still the earlier owner's).
    redis_client.hset(keys.relay_state(ev.id), keys.RELAY_COMMIT, f"{epoch}:{again.seq}")
    try:
        await owner.apply(owner.prepare([entry(4)], {}))
        raise AssertionError("a commit after a lost one was applied")
    except CommitGap:
        pass
