"""The relay through a broadcast day (issue 16, docs/design.md section 4): media pauses (a partial chunk
flushed, the KWIKmotion session closed when idle and reopened when audio returns), a task
ordered mid-event, and KWIKmotion refusing the session (401, 4004 for the source language: slow
retries, an alert at once, ERROR past the deadline) or one target language (4004: only that
language's tasks end). Real relay code, the KWIKmotion emulator and the embedded Redis."""

from __future__ import annotations

import asyncio
import logging

import redis
from prometheus_client import REGISTRY

from emulators.media import JFK_TEXT
from emulators.registry import make_event
from shared import commands, keys
from tests.relay.helpers import (
    add_task,
    check_audio,
    check_captions,
    config,
    feed_paced,
    feed_part,
    finalize_commands,
    jfk_pcm,
    open_session,
    responses,
    sent_commands,
    session_acked,
)
from tests.support.polling import eventually as wait_for

SECOND = 32000  # bytes of 16 kHz s16le


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _duration(pcm: bytes) -> float:
    return round(len(pcm) / SECOND, 3)


def _transcript_end(client: redis.Redis, event_id: str, task_id: str) -> float:
    tr = [r for r in responses(client, event_id, task_id) if r["type"] == "transcript" and not r["is_end_of_stream"]]
    return tr[-1]["end"] if tr else 0.0


async def test_pause_longer_than_idle_closes_then_reopens(redis_client, emu, relays, redis_url) -> None:
    """5 s of audio, a pause past the idle time, the rest: the first KWIKmotion session is closed
    (1000 "idle") once everything sent was answered, a second opens when audio returns and
    resumes at the cursor: every byte sent once in total, every caption once."""
    closes = _metric("reachlive_relay_idle_closes_total")
    reopens = _metric("reachlive_relay_idle_reopens_total")
    reconnects = sum(
        _metric("reachlive_relay_reconnects_total", cause=c) for c in ("drop", "closed", "other", "silent")
    )
    pcm = jfk_pcm()
    ev = make_event(redis_client, "1100", targets=("fr",))
    relays.start(config(redis_url, emu.url, flush_after_seconds=0.3, idle_close_seconds=1.0))
    open_session(redis_client, ev.id)
    feed_part(redis_client, ev.id, pcm, 0, 5 * SECOND)
    await wait_for(lambda: emu.sessions and emu.sessions[0].finished, timeout=20)
    first = emu.sessions[0]
    assert (first.closed_code, first.closed_reason) == (1000, "idle")
    assert first.audio == pcm[: 5 * SECOND]  # the partial last second was flushed before closing
    assert _metric("reachlive_relay_idle_closes_total") == closes + 1
    await asyncio.sleep(0.5)
    assert len(emu.sessions) == 1, "a session was opened during the pause"
    assert not finalize_commands(redis_client)
    feed_part(redis_client, ev.id, pcm, 5 * SECOND, len(pcm), eos=True)
    await wait_for(lambda: session_acked(redis_client), timeout=30)
    sessions = emu.started_sessions()
    assert len(sessions) == 2
    assert sessions[0].audio + sessions[1].audio == pcm  # nothing lost, nothing sent twice
    assert _metric("reachlive_relay_idle_reopens_total") == reopens + 1
    # An idle close is not a failure: no reconnect counted.
    assert (
        sum(_metric("reachlive_relay_reconnects_total", cause=c) for c in ("drop", "closed", "other", "silent"))
        == reconnects
    )
    # Every reference word once, in order, across the seam of the two sessions.
    check_captions(responses(redis_client, ev.id, ev.caption_task), _duration(pcm), JFK_TEXT.split())
    check_captions(responses(redis_client, ev.id, ev.translation_tasks["fr"]), _duration(pcm))
    assert sorted(finalize_commands(redis_client)) == sorted([t, "ready", ""] for t in ev.task_ids)


async def test_partial_chunk_flushed_during_pause(redis_client, emu, relays, redis_url) -> None:
    """The words before a pause are captioned during the pause: the 1 s left over after two 2 s
    chunks is sent as a shorter chunk once no audio came for flush_after_seconds, and the
    KWIKmotion session is kept (pings) within the idle time."""
    flushed = _metric("reachlive_relay_partial_chunks_flushed_total")
    pcm = jfk_pcm()
    ev = make_event(redis_client, "1200", targets=())
    relays.start(config(redis_url, emu.url, flush_after_seconds=0.3, idle_close_seconds=30))
    open_session(redis_client, ev.id)
    feed_part(redis_client, ev.id, pcm, 0, 5 * SECOND)
    await wait_for(lambda: _transcript_end(redis_client, ev.id, ev.caption_task) == 5.0, timeout=20)
    [rec] = emu.sessions
    assert [len(c) for c in rec.chunks] == [2 * SECOND, 2 * SECOND, SECOND]
    assert not rec.finished
    assert _metric("reachlive_relay_partial_chunks_flushed_total") == flushed + 1
    feed_part(redis_client, ev.id, pcm, 5 * SECOND, len(pcm), eos=True)
    await wait_for(lambda: session_acked(redis_client), timeout=30)
    [rec] = emu.started_sessions()
    assert rec.audio == pcm
    check_captions(responses(redis_client, ev.id, ev.caption_task), _duration(pcm))


async def test_a_sub_second_tail_waits_for_the_audio_after_the_pause(redis_client, emu, relays, redis_url) -> None:
    """An encoder restart cuts a word: the half second left after two 2 s chunks is not sent on
    its own during the pause (too short for the engine to recognise its part of the word); the
    session still closes idle, and the tail goes out with the audio that follows, in one chunk of
    the next session: every word captioned once."""
    flushed = _metric("reachlive_relay_partial_chunks_flushed_total")
    pcm = jfk_pcm()
    ev = make_event(redis_client, "1250", targets=())
    relays.start(config(redis_url, emu.url, flush_after_seconds=0.3, idle_close_seconds=1.0))
    open_session(redis_client, ev.id)
    feed_part(redis_client, ev.id, pcm, 0, 4 * SECOND + SECOND // 2)
    await wait_for(lambda: emu.sessions and emu.sessions[0].finished, timeout=20)
    [first] = emu.sessions
    assert (first.closed_code, first.closed_reason) == (1000, "idle")
    assert [len(c) for c in first.chunks] == [2 * SECOND, 2 * SECOND]
    assert _metric("reachlive_relay_partial_chunks_flushed_total") == flushed
    feed_part(redis_client, ev.id, pcm, 4 * SECOND + SECOND // 2, len(pcm), eos=True)
    await wait_for(lambda: session_acked(redis_client), timeout=30)
    first, second = emu.started_sessions()
    assert len(second.chunks[0]) == 2 * SECOND  # the tail and what followed it, in one chunk
    assert first.audio + second.audio == pcm
    check_captions(responses(redis_client, ev.id, ev.caption_task), _duration(pcm), JFK_TEXT.split())


async def test_late_task_joins_the_live_session(redis_client, emu, relays, redis_url) -> None:
    """A translation ordered mid-event (registry status SCHEDULED): the relay notices it at its
    heartbeat check, lets the chunks in flight be answered, reconnects with the new target from
    the cursor (no audio sent twice, no duplicate for the tasks already served), the new task's
    captions start at the cursor, and PROCESSING is asked once."""
    late = _metric("reachlive_relay_late_orders_total")
    pcm = jfk_pcm()
    ev = make_event(redis_client, "1300", targets=("fr",))
    relays.start(config(redis_url, emu.url))
    open_session(redis_client, ev.id)
    feeder = asyncio.create_task(feed_paced(redis_client, ev.id, pcm, interval=0.15))
    await wait_for(lambda: redis_client.xlen(keys.captions(ev.id, ev.caption_task)) > 0, timeout=20)
    es = f"{ev.id}9"
    add_task(redis_client, ev.id, es, "es", status=9)  # SCHEDULED: ordered after the media started
    await feeder
    await wait_for(lambda: session_acked(redis_client), timeout=30)
    sessions = emu.started_sessions()
    assert len(sessions) == 2
    assert sessions[0].start["translation_config"] == {"target_languages": ["fr"]}
    assert sessions[1].start["translation_config"] == {"target_languages": ["es", "fr"]}
    assert (sessions[0].closed_code, sessions[0].closed_reason) == (1000, "late_order")
    # Drained before reconnecting: the second session starts exactly where the first stopped.
    assert sessions[0].audio + sessions[1].audio == pcm
    starts = check_audio(sessions, pcm)
    assert _metric("reachlive_relay_late_orders_total") == late + 1
    for task in ev.task_ids:
        check_captions(responses(redis_client, ev.id, task), _duration(pcm))
    check_captions(responses(redis_client, ev.id, ev.caption_task), _duration(pcm), JFK_TEXT.split())
    es_resp = responses(redis_client, ev.id, es)
    es_tr = [r for r in es_resp if r["type"] == "transcript" and not r["is_end_of_stream"]]
    assert es_tr and es_tr[0]["start"] == starts[1] / SECOND  # from the cursor on
    assert all(r["language_code"] == "es" for r in es_resp)
    ids = [r["id"] for r in es_resp]
    assert len(ids) == len(set(ids))
    assert sent_commands(redis_client, commands.PROCESSING) == [[ev.id]]
    assert sorted(finalize_commands(redis_client)) == sorted([t, "ready", ""] for t in [*ev.task_ids, es])


async def test_auth_refusal_errors_after_the_deadline(redis_client, emu, relays, redis_url, caplog) -> None:
    """401 token_expired: retried slowly, the refused-sessions gauge set at the first refusal and
    the first moment persisted, then past the deadline the tasks go ERROR naming KWIKmotion's
    reason (never the token)."""
    caplog.set_level(logging.WARNING)
    ev = make_event(redis_client, "1400", targets=("fr",))
    feed_part(redis_client, ev.id, jfk_pcm(), 0, 2 * SECOND)
    relays.start(
        config(redis_url, emu.url, token="expired-token", auth_retry_seconds=0.3, refusal_deadline_seconds=2.0)
    )
    open_session(redis_client, ev.id)
    await wait_for(lambda: _metric("reachlive_relay_sessions_refused") == 1, timeout=10)
    assert redis_client.hget(keys.relay_state(ev.id), keys.RELAY_REFUSED_SINCE) is not None
    assert not finalize_commands(redis_client)
    alerts = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert alerts and getattr(alerts[0], "alert", "") == "kwikmotion_auth"
    await wait_for(lambda: session_acked(redis_client), timeout=20)
    assert len(emu.sessions) >= 2 and all(s.auth == "expired" for s in emu.sessions)
    cmds = finalize_commands(redis_client)
    assert sorted(c[0] for c in cmds) == sorted(ev.task_ids)
    for _task, outcome, reason in cmds:
        assert outcome == "error"
        assert "KWIKmotion" in reason and "401" in reason and "token_expired" in reason
        assert "expired-token" not in reason
    assert _metric("reachlive_relay_sessions_refused") == 0
    assert all("expired-token" not in r.getMessage() for r in caplog.records)
    for task in ev.task_ids:
        assert [r["is_end_of_stream"] for r in responses(redis_client, ev.id, task)] == [True, True]


async def test_source_language_refused_until_the_deadline(redis_client, emu, relays, redis_url) -> None:
    """4004 for the event's own language: retried (not failed at once), then ERROR with
    KWIKmotion's reason once the deadline passed."""
    ev = make_event(redis_client, "200", source="xx", targets=())
    feed_part(redis_client, ev.id, jfk_pcm(), 0, 2 * SECOND)
    relays.start(config(redis_url, emu.url, auth_retry_seconds=0.3, refusal_deadline_seconds=1.5))
    open_session(redis_client, ev.id)
    await wait_for(lambda: _metric("reachlive_relay_sessions_refused") == 1, timeout=10)
    assert not finalize_commands(redis_client)
    await wait_for(lambda: session_acked(redis_client) and finalize_commands(redis_client), timeout=20)
    assert len(emu.sessions) >= 2 and all(s.closed_code == 4004 for s in emu.sessions)
    [cmd] = finalize_commands(redis_client)
    assert cmd[0] == ev.caption_task and cmd[1] == "error"
    assert "4004" in cmd[2] and "Unsupported language: xx" in cmd[2]
    assert [r["is_end_of_stream"] for r in responses(redis_client, ev.id, ev.caption_task)] == [True, True]
    assert _metric("reachlive_relay_sessions_refused") == 0


async def test_refusal_clock_cleared_when_a_session_starts(redis_client, emu, relays, redis_url) -> None:
    """A refusal moment left by an earlier owner is cleared once KWIKmotion accepts a session."""
    ev = make_event(redis_client, "1500", targets=())
    redis_client.hset(keys.relay_state(ev.id), keys.RELAY_REFUSED_SINCE, "1000.0")  # long ago
    feed_part(redis_client, ev.id, jfk_pcm(), 0, 4 * SECOND)
    relays.start(config(redis_url, emu.url))
    open_session(redis_client, ev.id)
    await wait_for(lambda: redis_client.xlen(keys.captions(ev.id, ev.caption_task)) > 0, timeout=20)
    assert redis_client.hget(keys.relay_state(ev.id), keys.RELAY_REFUSED_SINCE) is None


async def test_target_language_refused_ends_only_its_tasks(redis_client, emu, relays, redis_url) -> None:
    """4004 for a translation target: that language's task goes ERROR at once (end-of-stream
    responses, KWIKmotion's reason), the session reconnects without it and the others finish."""
    refused = _metric("reachlive_relay_targets_refused_total")
    pcm = jfk_pcm()
    ev = make_event(redis_client, "1600", targets=("fr", "zz"))
    zz = ev.translation_tasks["zz"]
    feed_part(redis_client, ev.id, pcm, 0, len(pcm), eos=True)
    relays.start(config(redis_url, emu.url))
    open_session(redis_client, ev.id)
    await wait_for(lambda: session_acked(redis_client), timeout=30)
    assert emu.sessions[0].closed_code == 4004 and emu.sessions[0].session_id is None
    [rec] = emu.started_sessions()
    assert rec.start["translation_config"] == {"target_languages": ["fr"]}
    assert rec.audio == pcm
    cmds = finalize_commands(redis_client)
    [zz_cmd] = [c for c in cmds if c[0] == zz]
    assert zz_cmd[1] == "error" and "zz" in zz_cmd[2] and "4004" in zz_cmd[2]
    assert sorted(c for c in cmds if c[0] != zz) == sorted(
        [t, "ready", ""] for t in (ev.caption_task, ev.translation_tasks["fr"])
    )
    assert [r["is_end_of_stream"] for r in responses(redis_client, ev.id, zz)] == [True, True]
    check_captions(responses(redis_client, ev.id, ev.caption_task), _duration(pcm), JFK_TEXT.split())
    check_captions(responses(redis_client, ev.id, ev.translation_tasks["fr"]), _duration(pcm))
    assert _metric("reachlive_relay_targets_refused_total") == refused + 1
    assert _metric("reachlive_relay_sessions_refused") == 0
