"""FLV audio (AAC, MP3) → 16 kHz mono s16le PCM with PyAV (docs/design.md section 3).

AAC in FLV carries its AudioSpecificConfig in a sequence-header message (FLV spec E.4.2.2),
given to the decoder as extradata; raw AAC messages are one access unit each. MP3 messages go
through libavcodec's parser, since an encoder may split frames across messages.
"""

from __future__ import annotations

import av
import av.error

from shared.rtmp.flv import AAC, AAC_SEQUENCE_HEADER, MP3, MP3_8K, AudioTag

OUT_RATE = 16000
# Decoded frames are resampled in batches of this length: one resampler call per ~10 AAC
# frames instead of one per frame (PyAV's per-call cost dominates the ingest's CPU per stream).
# The batch is an av.AudioFifo (libavutil's, in C): gathering it through numpy arrays cost a
# quarter of the decoder's time (to_ndarray, concatenate and from_ndarray per batch).
BATCH_SECONDS = 0.25

Segment = tuple[bytes, float, float]  # (16 kHz PCM, source pts of its first sample, arrival epoch)


class DecodeError(Exception):
    def __init__(self, codec: str, message: str) -> None:
        super().__init__(f"{codec}: {message}")
        self.codec = codec


class AudioDecoder:
    def __init__(self) -> None:
        self._ctx: av.CodecContext | None = None
        self._key: tuple[int, bytes] | None = None
        self._resampler: av.AudioResampler | None = None
        self._fifo: av.AudioFifo | None = None
        self._pending_samples = 0
        self._pending_meta: tuple[str, str, int, float, float] | None = None  # format, layout, rate, pts, epoch
        # (source-sample offset in the batch, pts, arrival epoch) of each decoded frame, so every
        # output sample keeps the arrival time of its own message, not the batch's first one
        # (a 250 ms batch would otherwise stamp its later samples up to 250 ms too early).
        self._pending_marks: list[tuple[int, float, float]] = []
        # Seconds of audio after which the pending batch is resampled at the latest. The
        # publisher lowers it to what completes the chunk being filled, so batching never
        # holds back a chunk's end (the pipeline's latency) while still saving resampler calls.
        self.horizon = BATCH_SECONDS
        self._last = (0.0, 0.0)  # pts and arrival epoch of the last message decoded

    @property
    def pending_seconds(self) -> float:
        """Decoded audio waiting in the batch, not yet resampled."""
        rate = self._pending_meta[2] if self._pending_meta is not None else 0
        return self._pending_samples / rate if rate else 0.0

    def _open(self, fmt: int, extradata: bytes = b"") -> list[Segment]:
        out = self._emit()
        ctx = av.CodecContext.create("aac" if fmt == AAC else "mp3", "r")
        if extradata:
            ctx.extradata = extradata
        self._ctx = ctx
        self._key = (fmt, extradata)
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=OUT_RATE)
        return out

    def decode(self, tag: AudioTag, pts: float, epoch: float) -> list[Segment]:
        """PCM segments completed by one FLV audio message (often none: batches, codec delay)."""
        self._last = (pts, epoch)
        if tag.sound_format == AAC:
            if tag.aac_packet_type == AAC_SEQUENCE_HEADER:
                if self._key != (AAC, tag.data):
                    if not tag.data or len(tag.data) > 64:
                        raise DecodeError("aac", "bad AudioSpecificConfig")
                    return self._open(AAC, tag.data)
                return []
            if self._key is None or self._key[0] != AAC:
                raise DecodeError("aac", "AAC data before its sequence header")
            return self._run([av.Packet(tag.data)], "aac", pts, epoch)
        if tag.sound_format in (MP3, MP3_8K):
            out: list[Segment] = []
            if self._key is None or self._key[0] != MP3:
                out = self._open(MP3)
            assert self._ctx is not None
            try:
                packets = self._ctx.parse(tag.data)
            except av.error.FFmpegError as exc:
                raise DecodeError("mp3", str(exc)) from None
            return out + self._run(packets, "mp3", pts, epoch)
        raise DecodeError(tag.codec, "unsupported audio codec (AAC or MP3 expected)")

    def _run(self, packets: list[av.Packet], codec: str, pts: float, epoch: float) -> list[Segment]:
        assert self._ctx is not None
        out: list[Segment] = []
        try:
            for packet in packets:
                for frame in self._ctx.decode(packet):
                    meta = (frame.format.name, frame.layout.name, frame.sample_rate)
                    if self._pending_meta is not None and self._pending_meta[:3] != meta:
                        out += self._emit()
                    if self._pending_meta is None:
                        self._pending_meta = (*meta, pts, epoch)
                    self._pending_marks.append((self._pending_samples, pts, epoch))
                    self._push(frame)
                    if self._pending_samples >= min(BATCH_SECONDS, self.horizon) * frame.sample_rate:
                        out += self._emit()
        except (av.error.FFmpegError, ValueError) as exc:
            raise DecodeError(codec, str(exc)) from None
        return out

    def _push(self, frame: av.AudioFrame) -> None:
        if self._fifo is None:
            self._fifo = av.AudioFifo()
        # The fifo checks each frame's pts against the previous one's end; the source pts is
        # kept in the marks, and a jump in it must not make the write fail.
        frame.pts = None
        self._fifo.write(frame)
        self._pending_samples += frame.samples

    def _emit(self, final: bool = False) -> list[Segment]:
        """Resample the pending batch (and, at the end, the resampler's tail): one segment per
        decoded frame, each with its own message's pts and arrival epoch."""
        if self._resampler is None:
            return []
        pcm = bytearray()
        meta = self._pending_meta
        marks = self._pending_marks
        batch = self._fifo.read() if self._fifo is not None and self._fifo.samples else None
        # A fresh fifo per batch: one keeps the first frame's format, and the next batch may
        # differ (a new sequence header changes the rate or layout mid-publish).
        self._fifo = None
        if batch is not None:
            for res in self._resampler.resample(batch):
                pcm += _pcm(res)
        if final:
            for res in self._resampler.resample(None):
                pcm += _pcm(res)
        self._pending_samples, self._pending_meta, self._pending_marks = 0, None, []
        if not pcm:
            return []
        if meta is None or not marks:
            return [(bytes(pcm), meta[3] if meta else 0.0, meta[4] if meta else 0.0)]
        rate = meta[2]
        total = len(pcm) // 2
        # Source offsets → output samples (the resampler's ~1 ms delay is ignored); the last
        # segment takes whatever the resampler returned beyond the last frame's start.
        starts = [min(total, round(off * OUT_RATE / rate)) for off, _pts, _epoch in marks]
        segments: list[Segment] = []
        for i, (_off, pts, epoch) in enumerate(marks):
            end = starts[i + 1] if i + 1 < len(marks) else total
            if end > starts[i]:
                segments.append((bytes(pcm[starts[i] * 2 : end * 2]), pts, epoch))
        return segments

    def drain(self) -> list[Segment]:
        """The pending batch resampled now (a publisher gone quiet mid-chunk): decoding goes on
        afterwards; only the resampler's own ~1 ms delay stays inside."""
        return self._emit()

    def flush(self) -> list[Segment]:
        """Everything still inside the decoder, the batch and the resampler (end of a publish)."""
        if self._ctx is None:
            return []
        try:
            for frame in self._ctx.decode(None):
                if self._pending_meta is None:  # stamped as the last message's audio
                    self._pending_meta = (frame.format.name, frame.layout.name, frame.sample_rate, *self._last)
                    self._pending_marks.append((0, *self._last))
                self._push(frame)
            return self._emit(final=True)
        except (av.error.FFmpegError, ValueError):
            return []


def _pcm(frame: av.AudioFrame) -> memoryview:
    """The s16 mono samples of a resampled frame (its plane may be padded past them)."""
    return memoryview(frame.planes[0])[: frame.samples * 2]
