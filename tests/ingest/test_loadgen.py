"""The load generator (bench/loadgen.py, issue 22) against a real ingest: the ingest makes the
same PCM from it as from ffmpeg publishing the same FLV file, and a refused publish is reported
(not waited on). Small inputs: an 11 s 320x240 A/V FLV, published faster than real time."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from bench.loadgen import Media, publish, read_flv
from emulators.media.flv import av_flv
from shared.rtmp.chunks import AUDIO, DATA_AMF0, VIDEO
from tests.ingest.conftest import FFMPEG, audio_entries, end_window, make_event, pcm_of
from tests.ingest.test_interop import check_audio

AAC_FRAME_16K = 1024 * 16000 / 44100  # one AAC frame of the 44.1 kHz source, in ingest samples


@pytest.fixture(scope="module")
def small_flv():
    # The bench's A/V stream in small: the same encoder, a smaller picture (made once, cached).
    return av_flv(loops=1, size="320x240", video_bitrate="500k")


async def ffmpeg_copy(flv, url: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *(FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(flv), "-c", "copy", "-f", "flv", url),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, err.decode(errors="replace")


def test_media_sends_headers_first_then_the_file_in_time(small_flv):
    media = Media.from_flv(small_flv)
    tags = read_flv(small_flv.read_bytes())
    kinds = [(t, b[:2]) for t, _ts, b in media.messages[:3]]
    assert kinds[0][0] == DATA_AMF0 and media.messages[0][2].startswith(b"\x02\x00\x0d@setDataFrame")
    assert sorted(kinds[1:]) == [(AUDIO, b"\xaf\x00"), (VIDEO, b"\x17\x00")]  # both sequence headers
    assert {t for t, _ts, _b in media.messages} == {AUDIO, VIDEO, DATA_AMF0}
    assert media.size == sum(len(b) for _t, _ts, b in tags) + len(b"\x02\x00\x0d@setDataFrame")
    assert media.due == sorted(media.due) and media.duration == pytest.approx(11.0, abs=0.1)
    # longer than the file: repeated back to back, the timeline going on (headers once)
    longer = Media.from_flv(small_flv, seconds=25)
    assert longer.duration == pytest.approx(25.0) and 24.9 < longer.due[-1] < 25
    assert sum(1 for t, _ts, b in longer.messages if t == AUDIO and b[1] == 0) == 1
    assert Media.from_flv(small_flv, seconds=4).due[-1] < 4


async def test_same_pcm_as_ffmpeg_publishing_the_same_file(start_ingest, redis_client, small_flv):
    make_event(redis_client, "ev1", "t1", "key-1")
    make_event(redis_client, "ev2", "t2", "key-2")
    server = await start_ingest()
    base = f"rtmp://127.0.0.1:{server.port}/live/"
    media = Media.from_flv(small_flv)
    # At 4x real time: the pacing runs (nothing here asserts its timing).
    report, (code, err) = await asyncio.gather(
        publish(media, [base + "key-1"], rate=4.0), ffmpeg_copy(small_flv, base + "key-2")
    )
    assert code == 0, err[-2000:]
    (result,) = report.streams
    assert result.outcome == "done", result
    assert result.bytes_sent == len(media.chunked(server.settings.rtmp_chunk_size, 1)[0])
    for event in ("ev1", "ev2"):
        await end_window(redis_client, server, event)
        check_audio(redis_client, event)  # continuous, the source's duration, correlated with it
    ours, ffmpegs = pcm_of(audio_entries(redis_client, "ev1")), pcm_of(audio_entries(redis_client, "ev2"))
    assert abs(len(ours) - len(ffmpegs)) <= AAC_FRAME_16K, (len(ours), len(ffmpegs))
    common = min(len(ours), len(ffmpegs))
    assert common > 10 * 16000
    assert np.array_equal(ours[:common], ffmpegs[:common])


async def test_a_refused_publish_is_reported_and_the_others_go_on(start_ingest, redis_client, small_flv):
    make_event(redis_client)
    server = await start_ingest()
    base = f"rtmp://127.0.0.1:{server.port}/live/"
    media = Media.from_flv(small_flv, seconds=2)
    report = await asyncio.wait_for(publish(media, [base + "key-1", base + "wrong-key"], rate=0), 60)
    done, refused = report.streams
    assert done.outcome == "done" and done.media_seconds == pytest.approx(media.due[-1])
    assert refused.outcome == "refused" and refused.bytes_sent == 0
    assert refused.detail.startswith("publish: NetStream.Publish.BadName"), refused.detail
    assert "wrong-key" not in refused.detail
    assert any("1 × refused: publish: NetStream.Publish.BadName" in line for line in report.lines())


async def test_no_answer_is_a_failure_not_a_hang(small_flv):
    # A server that accepts the connection and never says a word (not even S0 S1 S2).
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        report = await publish(Media.from_flv(small_flv, seconds=1), [f"rtmp://127.0.0.1:{port}/live/k"], timeout=1)
    (result,) = report.streams
    assert result.outcome == "failed" and "no answer to the publish" in result.detail
