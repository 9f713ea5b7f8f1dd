"""The speech sample used by the demo, the restreamer and the tests (see README.md here)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
JFK_FLAC = HERE / "jfk.flac"
JFK_TEXT = (HERE / "jfk.txt").read_text().strip()


@cache
def jfk_pcm() -> bytes:
    """emulators/media/jfk.flac decoded with PyAV to 16 kHz mono s16le (what ingest produces)."""
    import av  # here: the demo and the restreamer import this package without decoding

    out = bytearray()
    with av.open(str(JFK_FLAC)) as container:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
        for frame in container.decode(audio=0):
            for f in resampler.resample(frame):
                out += f.to_ndarray().tobytes()
        for f in resampler.resample(None):
            out += f.to_ndarray().tobytes()
    return bytes(out)
