"""Fixtures for the KWIKmotion emulator tests: a running emulator and the JFK sample as the
seed's audio format (16 kHz mono pcm_s16le, decoded by PyAV)."""

from __future__ import annotations

import functools
import io
from collections.abc import AsyncIterator

import av
import pytest

from emulators.kwikmotion import KwikmotionEmulator
from emulators.media import JFK_FLAC
from tests.emulators.kwikmotion.support import FORBIDDEN, TOKEN


@functools.cache
def jfk_pcm() -> bytes:
    """The 11 s speech sample resampled to 16 kHz mono s16le (av.open + AudioResampler)."""
    out = bytearray()
    resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
    with av.open(str(JFK_FLAC)) as container:
        for frame in container.decode(audio=0):
            for piece in resampler.resample(frame):
                out += bytes(piece.planes[0])[: piece.samples * 2]
    for piece in resampler.resample(None):
        out += bytes(piece.planes[0])[: piece.samples * 2]
    return bytes(out)


@functools.cache
def jfk_aac_pcm() -> bytes:
    """The sample through an AAC encode/decode round trip at 44.1 kHz (as a publisher's RTMP AAC
    reaches our ingest), then 16 kHz mono s16le: shifted by the encoder delay, padded at the end,
    every sample changed."""
    buf = io.BytesIO()
    with av.open(str(JFK_FLAC)) as src, av.open(buf, "w", format="adts") as dst:
        stream = dst.add_stream("aac", rate=44100, layout="stereo")
        to_aac = av.AudioResampler(format="fltp", layout="stereo", rate=44100)
        for frame in src.decode(audio=0):
            for piece in to_aac.resample(frame):
                piece.pts = None
                for packet in stream.encode(piece):
                    dst.mux(packet)
        for packet in stream.encode(None):
            dst.mux(packet)
    buf.seek(0)
    out = bytearray()
    resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
    with av.open(buf, format="adts") as container:
        for frame in container.decode(audio=0):
            frame.pts = None
            for piece in resampler.resample(frame):
                out += bytes(piece.planes[0])[: piece.samples * 2]
    for piece in resampler.resample(None):
        out += bytes(piece.planes[0])[: piece.samples * 2]
    return bytes(out)


@pytest.fixture
def pcm() -> bytes:
    return jfk_pcm()


@pytest.fixture
def aac_pcm() -> bytes:
    return jfk_aac_pcm()


@pytest.fixture
async def emu() -> AsyncIterator[KwikmotionEmulator]:
    server = KwikmotionEmulator(token=TOKEN, forbidden_tokens=[FORBIDDEN], max_sessions=3)
    await server.start()
    yield server
    await server.stop()
