"""Faults on demand: drop (no close frame), 1011, refuse with 1008, silent (no pongs), delay."""

from __future__ import annotations

import asyncio
import time

import pytest
from websockets.exceptions import ConnectionClosedError

from emulators.kwikmotion import KwikmotionEmulator
from shared.kwikmotion import (
    AudioAdded,
    ErrorClass,
    KwikError,
    KwikSession,
    TranscriptResult,
    classify_close,
)
from tests.emulators.kwikmotion.support import chunks, eventually, open_ws, recv_json, start

CHUNK = b"\x01\x00" * 16000  # 1 s


async def answered(ws, session: KwikSession, n_targets: int = 0) -> list:
    """Read one chunk's replies: AudioAdded, AddTranscript and one AddTranslation per target."""
    events = []
    for _ in range(2 + n_targets):
        events += session.receive(await asyncio.wait_for(ws.recv(), 5), time.monotonic())
    return events


async def test_drop_after_chunks_cuts_tcp_without_close_frame(emu: KwikmotionEmulator, pcm: bytes) -> None:
    emu.faults.drop_after_chunks = 2
    pieces = chunks(pcm)
    async with open_ws(emu) as ws:
        session = await start(ws, "en", ["fr"])
        for piece in pieces:  # send ahead, as a relay with a bounded window does
            await ws.send(session.send_audio(piece, 0))
        events = await answered(ws, session, 1) + await answered(ws, session, 1)
        assert [e.seq_no for e in events if isinstance(e, AudioAdded)] == [0, 1]
        with pytest.raises(ConnectionClosedError) as info:
            await asyncio.wait_for(ws.recv(), 5)
        assert info.value.rcvd is None  # abrupt: no close frame
        assert ws.close_code == 1006
    [closed] = session.connection_closed(1006, "")
    assert closed.error_class is ErrorClass.RETRYABLE
    assert (session.acked, session.completed) == (2, 2)  # chunks 2.. must be replayed
    await eventually(lambda: emu.sessions[-1].finished)
    record = emu.sessions[-1]
    assert record.faults == ["drop"] and record.closed_code == 1006
    assert emu.audio(record.index) == b"".join(pieces[:2])  # recorded: what was read before the cut
    assert emu.faults.drop_after_chunks is None  # fired once, cleared
    async with open_ws(emu) as ws:  # the next session is healthy
        session = await start(ws)
        for piece in pieces:
            await ws.send(session.send_audio(piece, 0))
        for _ in pieces:
            await answered(ws, session)
        assert session.acked == len(pieces)


async def test_fault_count_and_persistence(emu: KwikmotionEmulator) -> None:
    emu.faults.update({"drop_after_chunks": 1, "count": 2})

    async def one() -> bool:
        async with open_ws(emu) as ws:
            session = await start(ws)
            await ws.send(session.send_audio(CHUNK, 0))
            await answered(ws, session)
            try:
                await asyncio.wait_for(ws.recv(), 1.0)
            except ConnectionClosedError:
                return True
            except TimeoutError:
                return False
            raise AssertionError("unexpected message")

    assert [await one(), await one(), await one()] == [True, True, False]
    emu.faults.update({"drop_after_chunks": 1, "persistent": True, "count": 1})
    assert [await one(), await one(), await one()] == [True, True, True]
    emu.faults.clear()
    assert await one() is False


async def test_error_1011_after_chunks(emu: KwikmotionEmulator) -> None:
    emu.faults.error_1011_after_chunks = 1
    async with open_ws(emu) as ws:
        session = await start(ws)
        await ws.send(session.send_audio(CHUNK, 0))
        await ws.send(session.send_audio(CHUNK, 0))
        await answered(ws, session)
        text = await asyncio.wait_for(ws.recv(), 5)
        [event] = session.receive(text, 0)
        with pytest.raises(ConnectionClosedError) as info:
            await asyncio.wait_for(ws.recv(), 5)
    assert isinstance(event, KwikError)
    assert (event.code, event.type, event.reason) == (1011, "internal_error", "Server processing error")
    assert event.error_class is ErrorClass.RETRYABLE
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (1011, "internal_error")
    assert classify_close(1011, "internal_error") is ErrorClass.RETRYABLE
    assert session.acked == 1 and session.state == "failed"
    await eventually(lambda: emu.sessions[-1].finished)
    assert emu.sessions[-1].faults == ["error_1011"] and emu.faults.error_1011_after_chunks is None


async def test_refuse_capacity_then_recovery(emu: KwikmotionEmulator) -> None:
    emu.faults.refuse_capacity = True
    async with open_ws(emu) as ws:
        error = await recv_json(ws)
        assert (error["code"], error["type"]) == (1008, "policy_violation")
        with pytest.raises(ConnectionClosedError) as info:
            await asyncio.wait_for(ws.recv(), 5)
        assert info.value.rcvd.code == 1008
    assert emu.faults.refuse_capacity is False
    async with open_ws(emu) as ws:
        await start(ws)  # recovered
    await eventually(lambda: all(s.finished for s in emu.sessions))
    assert [s.faults for s in emu.sessions] == [["refuse_capacity"], []]


async def test_silent_after_chunks_stops_replies_and_pongs(emu: KwikmotionEmulator) -> None:
    emu.faults.silent_after_chunks = 1
    async with open_ws(emu) as ws:
        session = await start(ws, "en", ["de"])
        await ws.send(session.send_audio(CHUNK, 0))
        events = await answered(ws, session, 1)
        assert isinstance(events[1], TranscriptResult)
        await ws.send(session.send_audio(CHUNK, 0))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.5)  # no AudioAdded for chunk 1
        pong = await ws.ping()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pong, 0.5)  # no pong either: the client's keepalive gives up
    # The client closed (no close frame came back within close_timeout): the session ends.
    await eventually(lambda: emu.sessions[-1].finished)
    record = emu.sessions[-1]
    assert record.faults == ["silent"] and len(record.chunks) == 2  # it still listened
    assert emu.active == 0


async def test_delay_holds_every_reply(emu: KwikmotionEmulator) -> None:
    emu.faults.delay_seconds = 1.0
    async with open_ws(emu) as ws:
        session = KwikSession("en")
        await ws.send(session.start(0))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(recv := asyncio.ensure_future(ws.recv())), 0.3)
        session.receive(await asyncio.wait_for(recv, 5), 0)  # RecognitionStarted, late
        assert session.state == "streaming"
        emu.faults.delay_seconds = 0.0
        await ws.send(session.send_audio(CHUNK, 0))
        assert isinstance((await answered(ws, session))[0], AudioAdded)


async def test_stop_cuts_a_silent_session(pcm: bytes) -> None:
    emu = KwikmotionEmulator(token="t")
    await emu.start()
    emu.faults.silent_after_chunks = 1
    async with open_ws(emu, "t") as ws:
        session = await start(ws)
        await ws.send(session.send_audio(CHUNK, 0))
        await answered(ws, session)
        await asyncio.wait_for(emu.stop(), 10)  # does not hang on the silent connection
        with pytest.raises(ConnectionClosedError):
            await asyncio.wait_for(ws.recv(), 5)
