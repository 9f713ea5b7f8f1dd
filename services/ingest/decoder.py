"""FLV audio (AAC, MP3) → 16 kHz mono s16le PCM with PyAV (DESIGN section 3).

AAC in FLV carries its AudioSpecificConfig in a sequence-header message (FLV spec E.4.2.2),
given to the decoder as extradata; raw AAC messages are one access unit each. MP3 messages go
through libavcodec's parser, since an encoder may split frames across messages.
"""

from __future__ import annotations

import av
import av.error

from shared.rtmp.flv import AAC, AAC_SEQUENCE_HEADER, MP3, MP3_8K, AudioTag

OUT_RATE = 16000


class DecodeError(Exception):
    def __init__(self, codec: str, message: str) -> None:
        super().__init__(f"{codec}: {message}")
        self.codec = codec


class AudioDecoder:
    def __init__(self) -> None:
        self._ctx: av.CodecContext | None = None
        self._key: tuple[int, bytes] | None = None
        self._resampler: av.AudioResampler | None = None

    def _open(self, fmt: int, extradata: bytes = b"") -> None:
        ctx = av.CodecContext.create("aac" if fmt == AAC else "mp3", "r")
        if extradata:
            ctx.extradata = extradata
        self._ctx = ctx
        self._key = (fmt, extradata)
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=OUT_RATE)

    def decode(self, tag: AudioTag) -> bytes:
        """PCM for one FLV audio message (possibly empty: decoders and resamplers delay)."""
        if tag.sound_format == AAC:
            if tag.aac_packet_type == AAC_SEQUENCE_HEADER:
                if self._key != (AAC, tag.data):
                    if not tag.data or len(tag.data) > 64:
                        raise DecodeError("aac", "bad AudioSpecificConfig")
                    self._open(AAC, tag.data)
                return b""
            if self._key is None or self._key[0] != AAC:
                raise DecodeError("aac", "AAC data before its sequence header")
            return self._run([av.Packet(tag.data)], "aac")
        if tag.sound_format in (MP3, MP3_8K):
            if self._key is None or self._key[0] != MP3:
                self._open(MP3)
            assert self._ctx is not None
            try:
                packets = self._ctx.parse(tag.data)
            except av.error.FFmpegError as exc:
                raise DecodeError("mp3", str(exc)) from None
            return self._run(packets, "mp3")
        raise DecodeError(tag.codec, "unsupported audio codec (AAC or MP3 expected)")

    def _run(self, packets: list[av.Packet], codec: str) -> bytes:
        assert self._ctx is not None and self._resampler is not None
        out = bytearray()
        try:
            for packet in packets:
                for frame in self._ctx.decode(packet):
                    frame.pts = None  # we time samples ourselves; avoid resampler pts checks
                    for res in self._resampler.resample(frame):
                        out += res.to_ndarray().tobytes()
        except (av.error.FFmpegError, ValueError) as exc:
            raise DecodeError(codec, str(exc)) from None
        return bytes(out)

    def flush(self) -> bytes:
        """The samples still inside the decoder and resampler (at the end of a publish)."""
        if self._ctx is None or self._resampler is None:
            return b""
        out = bytearray()
        try:
            for frame in self._ctx.decode(None):
                frame.pts = None
                for res in self._resampler.resample(frame):
                    out += res.to_ndarray().tobytes()
            for res in self._resampler.resample(None):
                out += res.to_ndarray().tobytes()
        except (av.error.FFmpegError, ValueError):
            pass
        return bytes(out)
