"""Every rejection of issue 4's Show list: a clear outcome (``NetStream.Publish.BadName`` with a
reason, or a closed connection), counted by reason, and other publishers untouched."""

from __future__ import annotations

import asyncio
import struct
import time

import pytest

from services.ingest import metrics
from services.ingest.server import VALIDATE_SECONDS
from shared import keys, registry, streams
from shared.rtmp.chunks import AUDIO, SET_CHUNK_SIZE
from tests.ingest.conftest import audio_entries, end_window, ffmpeg_publish, has_eos, make_event, raw_session, wait_for
from tests.ingest.test_interop import check_audio
from tests.rtmp.helpers import AAC_CONFIG, Client, commands, handshake


def statuses(received: bytes) -> list[dict]:
    return [c[3] for c in commands(received) if c and c[0] == "onStatus"]


def count(metric, **labels) -> float:
    return metric.labels(**labels)._value.get()


async def refused(port: int, *, app: str = "live", key: str = "key-1", reason: str) -> dict:
    before = count(metrics.REJECTED, reason=reason)
    received, closed, _took = await raw_session(port, handshake() + bytes(Client().publish_flow(app, key).out))
    assert closed
    status = statuses(received)[-1]
    assert status["level"] == "error" and status["code"] == "NetStream.Publish.BadName"
    assert key not in status["description"]
    assert count(metrics.REJECTED, reason=reason) == before + 1
    return status


async def test_wrong_key(start_ingest, redis_client):
    make_event(redis_client)
    server = await start_ingest()
    await refused(server.port, key="not-a-key", reason="unknown_key")
    assert not redis_client.exists(keys.audio("ev1"))
    assert redis_client.hget(keys.event("ev1"), "session") == b"0"


async def test_wrong_app(start_ingest, redis_client):
    make_event(redis_client)
    server = await start_ingest()
    await refused(server.port, app="vod", reason="wrong_app")


async def test_expired_and_future_windows(start_ingest, redis_client):
    now = time.time()
    make_event(redis_client, "old", "t1", "key-old", start=now - 7200, end=now - 3600)
    make_event(redis_client, "new", "t2", "key-new", start=now + 3600, end=now + 7200)
    server = await start_ingest(window_margin_seconds=300)
    await refused(server.port, key="key-old", reason="too_late")
    await refused(server.port, key="key-new", reason="too_early")


async def test_window_margin_admits_early_publisher(start_ingest, redis_client):
    now = time.time()
    make_event(redis_client, start=now + 120, end=now + 3600)  # starts in 2 min, margin 5 min
    server = await start_ingest(window_margin_seconds=300)
    received, _closed, _t = await raw_session(server.port, handshake() + bytes(Client().publish_flow().out), wait=1)
    assert statuses(received)[-1]["code"] == "NetStream.Publish.Start"


async def test_cancelled_task(start_ingest, redis_client):
    make_event(redis_client)
    registry.revoke_task(redis_client, "ev1", "t1")  # key index gone at once
    make_event(redis_client, "ev2", "t2", "key-2")
    redis_client.hset(keys.task("ev2", "t2"), "cancelled", "1")  # flagged, index not yet removed
    make_event(redis_client, "ev3", "t3", "key-3", status="ended")
    server = await start_ingest()
    await refused(server.port, key="key-1", reason="unknown_key")
    await refused(server.port, key="key-2", reason="cancelled")
    await refused(server.port, key="key-3", reason="ended")


async def test_after_end_of_stream_no_more_publishes(start_ingest, redis_client):
    make_event(redis_client)
    redis_client.hset(keys.ingest_state("ev1"), "eos", "1")
    server = await start_ingest()
    await refused(server.port, reason="ended")


async def test_garbage_bytes_close_the_connection(start_ingest, redis_client):
    server = await start_ingest()
    before = count(metrics.PROTOCOL_ERRORS, kind="handshake")
    _r, closed, took = await raw_session(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(2000))
    assert closed and took < 2
    assert count(metrics.PROTOCOL_ERRORS, kind="handshake") == before + 1
    # garbage after a good handshake and connect
    before = count(metrics.PROTOCOL_ERRORS, kind="chunk_header")
    data = handshake() + bytes(Client().command("connect", 1.0, {"app": "live"}).out) + b"\x7f" * 64
    _r, closed, took = await raw_session(server.port, data)
    assert closed and took < 2
    assert count(metrics.PROTOCOL_ERRORS, kind="chunk_header") == before + 1


async def test_handshake_that_stops_halfway_times_out(start_ingest, redis_client):
    server = await start_ingest(handshake_timeout_seconds=0.5)
    before = count(metrics.CLOSED, cause="handshake_timeout")
    _r, closed, took = await raw_session(server.port, handshake()[:700])
    assert closed and 0.4 < took < 3
    # a connection that handshakes and connects but never publishes is slow in the same way
    data = handshake() + bytes(Client().command("connect", 1.0, {"app": "live"}).out)
    received, closed, took = await raw_session(server.port, data)
    assert closed and took < 3
    assert commands(received)[0][3]["code"] == "NetConnection.Connect.Success"
    assert count(metrics.CLOSED, cause="handshake_timeout") == before + 2


@pytest.mark.parametrize("size", [0, 0x80000000, 0x7FFFFFFF])
async def test_absurd_chunk_sizes(start_ingest, redis_client, size):
    server = await start_ingest()
    c = Client().command("connect", 1.0, {"app": "live"}).raw(2, SET_CHUNK_SIZE, 0, 0, struct.pack(">I", size))
    _r, closed, took = await raw_session(server.port, handshake() + bytes(c.out))
    assert closed and took < 2


async def test_absurd_message_length(start_ingest, redis_client):
    server = await start_ingest()
    before = count(metrics.PROTOCOL_ERRORS, kind="message_size")
    header = bytes([0x04]) + bytes(3) + (0xFFFFFF).to_bytes(3, "big") + bytes([AUDIO]) + bytes(4)
    _r, closed, took = await raw_session(server.port, handshake() + header + bytes(1000))
    assert closed and took < 2
    assert count(metrics.PROTOCOL_ERRORS, kind="message_size") == before + 1


async def test_idle_publisher_times_out(start_ingest, redis_client):
    make_event(redis_client)
    server = await start_ingest(idle_timeout_seconds=1.0)
    received, closed, took = await raw_session(server.port, handshake() + bytes(Client().publish_flow().out))
    assert statuses(received)[0]["code"] == "NetStream.Publish.Start"
    assert closed and 0.9 < took < 4


def aac_traffic(c: Client, ts: int) -> bytes:
    # sequence header only: valid FLV AAC messages that decode to nothing (no decode errors)
    return c.w.write(4, AUDIO, 1, ts, b"\xaf\x00" + AAC_CONFIG)


async def test_revoked_task_closes_its_publisher(start_ingest, redis_client):
    make_event(redis_client)
    server = await start_ingest()
    c = Client().publish_flow()
    first = handshake() + bytes(c.out) + aac_traffic(c, 0)
    session = asyncio.create_task(raw_session(server.port, first, wait=10, then=aac_traffic(c, 0), keep_sending=0.2))
    await wait_for(lambda: redis_client.hget(keys.event("ev1"), "session") == b"1")
    await asyncio.sleep(0.3)
    registry.revoke_task(redis_client, "ev1", "t1")
    revoked_at = time.monotonic()
    received, closed, _took = await session
    assert closed and time.monotonic() - revoked_at < 3
    assert [s["code"] for s in statuses(received)] == ["NetStream.Publish.Start", "NetStream.Publish.BadName"]
    assert "cancelled" in statuses(received)[-1]["description"]


async def test_a_revocation_whose_message_was_lost_still_closes_the_publisher(start_ingest, redis_client):
    """Pub/sub is lossy: a live publish is re-checked every VALIDATE_SECONDS (media key, event and
    task, read in one round trip). A media key deleted with no message on the revocation channel
    still closes its publisher."""
    from shared.hashing import secret_hash

    make_event(redis_client)
    server = await start_ingest()
    c = Client().publish_flow()
    first = handshake() + bytes(c.out) + aac_traffic(c, 0)
    session = asyncio.create_task(
        raw_session(server.port, first, wait=VALIDATE_SECONDS + 5, then=aac_traffic(c, 0), keep_sending=0.2)
    )
    await wait_for(lambda: redis_client.hget(keys.event("ev1"), "session") == b"1")
    redis_client.delete(keys.media_key(secret_hash("key-1")))  # no REVOKED_CHANNEL message
    deleted_at = time.monotonic()
    received, closed, _took = await session
    assert closed and time.monotonic() - deleted_at < VALIDATE_SECONDS + 2
    assert [s["code"] for s in statuses(received)] == ["NetStream.Publish.Start", "NetStream.Publish.BadName"]


async def test_window_end_closes_publisher_and_ends_the_stream(start_ingest, redis_client):
    make_event(redis_client, end=time.time() + 1.5)
    server = await start_ingest(window_margin_seconds=0, grace_seconds=0.5)
    c = Client().publish_flow()
    first = handshake() + bytes(c.out) + aac_traffic(c, 0)
    _received, closed, took = await raw_session(server.port, first, wait=10, then=aac_traffic(c, 0), keep_sending=0.2)
    assert closed and took < 6
    await wait_for(lambda: has_eos(redis_client))
    eos = audio_entries(redis_client)[-1]
    assert isinstance(eos, streams.EndOfStream) and eos.reason == "window_ended"


async def test_an_extended_window_keeps_the_publisher(start_ingest, redis_client):
    """Kaltura extends a live event: the window's end moves later while media flows, and the
    publisher stays past the old end (the end follows the new window)."""
    make_event(redis_client, end=time.time() + 1.5)
    server = await start_ingest(window_margin_seconds=0, grace_seconds=0.5)
    registry.move_event_window(redis_client, "ev1", time.time() - 60, time.time() + 60)
    c = Client().publish_flow()
    first = handshake() + bytes(c.out) + aac_traffic(c, 0)
    _received, closed, _took = await raw_session(
        server.port, first, wait=VALIDATE_SECONDS + 3, then=aac_traffic(c, 0), keep_sending=0.2
    )
    assert not closed and not has_eos(redis_client)


async def test_an_event_gone_from_the_registry_ends_its_media(start_ingest, redis_client):
    make_event(redis_client)
    server = await start_ingest(grace_seconds=0.5)
    c = Client().publish_flow()
    first = handshake() + bytes(c.out) + aac_traffic(c, 0)
    session = asyncio.create_task(raw_session(server.port, first, wait=3, then=aac_traffic(c, 0), keep_sending=0.2))
    await wait_for(lambda: redis_client.sismember(keys.INGEST_ACTIVE, "ev1"))
    redis_client.delete(keys.event("ev1"))
    await wait_for(lambda: has_eos(redis_client))
    await session
    assert audio_entries(redis_client)[-1].reason == "gone"


@pytest.mark.slow
async def test_bad_peers_leave_a_real_publisher_untouched(start_ingest, redis_client):
    """A real-time ffmpeg publish while every kind of bad peer hits the same server."""
    make_event(redis_client)
    make_event(redis_client, "ev2", "t2", "key-2")
    server = await start_ingest(handshake_timeout_seconds=1.0)
    good = asyncio.create_task(ffmpeg_publish(f"rtmp://127.0.0.1:{server.port}/live/key-1", realtime=True))
    c2 = Client().publish_flow(key="key-2")
    attacks = [
        raw_session(server.port, b"\x16\x03\x01" + bytes(5000)),
        raw_session(server.port, handshake()[:900]),
        raw_session(server.port, handshake() + bytes(Client().publish_flow(key="nope").out)),
        raw_session(server.port, handshake() + bytes(Client().publish_flow(app="x").out)),
        raw_session(
            server.port,
            handshake()
            + bytes(
                Client().command("connect", 1.0, {"app": "live"}).raw(2, SET_CHUNK_SIZE, 0, 0, b"\x00\x00\x00\x00").out
            ),
        ),
        raw_session(server.port, handshake() + bytes([0x04]) + bytes(3) + b"\xff\xff\xff\x08" + bytes(4)),
        raw_session(server.port, handshake() + bytes(c2.out) + aac_traffic(c2, 0), wait=3),
    ]
    await asyncio.gather(*attacks)
    for _ in range(3):  # more waves while the good publisher streams
        await asyncio.gather(*(raw_session(server.port, bytes(range(256)) * 20) for _ in range(5)))
        await asyncio.sleep(1)
    code, err = await good
    assert code == 0, err[-2000:]
    await end_window(redis_client, server)
    check_audio(redis_client)
