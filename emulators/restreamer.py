"""The Kaltura live side, media half: restream a media file to ``<mediaUrl>/<mediaKey>`` over
RTMP in real time, as Kaltura does for each live caption feature once the event starts.

Uses PyAV (libavformat's own RTMP client, code we did not write), encoding the file's audio to
AAC in FLV, optionally with a synthetic H.264 video track, paced to the wall clock.

What real events bring (issue 16): ``restream_segments`` publishes one source as several RTMP
publishes in a row, each a new connection and a new encoder (its timestamps start at 0 again)
that continues the media where the previous one stopped, after a wait: the broadcaster's encoder
restarting and Kaltura's restream reconnecting (``restream_with_gap``), or a feature's publish
that starts late, on the live media of that moment (``late_restream``, a late order's feature).
PyAV holds the GIL while libavformat blocks on its socket: a test whose RTMP server runs in the
same process runs the restreamer as a process (``python -m emulators.restreamer``).
"""

from __future__ import annotations

import argparse
import dataclasses
import fractions
import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

log = logging.getLogger(__name__)


@dataclass
class RestreamStats:
    url_path: str
    packets: int = 0
    media_seconds: float = 0.0  # of this publish's own timeline (which starts at 0)
    started: float = 0.0  # wall clock, once connected
    finished: float = 0.0  # wall clock, once closed
    error: str = ""
    source_start: float = 0.0  # where in the (looped) source this publish started, seconds
    source_end: float = 0.0  # where it stopped: source_start + media_seconds up to the last frame


@dataclass
class Publish:
    """One RTMP publish of a segmented restream (``restream_segments``)."""

    url: str
    until: float | None = None  # source seconds (on the looped timeline) where it stops; None: the end
    after: float = 0.0  # seconds to wait before connecting: the gap after the previous publish closed


def publish_url(media_url: str, media_key: str) -> str:
    """Kaltura publishes to ``<mediaUrl>/<mediaKey>`` (docs/design.md section 2)."""
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
    stop_at: float | None = None,
) -> RestreamStats:
    """Publish ``source`` to ``url``; blocks until done (or ``stop`` is set). ``loops`` repeats
    the file back to back on one timeline; ``start_offset`` skips into it (a reconnecting
    publisher continues) and ``stop_at`` ends the publish there (seconds of that timeline: the
    frames in [start_offset, stop_at) are sent, then the encoder is flushed and the connection
    closed). Timestamps of the publish start at 0 whatever ``start_offset``."""
    stop = stop or threading.Event()
    stats = RestreamStats(url_path=url.rsplit("/", 2)[-2] + "/…", source_start=start_offset)  # never the key
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
        ended = False
        for loop in range(loops):
            if ended:
                break
            with av.open(str(source)) as inp:
                duration = float(inp.duration or 0) / av.time_base
                for frame in inp.decode(audio=0):
                    if stop.is_set():
                        return stats
                    ftime = float(frame.pts * frame.time_base) if frame.pts is not None else 0.0
                    position = loop * duration + ftime  # on the looped timeline
                    if position < start_offset:
                        continue
                    if stop_at is not None and position >= stop_at:
                        ended = True
                        break
                    media_t = position - start_offset
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
                    stats.source_end = position
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


def restream_segments(
    source: str | Path,
    publishes: Sequence[Publish],
    *,
    start_offset: float = 0.0,
    stop: threading.Event | None = None,
    **options: Any,
) -> list[RestreamStats]:
    """Publish ``source`` as the given publishes in a row, each its own RTMP connection and
    encoder: publish i waits ``after`` seconds (interrupted by ``stop``), then sends the source
    from where publish i-1 stopped (``start_offset`` for the first) to its ``until``, on a
    timeline that starts at 0 again, and closes. A publish that fails (refused, reset) does
    not stop the next one: a restarted encoder tries again. Stats per publish, in order;
    ``options`` as ``restream`` (``realtime``, ``loops``, ``video``)."""
    stop = stop or threading.Event()
    out: list[RestreamStats] = []
    offset = start_offset
    for publish in publishes:
        if publish.after > 0 and stop.wait(publish.after):
            break
        if stop.is_set():
            break
        stats = restream(source, publish.url, stop=stop, start_offset=offset, stop_at=publish.until, **options)
        out.append(stats)
        if publish.until is None:
            break
        offset = publish.until
    return out


def restream_with_gap(
    source: str | Path,
    url: str,
    pause_at: float,
    pause_for: float,
    resume_url: str | None = None,
    *,
    stop_at: float | None = None,
    **options: Any,
) -> list[RestreamStats]:
    """The broadcaster's encoder restarts: publish [start_offset, pause_at) to ``url``, close the
    connection, wait ``pause_for`` seconds, publish [pause_at, stop_at or the end) to
    ``resume_url`` (default ``url``) on a new connection whose timestamps start at 0. Two stats
    (one if ``stop`` was set before the second). ``options`` as ``restream_segments``
    (``start_offset``, ``stop``, ``realtime``, ``loops``, ``video``)."""
    publishes = [Publish(url, until=pause_at), Publish(resume_url or url, until=stop_at, after=pause_for)]
    return restream_segments(source, publishes, **options)


def late_restream(
    source: str | Path,
    url: str,
    after: float,
    *,
    start_offset: float | None = None,
    stop_at: float | None = None,
    **options: Any,
) -> RestreamStats | None:
    """A publish that starts ``after`` seconds late (a late order's feature): on the live media of
    that moment, i.e. from ``start_offset`` (default ``after``: in step with a publish of the same
    source started when this call was made) to ``stop_at`` (default the end). None if ``stop``
    was set before it started."""
    offset = after if start_offset is None else start_offset
    parts = restream_segments(source, [Publish(url, until=stop_at, after=after)], start_offset=offset, **options)
    return parts[0] if parts else None


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
    parser.add_argument("--start-offset", type=float, default=0.0, help="source seconds to start from")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before the first publish")
    parser.add_argument("--pause-at", type=float, help="close the publish at this source second ...")
    parser.add_argument("--pause-for", type=float, default=0.0, help="... wait this long, publish the rest")
    parser.add_argument("--resume-url", help="the second publish's URL (default: url)")
    parser.add_argument("--stop-at", type=float, help="source second where the (last) publish ends")
    parser.add_argument("--json", action="store_true", help="one JSON line of stats per publish")
    args = parser.parse_args(argv)
    publishes = [Publish(args.url, until=args.stop_at, after=args.delay)]
    if args.pause_at is not None:
        publishes = [
            Publish(args.url, until=args.pause_at, after=args.delay),
            Publish(args.resume_url or args.url, until=args.stop_at, after=args.pause_for),
        ]
    parts = restream_segments(
        args.source,
        publishes,
        start_offset=args.start_offset,
        realtime=not args.fast,
        loops=args.loops,
        video=args.video,
    )
    for stats in parts:
        print(json.dumps(dataclasses.asdict(stats)) if args.json else stats, flush=True)
    return 1 if not parts or any(stats.error for stats in parts) else 0


if __name__ == "__main__":
    raise SystemExit(main())
