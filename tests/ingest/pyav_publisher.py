"""PyAV's own RTMP client (libavformat) as a publisher: encode the sample to AAC in FLV and
write it straight to an ``rtmp://`` URL. Run as a child process: PyAV holds the GIL while
libavformat blocks on the socket, which would stall a server on the same event loop.

    python -m tests.ingest.pyav_publisher URL [START_S [STOP_S]]
"""

from __future__ import annotations

import sys

import av

from tests.ingest.conftest import SAMPLE


def publish(url: str, start: float = 0.0, stop_at: float | None = None) -> None:
    out = av.open(url, "w", format="flv")
    try:
        stream = out.add_stream("aac", rate=44100, layout="stereo")
        with av.open(str(SAMPLE)) as inp:
            for frame in inp.decode(audio=0):
                t = float(frame.pts * frame.time_base)
                if t < start or (stop_at is not None and t >= stop_at):
                    continue
                frame.pts = None
                for packet in stream.encode(frame):
                    out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    finally:
        out.close()


if __name__ == "__main__":
    args = sys.argv[1:]
    publish(args[0], float(args[1]) if len(args) > 1 else 0.0, float(args[2]) if len(args) > 2 else None)
