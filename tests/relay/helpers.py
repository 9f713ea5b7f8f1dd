"""Shared pieces of the relay tests: real audio on the event's stream, registry records written
with the poller's own writers, and the checks "no audio lost" / "no caption duplicated"."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time

import numpy as np
import redis

from emulators.media import jfk_pcm
from services.relay.session import Config
from shared import commands, keys
from shared.captions import Envelope
from shared.registry import LIVE_CAPTION, LIVE_TRANSLATION, TaskRecord, write_task
from shared.settings import KwikmotionSettings, RelaySettings
from shared.streams import AudioChunk, CaptionEntry, EndOfStream, SessionEntry

TOKEN = "test-token"
CHUNK_BYTES = 64000  # RELAY_CHUNK_SECONDS = 2 at 16 kHz s16le


def event_pcm(index: int) -> bytes:
    """The sample, made unique per event (a DC offset of ``index``), so a test can tell which
    event's audio a KWIKmotion session received."""
    samples = np.frombuffer(jfk_pcm(), dtype="<i2").astype(np.int32) + index
    return np.clip(samples, -32768, 32767).astype("<i2").tobytes()


def config(
    redis_url: str, kwik_url: str, token: str = TOKEN, types: str = "transcript,captions", **relay: object
) -> Config:
    base: dict[str, object] = dict(
        chunk_seconds=2.0,
        heartbeat_seconds=0.2,
        task_check_seconds=0.2,
        failover_seconds=2.0,
        max_unacked_chunks=2,
        backoff_initial_seconds=0.05,
        backoff_max_seconds=0.3,
        auth_retry_seconds=0.5,
    )
    base.update(relay)
    return Config(
        relay=RelaySettings(**base),
        kwik=KwikmotionSettings(
            url=kwik_url,
            token=token,
            ping_interval_seconds=0.5,
            ping_timeout_seconds=1.5,
            start_timeout_seconds=3.0,
            end_timeout_seconds=3.0,
        ),
        caption_types=types,
        redis_url=redis_url,
    )


def relay_env(redis_url: str, kwik_url: str, name: str) -> dict[str, str]:
    """The same settings as ``config`` for a relay run as a process (shared.child.Service)."""
    return {
        "REACHLIVE_REDIS_URL": redis_url,
        "REACHLIVE_KWIKMOTION_URL": kwik_url,
        "REACHLIVE_KWIKMOTION_TOKEN": TOKEN,
        "REACHLIVE_KWIKMOTION_PING_INTERVAL_SECONDS": "0.5",
        "REACHLIVE_KWIKMOTION_PING_TIMEOUT_SECONDS": "1.5",
        "REACHLIVE_KWIKMOTION_START_TIMEOUT_SECONDS": "3",
        "REACHLIVE_KWIKMOTION_END_TIMEOUT_SECONDS": "3",
        "REACHLIVE_RELAY_CHUNK_SECONDS": "2",
        "REACHLIVE_RELAY_HEARTBEAT_SECONDS": "0.2",
        "REACHLIVE_RELAY_TASK_CHECK_SECONDS": "0.2",
        "REACHLIVE_RELAY_FAILOVER_SECONDS": "2",
        "REACHLIVE_RELAY_MAX_UNACKED_CHUNKS": "2",
        "REACHLIVE_RELAY_BACKOFF_INITIAL_SECONDS": "0.05",
        "REACHLIVE_RELAY_BACKOFF_MAX_SECONDS": "0.3",
        "REACHLIVE_RELAY_CONSUMER_NAME": name,
        "REACHLIVE_LOG_LEVEL": "DEBUG",
    }


def open_session(client: redis.Redis, event_id: str) -> None:
    client.xadd(keys.SESSIONS_STREAM, SessionEntry(event_id).fields())


def audio_entries(pcm: bytes, chunk_ms: int = 500, t0: float = 0.0) -> list[dict[str, str | bytes]]:
    step = 32 * chunk_ms
    epoch = 1_700_000_000.0
    out = []
    for off in range(0, len(pcm), step):
        t = t0 + off / 32000
        out.append(AudioChunk(media_time=t, pts=10.0 + t, epoch=epoch + t, pcm=pcm[off : off + step]).fields())
    return out


def feed(client: redis.Redis, event_id: str, pcm: bytes, eos: bool = True) -> None:
    for fields in audio_entries(pcm):
        client.xadd(keys.audio(event_id), fields)
    if eos:
        client.xadd(keys.audio(event_id), EndOfStream(len(pcm) / 32000, "ended").fields())


async def feed_paced(client: redis.Redis, event_id: str, pcm: bytes, interval: float = 0.05, eos: bool = True) -> None:
    """Audio arriving over time (a live event), ``interval`` between 500 ms entries."""
    for fields in audio_entries(pcm):
        client.xadd(keys.audio(event_id), fields)
        await asyncio.sleep(interval)
    if eos:
        client.xadd(keys.audio(event_id), EndOfStream(len(pcm) / 32000, "ended").fields())


def responses(client: redis.Redis, event_id: str, task_id: str) -> list[dict]:
    out = []
    for _id, fields in client.xrange(keys.captions(event_id, task_id)):
        entry = CaptionEntry.parse(fields)
        doc = json.loads(entry.json)
        Envelope.model_validate(doc)  # the seed's schema, strictly
        assert doc["response"]["type"] == entry.kind
        assert doc["response"]["is_end_of_stream"] == entry.eos
        out.append(doc["response"])
    return out


def check_captions(resp: list[dict], duration: float, words: list[str] | None = None) -> None:
    """No caption twice, none missing: ids unique; transcript responses tile [0, duration)
    exactly, in order, then end with one is_end_of_stream response per type."""
    ids = [r["id"] for r in resp]
    assert len(ids) == len(set(ids)), "a response id was written twice"
    tr = [r for r in resp if r["type"] == "transcript" and not r["is_end_of_stream"]]
    assert tr, "no transcript responses"
    assert tr[0]["start"] == 0.0
    for a, b in itertools.pairwise(tr):
        assert abs(a["end"] - b["start"]) < 1e-6, f"gap or overlap: {a['end']} → {b['start']}"
    assert abs(tr[-1]["end"] - duration) < 1e-3
    caps = [r for r in resp if r["type"] == "captions" and not r["is_end_of_stream"]]
    for a, b in itertools.pairwise(caps):
        assert a["end"] <= b["start"] + 1e-6, "captions overlap"
    eos = [r for r in resp if r["is_end_of_stream"]]
    assert sorted(r["type"] for r in eos) == ["captions", "transcript"]
    assert all(r["is_end_of_stream"] for r in resp[-2:])
    if words is not None:
        got = " ".join(r["alternatives"][0]["transcript"] for r in tr).split()
        assert got == words


def check_audio(sessions: list, pcm: bytes, chunk_bytes: int = CHUNK_BYTES) -> list[int]:
    """No audio lost: each KWIKmotion session received one contiguous slice of the stream, in
    order and once, starting at a chunk boundary no later than where the previous one stopped
    (the replay of audio not yet transcribed), the first at 0, the last through the end.
    Returns each session's start offset (bytes)."""
    starts = []
    covered = 0
    for rec in sessions:
        audio = rec.audio
        if not audio:
            continue
        start = pcm.find(audio[:chunk_bytes])
        assert start >= 0, "a session received audio that is not the stream's"
        assert start % chunk_bytes == 0 or start == 0, f"replay not at a chunk boundary ({start})"
        assert pcm[start : start + len(audio)] == audio, "a session's audio is not a contiguous slice of the stream"
        assert start <= covered, f"audio lost: session starts at {start}, previous audio ended at {covered}"
        covered = max(covered, start + len(audio))
        starts.append(start)
    assert starts and starts[0] == 0
    assert covered == len(pcm), f"audio lost at the end: {covered} of {len(pcm)} bytes sent"
    return starts


def sent_commands(client: redis.Redis, name: str) -> list[list]:
    """Commands ``name`` the relay enqueued for the poller (kombu's Redis list, JSON bodies)."""
    out = []
    for raw in client.lrange(f"{keys.BROKER_PREFIX}{commands.QUEUE}", 0, -1):
        msg = json.loads(raw)
        if msg["headers"]["task"] == name:
            body = json.loads(base64.b64decode(msg["body"]))
            out.append(body[0])
    return out


def finalize_commands(client: redis.Redis) -> list[list]:
    """FINALIZE commands the relay enqueued for the poller."""
    return sent_commands(client, commands.FINALIZE)


def feed_part(client: redis.Redis, event_id: str, pcm: bytes, start: int, end: int, eos: bool = False) -> None:
    """Bytes ``[start, end)`` of ``pcm`` as audio entries continuing the media timeline (a
    publisher that pauses between parts: the stream simply has no entries meanwhile)."""
    for fields in audio_entries(pcm[start:end], t0=start / 32000):
        client.xadd(keys.audio(event_id), fields)
    if eos:
        client.xadd(keys.audio(event_id), EndOfStream(end / 32000, "ended").fields())


def add_task(
    client: redis.Redis, event_id: str, task_id: str, language: str, status: int = 3, kind: str = "translation"
) -> None:
    """A task of the event written with the poller's writer (e.g. ordered mid-event, SCHEDULED = 9)."""
    now = time.time()
    write_task(
        client,
        TaskRecord(
            id=task_id,
            event=event_id,
            feature=LIVE_TRANSLATION if kind == "translation" else LIVE_CAPTION,
            kind=kind,
            language=language,
            language_code=language,
            max_chars=32,
            status=status,
            start=now - 60,
            end=now + 3600,
        ),
    )


def session_acked(client: redis.Redis) -> bool:
    try:
        info = client.xpending(keys.SESSIONS_STREAM, keys.RELAY_GROUP)
    except redis.ResponseError:  # no group yet
        return False
    return info["pending"] == 0 and client.xlen(keys.SESSIONS_STREAM) == 0
