"""The A/V restream Kaltura sends, as a file: the speech sample with a synthetic H.264 video track,
muxed to FLV once with the ffmpeg binary of imageio-ffmpeg and cached (issue 22).

One function, ``av_flv``, makes it for the pipeline bench, the load generator (bench/loadgen.py)
and the tests, so they all publish the same kind of media: H.264 (libx264, a constant-ish
bitrate with a keyframe every 2 s, as an encoder set up for live streaming sends) and AAC. The
file is cached under the system temp dir keyed by every parameter and the ffmpeg version, and
written under a temporary name then renamed, so concurrent processes never read half a file.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

from emulators.media import JFK_FLAC

SAMPLE_SECONDS = 11.0  # jfk.flac
CACHE_DIR = Path(tempfile.gettempdir()) / "reachlive-media"


def av_flv(
    *,
    loops: int = 1,
    video: bool = True,
    size: str = "1280x720",
    fps: int = 30,
    video_bitrate: str = "3M",
    gop: int = 60,
    preset: str = "veryfast",
    audio_bitrate: str = "128k",
    cache_dir: Path | None = None,
) -> Path:
    """An FLV of the speech sample ``loops`` times back to back (AAC 44.1 kHz stereo) with, if
    ``video``, a ``size`` ``fps`` testsrc2 picture in H.264 at ``video_bitrate`` (maxrate the
    same, a buffer of twice it, a keyframe every ``gop`` frames); made once, then cached.

    The defaults are the bench's 3 Mbps 720p30 stream. ``preset`` only changes how hard x264
    works on it (the ingest never decodes video); veryfast keeps B-frames, as live encoders do."""
    import imageio_ffmpeg  # here: importing emulators.media must not need it

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    params = (loops, video, size, fps, video_bitrate, gop, preset, audio_bitrate, imageio_ffmpeg.__version__)
    digest = hashlib.sha256(repr(params).encode() + JFK_FLAC.read_bytes()).hexdigest()[:16]
    label = f"{size}p{fps}-{video_bitrate}" if video else "audio"
    folder = cache_dir or CACHE_DIR
    target = folder / f"jfk-x{loops}-{label}-{digest}.flv"
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
    cmd += ["-stream_loop", str(loops - 1), "-i", str(JFK_FLAC)]
    if video:
        cmd += ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}", "-map", "0:a", "-map", "1:v"]
        cmd += ["-c:v", "libx264", "-preset", preset, "-pix_fmt", "yuv420p"]
        cmd += ["-b:v", video_bitrate, "-maxrate", video_bitrate, "-bufsize", _double(video_bitrate)]
        cmd += ["-g", str(gop), "-keyint_min", str(gop)]
    cmd += ["-c:a", "aac", "-b:a", audio_bitrate, "-ar", "44100", "-ac", "2"]
    # The audio sets the length (the lavfi picture never ends).
    cmd += ["-t", f"{loops * SAMPLE_SECONDS:.3f}", "-f", "flv"]
    partial = folder / f".{target.name}.{os.getpid()}.part"
    try:
        subprocess.run([*cmd, str(partial)], check=True, stdin=subprocess.DEVNULL)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _double(rate: str) -> str:
    """``3M`` → ``6M``, ``2850k`` → ``5700k`` (ffmpeg's suffixes kept)."""
    digits = rate.rstrip("kKmMgG")
    return f"{2 * float(digits):g}{rate[len(digits) :]}"
