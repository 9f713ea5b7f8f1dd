"""The relay against every reading of the KWIKmotion seed the emulator plays (issue 17): session or
chunk time base, results out of chunk order, no AddTranslation for an empty transcript, results
without word_count/language, words moved across chunk boundaries, messages the seed does not
list. Whatever the reading: every word once, in order, timings non-decreasing, non-overlapping
and within the media, the end of stream, the tasks READY, and no result dropped. Also a KWIKmotion
drop and a takeover by another relay mid-event under every reading at once (``all``).

The audio is the JFK sample with 4 s of faint noise (silence) inserted after its first 4 s, so that chunks
2 and 3 (2 s each) transcribe to nothing: the "omit" reading then sends no translation for them,
mid-stream, not only at the end."""

from __future__ import annotations

import asyncio
import itertools

import numpy as np
import pytest
import redis
from prometheus_client import REGISTRY

from emulators.kwikmotion import KwikmotionEmulator
from emulators.kwikmotion.variants import VARIANT_NAMES, VARIANTS
from emulators.media import JFK_TEXT
from emulators.registry import make_event
from shared import keys
from shared.kwikmotion import DROP_REASONS, MISSING_REASONS
from tests.relay.conftest import RelayRunner
from tests.relay.helpers import (
    TOKEN,
    check_audio,
    check_captions,
    config,
    feed,
    feed_paced,
    finalize_commands,
    jfk_pcm,
    open_session,
    responses,
    session_acked,
)
from tests.support.polling import eventually as wait_for

SECOND = 32000
WORDS = JFK_TEXT.split()


def _pcm() -> bytes:
    pcm = jfk_pcm()
    # Faint noise rather than zeros: silence the emulator hears no words in, and audio that a
    # test can still find in the stream (check_audio looks a session's first chunk up).
    hiss = np.random.default_rng(17).integers(-20, 20, 4 * SECOND // 2, dtype="<i2").tobytes()
    return pcm[: 4 * SECOND] + hiss + pcm[4 * SECOND :]


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _dropped() -> float:
    return sum(_metric("reachlive_relay_kwikmotion_results_dropped_total", reason=r) for r in DROP_REASONS)


def _missing(result: str) -> float:
    return sum(
        _metric("reachlive_relay_kwikmotion_results_missing_total", result=result, reason=r) for r in MISSING_REASONS
    )


def _emulator(variant: str) -> KwikmotionEmulator:
    return KwikmotionEmulator(
        host="127.0.0.1",
        port=0,
        token=TOKEN,
        reference_text=JFK_TEXT,
        reference_seconds=11.0,
        ping_interval=None,
        variant=variant,
        hold_seconds=3.0,
    )


def check_timings(resp: list[dict], duration: float) -> None:
    """Each type's responses, and the words inside them, go forward in time without overlap,
    within the media."""
    for rtype in ("transcript", "captions"):
        rs = [r for r in resp if r["type"] == rtype and not r["is_end_of_stream"]]
        for a, b in itertools.pairwise(rs):
            assert a["end"] <= b["start"] + 1e-6, f"{rtype} responses overlap: {a['end']} > {b['start']}"
        items = [i for r in rs for i in r["alternatives"][0]["items"]]
        for r in rs:
            assert 0.0 <= r["start"] <= r["end"] <= duration + 1e-6
        for i in items:
            assert 0.0 <= i["start"] <= i["end"] <= duration + 1e-6
        for a, b in itertools.pairwise(items):
            assert a["end"] <= b["start"] + 1e-6, f"{rtype} words overlap or go back: {a} → {b}"


def check_task(client: redis.Redis, event_id: str, task_id: str, duration: float, label: str = "") -> None:
    resp = responses(client, event_id, task_id)
    check_captions(resp, duration)
    check_timings(resp, duration)
    tr = [r for r in resp if r["type"] == "transcript" and not r["is_end_of_stream"]]
    words = [w for r in tr for w in r["alternatives"][0]["transcript"].split() if w != label]
    assert words == WORDS, "a word lost, repeated or out of order"


async def _event(client: redis.Redis, emu: KwikmotionEmulator, relays: RelayRunner, redis_url: str, event_id: str):
    pcm = _pcm()
    ev = make_event(client, event_id, targets=("fr", "es"))
    feed(client, ev.id, pcm)
    relays.start(config(redis_url, emu.url))
    open_session(client, ev.id)
    await wait_for(lambda: session_acked(client) and len(finalize_commands(client)) == 3, timeout=30)
    return pcm, ev


@pytest.mark.parametrize("variant", VARIANT_NAMES)
async def test_whole_event_under_every_reading(redis_client, relays, redis_url, variant: str) -> None:
    reading = VARIANTS[variant]
    before = {
        "dropped": _dropped(),
        "missing_transcripts": _missing("transcript"),
        "missing_translations": _missing("translation"),
        "chunk": _metric("reachlive_relay_kwikmotion_time_base_total", base="chunk"),
        "session": _metric("reachlive_relay_kwikmotion_time_base_total", base="session"),
        "derived": _metric("reachlive_relay_kwikmotion_fields_derived_total", field="word_count"),
        "unknown": _metric("reachlive_relay_kwikmotion_unknown_messages_total"),
        "clamped": _metric("reachlive_relay_kwikmotion_times_clamped_total"),
    }
    async with _emulator(variant) as emu:
        pcm, ev = await _event(redis_client, emu, relays, redis_url, "1700")
        [rec] = emu.started_sessions()
    assert rec.audio == pcm
    duration = round(len(pcm) / SECOND, 3)
    check_task(redis_client, ev.id, ev.caption_task, duration)
    for lang, task in ev.translation_tasks.items():
        check_task(redis_client, ev.id, task, duration, label=f"[{lang}]")
    assert sorted(finalize_commands(redis_client)) == sorted([t, "ready", ""] for t in ev.task_ids)
    # Nothing dropped, no transcript given up; translations missing only where the server omits
    # them (empty transcripts), and then released as empty ones (check_captions: they tile).
    assert _dropped() == before["dropped"]
    assert _missing("transcript") == before["missing_transcripts"]
    omitted = _missing("translation") - before["missing_translations"]
    assert (omitted > 0) == (reading.empty_translations == "omit")
    # What the relay noticed about the reading.
    base = reading.times
    assert _metric("reachlive_relay_kwikmotion_time_base_total", base=base) == before[base] + 1
    derived = _metric("reachlive_relay_kwikmotion_fields_derived_total", field="word_count") - before["derived"]
    assert (derived > 0) == reading.sparse
    unknown = _metric("reachlive_relay_kwikmotion_unknown_messages_total") - before["unknown"]
    assert (unknown > 0) == reading.extra_messages
    if reading.boundary:
        assert _metric("reachlive_relay_kwikmotion_times_clamped_total") > before["clamped"]


async def test_drop_mid_event_under_every_reading(redis_client, relays, redis_url) -> None:
    """A KWIKmotion drop after 3 chunks under ``all``: the new session replays from the cursor
    (results arrive reordered, chunk-relative, with a boundary word held back) and every word
    still comes once per task."""
    async with _emulator("all") as emu:
        emu.faults.update({"drop_after_chunks": 3})
        pcm, ev = await _event(redis_client, emu, relays, redis_url, "1710")
        sessions = emu.started_sessions()
    assert len(sessions) >= 2, "the fault did not cause a reconnect"
    check_audio(sessions, pcm)
    duration = round(len(pcm) / SECOND, 3)
    check_task(redis_client, ev.id, ev.caption_task, duration)
    for lang, task in ev.translation_tasks.items():
        check_task(redis_client, ev.id, task, duration, label=f"[{lang}]")


async def test_takeover_mid_event_under_every_reading(redis_client, relays, redis_url) -> None:
    """Another replica takes the session (and the fencing epoch) mid-event under ``all``; the
    session fails over back and resumes from the persisted cursor: every word once per task."""
    from services.relay.writer import claim_epoch

    pcm = _pcm()
    ev = make_event(redis_client, "1720", targets=("fr",))
    async with _emulator("all") as emu:
        relays.start(config(redis_url, emu.url), name="relay-a")
        open_session(redis_client, ev.id)
        feeder = asyncio.create_task(feed_paced(redis_client, ev.id, pcm, interval=0.1))
        await wait_for(lambda: all(redis_client.xlen(keys.captions(ev.id, t)) > 0 for t in ev.task_ids))
        [entry] = redis_client.xpending_range(keys.SESSIONS_STREAM, keys.RELAY_GROUP, "-", "+", 10)
        redis_client.xclaim(keys.SESSIONS_STREAM, keys.RELAY_GROUP, "intruder", 0, [entry["message_id"]], justid=True)
        import redis.asyncio as aioredis

        async with aioredis.Redis.from_url(redis_url) as client:
            await claim_epoch(client, ev.id)
        await wait_for(lambda: emu.sessions[0].finished, timeout=5)
        await feeder
        await wait_for(lambda: session_acked(redis_client), timeout=30)
        sessions = emu.started_sessions()
    assert len(sessions) == 2
    check_audio(sessions, pcm)
    duration = round(len(pcm) / SECOND, 3)
    check_task(redis_client, ev.id, ev.caption_task, duration)
    check_task(redis_client, ev.id, ev.translation_tasks["fr"], duration, label="[fr]")
    assert sorted(finalize_commands(redis_client)) == sorted([t, "ready", ""] for t in ev.task_ids)


async def test_pause_with_idle_close_under_every_reading(redis_client, relays, redis_url) -> None:
    """A media pause mid-speech under ``all``: the partial chunk is flushed, the held results come
    (the emulator's hold), the session closes idle and reopens from the cursor (a clean end: no
    priming, so the word the flushed chunk ended with is not heard twice): every word once."""
    from tests.relay.helpers import feed_part

    pcm = _pcm()
    ev = make_event(redis_client, "1730", targets=("fr",))
    emu = _emulator("all")
    emu.hold_seconds = 0.5  # held results go out before the relay takes the server for silent
    async with emu:
        relays.start(config(redis_url, emu.url, flush_after_seconds=0.3, idle_close_seconds=0.5))
        open_session(redis_client, ev.id)
        feed_part(redis_client, ev.id, pcm, 0, 11 * SECOND)
        await wait_for(lambda: emu.sessions and emu.sessions[0].finished, timeout=20)
        assert (emu.sessions[0].closed_code, emu.sessions[0].closed_reason) == (1000, "idle")
        feed_part(redis_client, ev.id, pcm, 11 * SECOND, len(pcm), eos=True)
        await wait_for(lambda: session_acked(redis_client), timeout=30)
        sessions = emu.started_sessions()
    assert len(sessions) == 2 and sessions[0].audio + sessions[1].audio == pcm
    duration = round(len(pcm) / SECOND, 3)
    check_task(redis_client, ev.id, ev.caption_task, duration)
    check_task(redis_client, ev.id, ev.translation_tasks["fr"], duration, label="[fr]")
