"""Units of the ingest that need no sockets: the track's timing and alignment, decoder errors,
stream key parsing."""

from __future__ import annotations

import pytest

from services.ingest.admission import normalize_app, stream_key
from services.ingest.decoder import AudioDecoder, DecodeError
from services.ingest.track import RATE, Track
from shared.rtmp.flv import parse_audio_tag


def pcm(samples: int) -> bytes:
    return bytes(2 * samples)


def test_track_counts_samples_from_an_anchor_despite_millisecond_timestamps():
    t = Track()
    frame = 371  # ~23.2 ms at 16 kHz, like one AAC frame
    for i in range(100):
        t.append(pcm(frame), round(i * frame / RATE, 3), 1000.0 + i * 0.023)
    assert t.at(50 * frame)[0] == pytest.approx(50 * frame / RATE, abs=1e-9)
    # a real jump in the source timestamps re-anchors
    t.append(pcm(frame), 500.0, 1003.0)
    assert t.at(100 * frame)[0] == 500.0


def test_peek_drop_and_standby_trim_keep_positions_absolute():
    t = Track()
    t.append(pcm(RATE), 10.0, 100.0)
    t.append(pcm(RATE), 11.0, 101.0)
    data, pts, epoch = t.peek(RATE // 2)
    assert len(data) == RATE and pts == 10.0 and epoch == 100.0
    assert t.head == 0 and t.available == 2 * RATE  # a peek leaves the samples in place
    t.drop(RATE // 2)
    assert t.head == RATE // 2 and t.at(t.head)[0] == pytest.approx(10.5)
    t.keep_last(RATE // 4)
    assert t.available == RATE // 4 and t.at(t.head)[0] == pytest.approx(11.75)


def test_alignment_by_pts_only_when_the_same_media_arrived_together():
    t = Track()
    for i in range(20):
        t.append(pcm(RATE // 4), i * 0.25, 100.0 + i * 0.25)
    pos = t.find_pts(2.0, 102.3, tolerance=3.0)
    assert pos == 2 * RATE
    assert t.find_pts(2.0, 200.0, tolerance=3.0) is None  # arrived far apart: other media
    assert t.find_pts(99.0, 102.0, tolerance=3.0) is None  # not held
    assert t.first_after_epoch(102.1) == round(2.25 * RATE)
    assert t.first_after_epoch(1e12) == t.end


def test_decoder_errors():
    d = AudioDecoder()
    with pytest.raises(DecodeError) as err:
        d.decode(parse_audio_tag(b"\xaf\x01" + bytes(20)), 0.0, 0.0)  # AAC before its config
    assert err.value.codec == "aac"
    with pytest.raises(DecodeError):
        d.decode(parse_audio_tag(b"\xaf\x00"), 0.0, 0.0)  # empty AudioSpecificConfig
    with pytest.raises(DecodeError) as err:
        d.decode(parse_audio_tag(b"\xb2" + bytes(20)), 0.0, 0.0)  # Speex
    assert err.value.codec == "speex"
    assert d.decode(parse_audio_tag(b"\xaf\x00\x12\x10"), 0.0, 0.0) == []
    try:
        d.decode(parse_audio_tag(b"\xaf\x01" + b"\xff" * 40), 0.0, 0.0)  # garbage AAC
    except DecodeError:
        pass


def test_stream_key_and_app_normalization():
    assert stream_key("abc?token=1") == "abc"
    assert stream_key(" abc ") == "abc"
    assert normalize_app("live/") == "live" and normalize_app("live?x=1") == "live"


def aac_packets(count: int) -> tuple[bytes, list[bytes]]:
    """The speech sample's first ``count`` AAC packets (44.1 kHz stereo) and its sequence header."""
    import av

    from emulators.media import JFK_FLAC

    enc = av.CodecContext.create("aac", "w")
    enc.sample_rate, enc.layout, enc.format = 44100, "stereo", "fltp"
    enc.open()
    packets: list[bytes] = []
    with av.open(str(JFK_FLAC)) as inp:
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=44100)
        for frame in inp.decode(audio=0):
            for f in resampler.resample(frame):
                f.pts = None
                packets += [bytes(p) for p in enc.encode(f)]
            if len(packets) >= count:
                break
    return b"\xaf\x00" + bytes(enc.extradata), [b"\xaf\x01" + p for p in packets[:count]]


def test_decoded_audio_keeps_each_messages_arrival_epoch():
    """Batched resampling must not stamp a batch's later samples with its first message's
    arrival time: start_epoch (Kaltura seed) is when the media at ``start`` was received."""
    header, packets = aac_packets(200)
    d = AudioDecoder()
    assert d.decode(parse_audio_tag(header), 0.0, 0.0) == []
    base, frame_s = 1000.0, 1024 / 44100
    segments = []
    for i, packet in enumerate(packets):
        # A real-time publisher: message i arrives at base + its media time.
        segments += d.decode(parse_audio_tag(packet), i * frame_s, base + i * frame_s)
    assert len(segments) > 100  # one per decoded frame, not one per 250 ms batch
    for _pcm, pts, epoch in segments:
        assert epoch == pytest.approx(base + pts, abs=0.002)
    out = b"".join(p for p, _, _ in segments)
    assert abs(len(out) / 2 / 16000 - len(segments) * frame_s) < 0.05


def test_read_coalescing_never_holds_back_the_end_of_a_chunk():
    """Coalescing reads saves wakeups, but the bytes that complete a chunk must be read as they
    arrive: their arrival is where the pipeline's latency starts (issue 8's overhead)."""
    from services.ingest.publisher import Publisher
    from services.ingest.readpause import COALESCE_SECONDS, FRAME_GUARD_SECONDS, coalesce_pause

    pub = Publisher(None, "e", "t", chunk_ms=500, standby_seconds=5)  # type: ignore[arg-type]
    assert pub.seconds_to_chunk() is None  # a standby writes no chunks
    assert coalesce_pause(pub.seconds_to_chunk()) == COALESCE_SECONDS
    pub.role = "primary"
    assert pub.seconds_to_chunk() == pytest.approx(0.5)
    assert coalesce_pause(pub.seconds_to_chunk()) == COALESCE_SECONDS
    pub.track.append(b"\0\0" * 6000, 0.0, 0.0)  # 375 ms of the 500 ms chunk
    assert pub.seconds_to_chunk() == pytest.approx(0.125)
    assert coalesce_pause(pub.seconds_to_chunk()) == pytest.approx(0.125 - FRAME_GUARD_SECONDS)
    pub.track.append(b"\0\0" * 800, 0.375, 0.375)  # 75 ms left: pause until a frame before then
    assert coalesce_pause(pub.seconds_to_chunk()) == pytest.approx(0.075 - FRAME_GUARD_SECONDS)
    pub.track.append(b"\0\0" * 500, 0.425, 0.425)  # 43.75 ms left, the guard's 27 of it: 16.75 ms
    assert coalesce_pause(pub.seconds_to_chunk()) == pytest.approx(0.04375 - FRAME_GUARD_SECONDS)
    pub.track.append(b"\0\0" * 300, 0.45625, 0.45625)  # within a frame of the end: read each message
    assert coalesce_pause(pub.seconds_to_chunk()) == 0.0


async def test_a_chunk_whose_write_finds_the_lease_lost_is_written_by_the_next_writer(redis_url):
    """Under overload a writer's heartbeat can starve past the lease TTL: its next write finds
    the lease gone. That chunk must stay in the track (the timeline's pts_end points at it), so
    the writer that continues, here the same publisher re-acquiring, writes it: no gap."""
    import numpy as np

    from services.ingest.coordinator import Coordinator
    from services.ingest.publisher import Publisher
    from shared import keys, streams
    from shared.redis_client import command_client

    client = command_client(redis_url)
    try:
        await client.delete(keys.ingest_primary("lapse"), keys.ingest_state("lapse"), keys.audio("lapse"))
        pub = Publisher(
            Coordinator(client, chunk_ms=500, retention_seconds=60), "lapse", "t", chunk_ms=500, standby_seconds=30
        )
        source = (np.arange(4 * 8000) % 30000).astype("<i2").tobytes()  # 2 s, every sample distinct
        await pub.try_acquire()
        assert pub.role == "primary"
        pub.track.append(source[: 2 * 8000 * 2], 0.0, 1000.0)  # 1 s: two chunks
        await pub._write_ready(final=False)
        await client.delete(keys.ingest_primary("lapse"))  # the lease lapsed meanwhile
        pub.track.append(source[2 * 8000 * 2 :], 1.0, 1001.0)
        await pub._write_ready(final=False)  # finds the lease lost: a standby now
        assert pub.role == "standby"
        await pub.try_acquire()  # the next heartbeat: the writer again
        assert pub.role == "primary"
        await pub._write_ready(final=True)
        entries = [streams.parse_audio(f) for _id, f in await client.xrange(keys.audio("lapse"))]
        assert [e.media_time for e in entries] == [0.0, 0.5, 1.0, 1.5]
        assert b"".join(e.pcm for e in entries) == source
    finally:
        await client.aclose()


async def test_a_write_is_the_writers_heartbeat(redis_url):
    """A chunk write renews the writer lease and ``alive`` in the same script, so the heartbeat
    after a write makes no refresh round trip; with no write since the last beat (audio that
    completes no chunk), the beat refreshes as before, and a stolen lease is still noticed."""
    from services.ingest.coordinator import Coordinator
    from services.ingest.publisher import RENEWED_RECENTLY_SECONDS, Publisher
    from shared import keys
    from shared.redis_client import command_client

    client = command_client(redis_url)
    try:
        await client.delete(keys.ingest_primary("beat"), keys.ingest_state("beat"), keys.audio("beat"))
        coord = Coordinator(client, chunk_ms=500, retention_seconds=60)
        refreshes: list[bool] = []
        real_refresh = coord.refresh

        async def counted(event_id: str, me: str) -> bool:
            refreshes.append(ok := await real_refresh(event_id, me))
            return ok

        coord.refresh = counted  # type: ignore[method-assign]
        pub = Publisher(coord, "beat", "t", chunk_ms=500, standby_seconds=30)
        await pub.try_acquire()
        await client.pexpire(keys.ingest_primary("beat"), 1000)  # as if about to lapse
        await client.hset(keys.ingest_state("beat"), "alive", "0")
        pub.track.append(bytes(2 * 8000), 0.0, 1000.0)  # one 500 ms chunk
        await pub._write_ready(final=False)
        assert await client.pttl(keys.ingest_primary("beat")) > 4000  # the write renewed it
        assert float(await client.hget(keys.ingest_state("beat"), "alive")) > 1e9
        await pub.heartbeat(receiving=True)
        assert refreshes == []  # the write was this beat's refresh
        await pub.heartbeat(receiving=True)
        # ... and the next one's: the write renewed the lease under 2 s ago (a write and a beat
        # every second: "since the last beat" refreshed one beat in five for nothing, issue 22).
        assert refreshes == []
        pub._wrote_at -= RENEWED_RECENTLY_SECONDS  # as if that long had passed without a write
        await pub.heartbeat(receiving=True)
        assert refreshes == [True]  # nothing written lately: a real refresh
        await client.set(keys.ingest_primary("beat"), "someone-else")
        await pub.heartbeat(receiving=True)
        assert refreshes == [True, False] and pub.role == "standby"
    finally:
        await client.aclose()


async def test_a_writer_gone_quiet_mid_entry_writes_what_it_sent(redis_url):
    """2 s entries: a publisher that stalls (sends nothing, its connection open) mid-entry must not
    keep the last words of its audio from the relay until it resumes. The first beat that finds it
    quiet writes the partial entry, decoded audio waiting in the batch included; a beat while it
    sends writes nothing short, and the timeline goes on after the stall."""
    from services.ingest.coordinator import Coordinator
    from services.ingest.publisher import Publisher
    from shared import keys, streams
    from shared.redis_client import command_client

    client = command_client(redis_url)
    try:
        coord = Coordinator(client, chunk_ms=2000, retention_seconds=60)
        pub = Publisher(coord, "quiet", "t", chunk_ms=2000, standby_seconds=30)
        await pub.try_acquire()
        assert pub.role == "primary"
        pub.track.append(bytes(2 * 16000), 0.0, 1000.0)  # 1 s of a 2 s entry
        await pub.heartbeat(receiving=True)
        assert await client.xlen(keys.audio("quiet")) == 0  # sending: the entry is not complete
        await pub.heartbeat(receiving=False)
        entries = [streams.parse_audio(f) for _id, f in await client.xrange(keys.audio("quiet"))]
        assert [(e.media_time, e.duration) for e in entries] == [(0.0, 1.0)]
        await pub.heartbeat(receiving=False)  # nothing more to write
        assert await client.xlen(keys.audio("quiet")) == 1
        pub.track.append(bytes(2 * 32000), 5.0, 1005.0)  # it sends again: 2 s
        await pub._write_ready(final=False)
        entries = [streams.parse_audio(f) for _id, f in await client.xrange(keys.audio("quiet"))]
        assert [(e.media_time, e.duration) for e in entries] == [(0.0, 1.0), (1.0, 2.0)]
    finally:
        await client.aclose()


async def test_a_takeover_gone_quiet_before_its_audio_landed_continues_the_timeline(redis_url):
    """A standby takes over (the writer went quiet, wrote what it had and released) while its own
    audio, which overlaps the written timeline, still waits in the decoder's batch; then it goes
    quiet too. The quiet beat's write must continue the timeline where the writer's ended (the
    takeover's alignment applied to the drained audio), not write the overlap again."""
    from services.ingest.coordinator import Coordinator
    from services.ingest.publisher import Publisher
    from shared import keys, streams
    from shared.redis_client import command_client

    header, packets = aac_packets(48)
    frame_ms = 1024 / 44.1

    async def publish(pub: Publisher, first: int, last: int) -> None:
        """Packets [first, last) of the same media, in real time from 1000.0 (both publishers
        carry one encoder's output)."""
        await pub.on_audio(header, round(first * frame_ms), 1000.0 + first * frame_ms / 1000)
        for i in range(first, last):
            await pub.on_audio(packets[i], round(i * frame_ms), 1000.0 + i * frame_ms / 1000)

    client = command_client(redis_url)
    try:
        coord = Coordinator(client, chunk_ms=2000, retention_seconds=60)
        writer = Publisher(coord, "takeover", "t", chunk_ms=2000, standby_seconds=30)
        await writer.try_acquire()
        await publish(writer, 0, 44)  # ~1.02 s
        await writer.heartbeat(receiving=False)  # quiet: what it sent is written
        await coord.release("takeover", writer.id)
        (first,) = [streams.parse_audio(f) for _id, f in await client.xrange(keys.audio("takeover"))]

        standby = Publisher(coord, "takeover", "t", chunk_ms=2000, standby_seconds=30)
        await standby.try_acquire()
        assert standby.role == "primary" and standby.expected == round(first.duration * 16000)
        await publish(standby, 39, 48)  # from ~0.91 s: ~0.1 s overlaps what was written
        assert await client.xlen(keys.audio("takeover")) == 1  # still in the decoder's batch
        await standby.heartbeat(receiving=False)
        entries = [streams.parse_audio(f) for _id, f in await client.xrange(keys.audio("takeover"))]
        assert len(entries) == 2 and entries[1].media_time == first.duration
        # It starts at the source time where the first ended, not at the standby's first packet.
        assert entries[1].pts == pytest.approx(first.pts + first.duration, abs=0.03), entries[1]
    finally:
        await client.aclose()
