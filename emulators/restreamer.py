"""The Kaltura live side, media half: restream a media file to ``<mediaUrl>/<mediaKey>`` over
RTMP in real time, as Kaltura does for each live caption feature once the event starts.

Uses PyAV (libavformat's own RTMP client, code we did not write), encoding the file's audio to
AAC in FLV, optionally with a synthetic H.264 video track, paced to the wall clock.
"""

from __future__ import annotations

import argparse
import fractions
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

log = logging.getLogger(__name__)


@dataclass
class RestreamStats:
    url_path: str
    packets: int = 0
    media_seconds: float = 0.0
    started: float = 0.0
    finished: float = 0.0
    error: str = ""


def publish_url(media_url: str, media_key: str) -> str:
    """Kaltura publishes to ``<mediaUrl>/<mediaKey>`` (DESIGN section 2)."""
    return f"{media_url.rstrip('/')}/{media_key}"


def restream(
    source: str | Path,
    url: str,
    *,
    realtime: bool = True,
    loops: int = 1,
    video: bool = False,
    stop: threading.Event | None = None,
    start_offset: float = 0.0,
) -> RestreamStats:
    """Publish ``source`` to ``url``; blocks until done (or ``stop`` is set). ``loops`` repeats
    the file back to back on one timeline; ``start_offset`` skips into it (a reconnecting
    publisher continues)."""
    stop = stop or threading.Event()
    stats = RestreamStats(url_path=url.rsplit("/", 2)[-2] + "/…")  # never log the media key
    out = av.open(url, "w", format="flv")
    try:
        astream = out.add_stream("aac", rate=44100, layout="stereo")
        astream.bit_rate = 128_000
        vstream = None
        if video:
            vstream = out.add_stream("libx264", rate=25, options={"preset": "ultrafast", "tune": "zerolatency"})
            vstream.width, vstream.height, vstream.pix_fmt = 320, 240, "yuv420p"
        t0 = time.monotonic()
        stats.started = time.time()
        next_video = 0
        for loop in range(loops):
            with av.open(str(source)) as inp:
                duration = float(inp.duration or 0) / av.time_base
                for frame in inp.decode(audio=0):
                    if stop.is_set():
                        return stats
                    ftime = float(frame.pts * frame.time_base) if frame.pts is not None else 0.0
                    if loop == 0 and ftime < start_offset:
                        continue
                    media_t = loop * duration + ftime - start_offset
                    frame.pts = None
                    for packet in astream.encode(frame):
                        _pace(realtime, t0, media_t, stop)
                        out.mux(packet)
                        stats.packets += 1
                    while vstream is not None and next_video / 25 <= media_t:
                        vframe = _video_frame(next_video)
                        next_video += 1
                        for packet in vstream.encode(vframe):
                            out.mux(packet)
                    stats.media_seconds = media_t
        for packet in astream.encode(None):
            out.mux(packet)
        if vstream is not None:
            for packet in vstream.encode(None):
                out.mux(packet)
    except (av.FFmpegError, OSError) as exc:
        stats.error = str(exc)
        log.warning("restream failed: %s", exc)
    finally:
        stats.finished = time.time()
        try:
            out.close()
        except (av.FFmpegError, OSError) as exc:
            stats.error = stats.error or str(exc)
    return stats


def encode_flv(source: str | Path, target: str | Path, *, loops: int = 1) -> Path:
    """Encode ``source`` once to an AAC FLV file (``loops`` times back to back), so that many
    publishers can ``remux`` it without each paying for an AAC encoder (the pipeline bench)."""
    restream(source, str(target), realtime=False, loops=loops)
    return Path(target)


def remux(flv: str | Path, url: str, *, realtime: bool = True, stop: threading.Event | None = None) -> RestreamStats:
    """Publish an already-encoded FLV file to ``url`` packet by packet, paced to the wall clock."""
    stop = stop or threading.Event()
    stats = RestreamStats(url_path=url.rsplit("/", 2)[-2] + "/…")
    try:
        with av.open(str(flv)) as inp, av.open(url, "w", format="flv") as out:
            streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
            t0 = time.monotonic()
            stats.started = time.time()
            for packet in inp.demux():
                if stop.is_set():
                    break
                if packet.dts is None:
                    continue
                media_t = float(packet.dts * packet.time_base)
                _pace(realtime, t0, media_t, stop)
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
                stats.packets += 1
                stats.media_seconds = media_t
    except (av.FFmpegError, OSError) as exc:
        stats.error = str(exc)
    stats.finished = time.time()
    return stats


def _pace(realtime: bool, t0: float, media_t: float, stop: threading.Event) -> None:
    if realtime:
        delay = t0 + media_t - time.monotonic()
        if delay > 0:
            stop.wait(delay)


def _video_frame(n: int) -> av.VideoFrame:
    img = np.full((240, 320, 3), (n * 7) % 255, dtype=np.uint8)
    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
    frame.pts = n
    frame.time_base = fractions.Fraction(1, 25)
    return frame


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Restream a media file over RTMP in real time (Kaltura-like).")
    parser.add_argument("source")
    parser.add_argument("url", help="rtmp://host:port/app/<mediaKey>")
    parser.add_argument("--fast", action="store_true", help="as fast as possible, not real time")
    parser.add_argument("--loops", type=int, default=1)
    parser.add_argument("--video", action="store_true")
    args = parser.parse_args(argv)
    stats = restream(args.source, args.url, realtime=not args.fast, loops=args.loops, video=args.video)
    print(stats)
    return 1 if stats.error else 0


if __name__ == "__main__":
    raise SystemExit(main())
