"""Relays as real processes (``reachlive relay``) sharing sessions through the consumer group:
a replica SIGKILLed mid-event, a rolling restart with SIGTERM, and two replicas with six events.
Each shows no audio lost, no caption duplicated, and one KWIKmotion session per event at a time."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import redis

from emulators.kwikmotion import KwikmotionEmulator
from emulators.registry import make_event
from shared import keys
from shared.child import Service
from tests.relay.helpers import (
    CHUNK_BYTES,
    check_audio,
    check_captions,
    event_pcm,
    feed_paced,
    finalize_commands,
    jfk_pcm,
    open_session,
    relay_env,
    responses,
    session_acked,
)
from tests.support.polling import eventually as wait_for

pytestmark = pytest.mark.slow


class OneSessionPerEvent:
    """Polls the emulator: never two open KWIKmotion sessions with the same event's audio.

    Each event's audio is unique (``event_pcm``), so a session's first chunk names its event.
    """

    def __init__(self, emu: KwikmotionEmulator, pcms: dict[str, bytes]) -> None:
        self.emu = emu
        self.pcms = pcms
        self.violations: list[str] = []
        self.polls = 0

    def event_of(self, rec) -> str | None:
        if not rec.chunks:
            return None
        head = rec.chunks[0][:CHUNK_BYTES]
        found = [e for e, pcm in self.pcms.items() if pcm.find(head) >= 0]
        assert len(found) == 1
        return found[0]

    async def run(self) -> None:
        while True:
            self.polls += 1
            open_by_event: dict[str, int] = {}
            for rec in self.emu.sessions:
                if rec.finished or rec.session_id is None:
                    continue
                ev = self.event_of(rec)
                if ev is not None:
                    open_by_event[ev] = open_by_event.get(ev, 0) + 1
            self.violations += [f"event {e}: {n} sessions" for e, n in open_by_event.items() if n > 1]
            await asyncio.sleep(0.01)

    def sessions_of(self, event_id: str) -> list:
        return [r for r in self.emu.started_sessions() if self.event_of(r) == event_id]


def _owner(client: redis.Redis) -> str:
    [pending] = client.xpending_range(keys.SESSIONS_STREAM, keys.RELAY_GROUP, "-", "+", 10)
    name = pending["consumer"]
    return name.decode() if isinstance(name, bytes) else name


def _check_event(client: redis.Redis, ev, sessions: list, pcm: bytes) -> list[int]:
    starts = check_audio(sessions, pcm)
    for task in ev.task_ids:
        check_captions(responses(client, ev.id, task), round(len(pcm) / 32000, 3))
    assert sorted(finalize_commands(client)) == sorted([t, "ready", ""] for t in ev.task_ids)
    return starts


async def _monitor(emu: KwikmotionEmulator, pcms: dict[str, bytes]):
    mon = OneSessionPerEvent(emu, pcms)
    return mon, asyncio.create_task(mon.run())


async def test_replica_killed_mid_event(redis_client, redis_url, emu, tmp_path: Path) -> None:
    pcm = jfk_pcm()
    ev = make_event(redis_client, "500", targets=("fr",))
    mon, watcher = await _monitor(emu, {ev.id: pcm})
    relays = {n: Service(["relay"], relay_env(redis_url, emu.url, n), tmp_path, name=n) for n in ("ra", "rb")}
    try:
        open_session(redis_client, ev.id)
        feeder = asyncio.create_task(feed_paced(redis_client, ev.id, pcm, interval=0.15))
        await wait_for(lambda: any(len(s.chunks) >= 2 for s in emu.started_sessions()), timeout=30)
        victim = _owner(redis_client)
        relays[victim].kill()
        killed_at = time.monotonic()
        await wait_for(lambda: len(emu.started_sessions()) >= 2, timeout=15)
        took_over = time.monotonic() - killed_at
        await feeder
        await wait_for(lambda: session_acked(redis_client), timeout=30)
        survivor = next(n for n in relays if n != victim)
        assert _owner_log(relays[survivor], "took over session")
        sessions = emu.started_sessions()
        starts = _check_event(redis_client, ev, sessions, pcm)
        assert len(starts) == 2 and 0 < starts[1] <= len(sessions[0].audio)
        assert sessions[0].closed_code == 1006  # the killed process never closed its WebSocket
        # The takeover waits for the failover timeout (2 s) after the last heartbeat.
        assert took_over < 2.0 + 8.0
        assert not mon.violations and mon.polls > 10
    finally:
        watcher.cancel()
        for s in relays.values():
            s.stop()


def _owner_log(service: Service, text: str) -> bool:
    return text in service.log()


async def test_rolling_restart_with_sigterm(redis_client, redis_url, emu, tmp_path: Path) -> None:
    pcm = jfk_pcm()
    ev = make_event(redis_client, "600", targets=("fr",))
    mon, watcher = await _monitor(emu, {ev.id: pcm})
    relays = {n: Service(["relay"], relay_env(redis_url, emu.url, n), tmp_path, name=n) for n in ("ra", "rb")}
    try:
        open_session(redis_client, ev.id)
        feeder = asyncio.create_task(feed_paced(redis_client, ev.id, pcm, interval=0.3))
        await wait_for(lambda: any(len(s.chunks) >= 1 for s in emu.started_sessions()), timeout=30)
        # Roll: replace each replica in turn (the owner first), as a Deployment update does.
        for new in ("rc", "rd"):
            owner = _owner(redis_client)
            relays[new] = Service(["relay"], relay_env(redis_url, emu.url, new), tmp_path, name=new)
            n_before = len(emu.started_sessions())
            assert relays[owner].stop() == 0
            assert "released sessions for takeover" in relays[owner].log()
            await wait_for(
                lambda n=n_before: len(emu.started_sessions()) > n or session_acked(redis_client), timeout=15
            )
            relays.pop(owner)
        await feeder
        await wait_for(lambda: session_acked(redis_client), timeout=30)
        sessions = emu.started_sessions()
        assert len(sessions) >= 2
        _check_event(redis_client, ev, sessions, pcm)
        # A SIGTERMed relay closes its WebSocket cleanly, after the results it had were committed.
        codes = [s.closed_code for s in sessions]
        assert all(c in (1000, 1001) for c in codes), codes
        assert not mon.violations
    finally:
        watcher.cancel()
        for s in relays.values():
            s.stop()


async def test_two_relays_six_events(redis_client, redis_url, emu, tmp_path: Path) -> None:
    events = {str(700 + i): event_pcm(i) for i in range(6)}
    evs = {e: make_event(redis_client, e, targets=("fr",)) for e in events}
    mon, watcher = await _monitor(emu, events)
    env = {"REACHLIVE_RELAY_MAX_SESSIONS": "3"}
    relays = [Service(["relay"], {**relay_env(redis_url, emu.url, n), **env}, tmp_path, name=n) for n in ("ra", "rb")]
    try:
        # Both replicas up before the events start, so each takes its share (3).
        await wait_for(lambda: all("relay claiming sessions" in r.log() for r in relays), timeout=30)
        for e in events:
            open_session(redis_client, e)
        await asyncio.gather(*(feed_paced(redis_client, e, pcm, interval=0.05) for e, pcm in events.items()))
        await wait_for(lambda: session_acked(redis_client), timeout=60)
        for e, pcm in events.items():
            [rec] = mon.sessions_of(e)  # exactly one KWIKmotion session per event
            assert rec.audio == pcm and rec.done
            for task in evs[e].task_ids:
                check_captions(responses(redis_client, e, task), round(len(pcm) / 32000, 3))
        assert len(finalize_commands(redis_client)) == 12
        # Each replica held at most max_sessions (3): both served events, none failed over.
        assert all(r.log().count("KWIKmotion session started") == 3 for r in relays)
        assert all("took over" not in r.log() for r in relays)
        assert not mon.violations
    finally:
        watcher.cancel()
        for r in relays:
            r.stop()
