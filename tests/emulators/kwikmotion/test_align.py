"""The emulator recognises where in the reference audio each chunk is (align="audio"): every
reference word once per pass over its audio, whatever the chunking, the start point, the session
boundaries, an AAC round trip, silence or encoder padding."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from emulators.kwikmotion import KwikmotionEmulator
from emulators.kwikmotion.align import (
    AudioAligner,
    ReferenceAudio,
    decode_pcm,
    load_reference_samples,
    reference_audio,
)
from emulators.kwikmotion.protocol import ReferenceScript
from emulators.media import JFK_FLAC, JFK_TEXT
from shared.kwikmotion import TranscriptResult, TranslationResult
from tests.emulators.kwikmotion.conftest import jfk_aac_pcm, jfk_pcm
from tests.emulators.kwikmotion.support import TOKEN, chunks, open_ws, start

WORDS = JFK_TEXT.split()
STEP = 8000  # 0.5 s at 16 kHz; the 22 words of the sample start every 0.5 s of its 11 s


def ref16() -> ReferenceAudio:
    return reference_audio(str(JFK_FLAC), 16000, tuple(WORDS))


def floats(pcm: bytes) -> np.ndarray:
    return decode_pcm(pcm, "pcm_s16le")


def feed(aligner: AudioAligner, audio: np.ndarray, sizes: list[int]) -> list[str]:
    out, pos = [], 0
    for size in sizes:
        out += aligner.feed(audio[pos : pos + size])
        pos += size
    return out


def even_sizes(total: int, size: int) -> list[int]:
    return [size] * (-(-total // size))


# -- the sans-I/O aligner --------------------------------------------------------------------


def test_the_aac_round_trip_really_changes_the_audio(pcm: bytes, aac_pcm: bytes) -> None:
    a, b = floats(pcm), floats(aac_pcm)
    assert len(pcm) == 11 * 32000 and 11.0 < len(b) / 16000 < 11.1  # encoder delay + padding
    assert not np.array_equal(a, b[: len(a)])
    # Time replay emits "And" again for the padding: the bug this mode fixes.
    script = ReferenceScript(JFK_TEXT, 11.0)
    assert script.words_between(0, len(b), 16000) == [*WORDS, "And"]


@pytest.mark.parametrize("source", ["raw", "aac"])
@pytest.mark.parametrize("chunk_seconds", [2, 6, 10])
def test_whole_sample_gives_every_word_once_and_no_padding_word(source: str, chunk_seconds: int) -> None:
    audio = floats(jfk_pcm() if source == "raw" else jfk_aac_pcm())
    aligner = AudioAligner(ref16())
    assert feed(aligner, audio, even_sizes(len(audio), chunk_seconds * 16000)) == WORDS
    assert aligner.searches == 1  # tracked after the first window: one full search per session


@pytest.mark.parametrize("source", ["raw", "aac"])
def test_the_reference_looped_gives_its_words_per_pass(source: str) -> None:
    audio = np.tile(floats(jfk_pcm() if source == "raw" else jfk_aac_pcm()), 3)
    assert feed(AudioAligner(ref16()), audio, even_sizes(len(audio), 50000)) == WORDS * 3


@pytest.mark.parametrize(
    "audio",
    [
        np.zeros(16000 * 6, np.float32),
        np.full(16000 * 6, 1 / 32768, np.float32),  # DC
        np.random.default_rng(1).normal(0, 0.1, 16000 * 6).astype(np.float32),
        np.random.default_rng(2).normal(0, 0.005, 16000 * 6).astype(np.float32),  # room noise
        load_reference_samples(JFK_FLAC, 16000)[::-1].copy(),  # the same voice, reversed
        np.sin(np.arange(16000 * 6) * 2 * np.pi * 440 / 16000).astype(np.float32) * 0.3,
    ],
    ids=["silence", "dc", "noise", "quiet-noise", "reversed", "tone"],
)
def test_audio_that_is_not_the_reference_gives_no_words(audio: np.ndarray) -> None:
    aligner = AudioAligner(ref16())
    assert feed(aligner, audio, even_sizes(len(audio), 32000)) == []
    assert aligner.misses == aligner.searches > 0


@pytest.mark.parametrize("gap_samples", [3 * 16000, 20817])
@pytest.mark.parametrize("chunk", [32000, 37000, 96000])
def test_speech_after_silence_and_silence_inside_are_placed_by_their_content(
    aac_pcm: bytes, gap_samples: int, chunk: int
) -> None:
    speech = floats(aac_pcm)
    gap = np.zeros(gap_samples, np.float32)
    audio = np.concatenate([gap, speech[: 5 * 16000], gap, speech[5 * 16000 :], gap])
    # Windows half silence, half speech: words follow the audio, not the session's clock.
    assert feed(AudioAligner(ref16()), audio, even_sizes(len(audio), chunk)) == WORDS


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
@pytest.mark.parametrize("encoding", ["pcm_s16le", "pcm_f32le", "mulaw"])
def test_other_rates_and_encodings(rate: int, encoding: str) -> None:
    ref = reference_audio(str(JFK_FLAC), rate, tuple(WORDS))
    audio = load_reference_samples(JFK_FLAC, rate)
    if encoding == "pcm_f32le":
        wire = audio.astype("<f4").tobytes()
    elif encoding == "mulaw":
        wire = _mulaw_encode(audio)
    else:
        wire = (audio * 32768).astype("<i2").tobytes()
    width = {"pcm_s16le": 2, "pcm_f32le": 4, "mulaw": 1}[encoding]
    size = rate * 2 * width
    aligner = AudioAligner(ref)
    words = []
    for i in range(0, len(wire), size):
        words += aligner.feed(decode_pcm(wire[i : i + size], encoding))
    assert words == WORDS


def _mulaw_encode(x: np.ndarray) -> bytes:
    """G.711 mu-law compression (the textbook formula, independent of the emulator's table)."""
    s = np.clip(np.round(x * 32768), -32635, 32635).astype(np.int32)
    sign = np.where(s < 0, 0x80, 0)
    mag = np.abs(s) + 0x84
    exponent = np.floor(np.log2(mag)).astype(np.int32) - 7
    mantissa = (mag >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


def test_float_audio_with_nan_and_inf_gives_no_words_and_no_error() -> None:
    wire = np.array([np.nan, np.inf, -np.inf, 3e38] * 8000, dtype="<f4").tobytes()
    samples = decode_pcm(wire, "pcm_f32le")
    assert np.isfinite(samples).all()
    assert AudioAligner(ref16()).feed(samples) == []


def test_mulaw_expansion_known_values() -> None:
    assert (decode_pcm(bytes([0x00, 0x80, 0xFF, 0x7F]), "mulaw") * 32768).tolist() == [-32124, 32124, 0, 0]


starts = st.integers(0, len(WORDS) - 1)  # a session opened at any 0.5 s boundary of the media
sizes = st.lists(st.integers(1600, 10 * 16000), min_size=1, max_size=60)  # chunks of 0.1 s to 10 s


@settings(max_examples=150, deadline=None)
@given(source=st.sampled_from(["raw", "aac"]), first=starts, split=sizes, cut=st.integers(0, 30))
def test_any_chunking_from_any_start_across_two_sessions_gives_every_word_once(
    source: str, first: int, split: list[int], cut: int
) -> None:
    """A relay opens a session at media time ``first``/2 s and sends chunks; after ``cut``
    chunks the session is lost and a NEW session replays from the next chunk boundary. Together
    they give each word from the start point on exactly once, in order."""
    # Outside the property: a first session lost before it heard one matching window (0.5 s) of
    # an AAC stream's very start. That audio is encoder priming and the sample's quiet first
    # tenths of a second: 0.1-0.3 s of it match nowhere in the reference (0.5 s does), so the
    # session cannot place it, the next one starts after word 0's start, and word 0 is nobody's.
    # (Found by hypothesis: source="aac", first=0, split=[1600], cut=1. The relay's chunks are
    # 2 s; see test_a_session_lost_in_the_aac_priming_cannot_place_its_audio.)
    assume(not (source == "aac" and first == 0 and 0 < cut and sum(split[:cut]) < STEP))
    audio = floats(jfk_pcm() if source == "raw" else jfk_aac_pcm())[first * STEP :]
    ref = ref16()
    sessions = [AudioAligner(ref), AudioAligner(ref)]
    words, pos = [], 0
    for index, size in enumerate(split + even_sizes(len(audio), 32000)):
        if pos >= len(audio):
            break
        words += sessions[index >= cut].feed(audio[pos : pos + size])
        pos += size
    # Word k starts at k * 0.5 s of the reference; through AAC it comes later by the encoder
    # delay (< 0.5 s), so from a 0.5 s boundary on the words are those of the reference from it.
    assert words == WORDS[first:]


def test_a_session_lost_in_the_aac_priming_cannot_place_its_audio() -> None:
    """The limit the property above leaves out, pinned down: the first 0.1-0.3 s of the AAC
    stream match nowhere, 0.5 s matches (wrapping: the priming lines up with the loop's end)."""
    audio = floats(jfk_aac_pcm())
    for size in (1600, 3200, 4800):
        session = AudioAligner(ref16())
        assert session.feed(audio[:size]) == [] and session.pos is None
    session = AudioAligner(ref16())
    assert session.feed(audio[:STEP]) == WORDS[:1]


def test_reference_too_short_is_refused() -> None:
    with pytest.raises(ValueError, match="shorter"):
        ReferenceAudio(np.zeros(100, np.float32), 16000, ["a"])


# -- the server ------------------------------------------------------------------------------


async def transcripts(ws, session, pieces: list[bytes], n_targets: int = 0) -> list[TranscriptResult]:
    for piece in pieces:
        await ws.send(session.send_audio(piece, time.monotonic()))
    out = []
    for _ in pieces:
        for _ in range(2 + n_targets):
            for event in session.receive(await asyncio.wait_for(ws.recv(), 5), time.monotonic()):
                if isinstance(event, TranscriptResult):
                    out.append(event)
                elif isinstance(event, TranslationResult):
                    assert event.translation == (f"[fr] {out[-1].transcript}" if out[-1].transcript else "")
    return out


def text(results: list[TranscriptResult]) -> list[str]:
    return " ".join(r.transcript for r in results).split()


async def test_a_session_opened_mid_speech_gets_the_words_of_its_audio(emu: KwikmotionEmulator, pcm: bytes) -> None:
    assert emu.align == "audio"
    async with open_ws(emu) as ws:
        session = await start(ws, "en", ["fr"])
        results = await transcripts(ws, session, chunks(pcm[4 * 32000 :]), 1)
    assert text(results) == WORDS[8:]  # from "what your country", not from "And"
    # Times stay the session's audio time (seed: start_time/end_time of the chunk).
    assert [r.raw["metadata"]["start_time"] for r in results] == [0.0, 2.0, 4.0, 6.0]
    assert emu.sessions[-1].summary()["align"] == "audio"


async def test_a_replay_after_a_drop_gives_each_word_once(emu: KwikmotionEmulator, aac_pcm: bytes) -> None:
    """What the relay does: chunks 0..2 answered, the connection dropped, a new session replays
    from chunk 3 (the first not transcribed): the transcripts of both make the reference once."""
    pieces = chunks(aac_pcm)
    emu.faults.drop_after_chunks = 3
    async with open_ws(emu) as ws:
        session = await start(ws, "en", ["fr"])
        first = await transcripts(ws, session, pieces[:3], 1)
    async with open_ws(emu) as ws:
        session = await start(ws, "en", ["fr"])
        second = await transcripts(ws, session, pieces[3:], 1)
    assert text(first) + text(second) == WORDS
    assert text(first) == WORDS[:12] and second[0].raw["metadata"]["start_time"] == 0.0
    assert [s.aligner.searches for s in emu.started_sessions()] == [1, 1]


async def test_time_mode_replays_by_the_sessions_audio_time(pcm: bytes) -> None:
    async with KwikmotionEmulator(token=TOKEN, align="time") as emu:
        assert emu.align == "time"
        async with open_ws(emu) as ws:
            session = await start(ws)
            results = await transcripts(ws, session, chunks(pcm[4 * 32000 :]))
    assert text(results) == WORDS[:14]  # the reference from its start, whatever the audio


def test_align_options() -> None:
    assert KwikmotionEmulator(token=TOKEN).align == "audio"  # the JFK sample and its transcript
    assert KwikmotionEmulator(token=TOKEN, reference_text="one two").align == "time"  # no audio for it
    custom = KwikmotionEmulator(token=TOKEN, reference_text="one two", reference_audio=JFK_FLAC)
    assert custom.align == "audio"
    with pytest.raises(ValueError, match="needs reference_audio"):
        KwikmotionEmulator(token=TOKEN, reference_text="one two", align="audio")
    with pytest.raises(ValueError, match="align must be"):
        KwikmotionEmulator(token=TOKEN, align="words")
