"""Cost of the emulator's audio alignment: ``python -m emulators.kwikmotion.bench [sessions] [seconds]``.

Feeds ``sessions`` aligners (each opened at a different point of the JFK sample, as relays
replaying after a drop would) ``seconds`` of the looped sample in 2 s chunks, the relay
benchmark's shape, and prints the CPU time per chunk: amortised, a tracked chunk, a full search.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from emulators.kwikmotion.align import AudioAligner, load_reference_samples, reference_audio
from emulators.media import JFK_FLAC, JFK_TEXT

RATE = 16000
CHUNK = 2 * RATE


def main(argv: list[str]) -> int:
    sessions = int(argv[0]) if argv else 200
    seconds = float(argv[1]) if len(argv) > 1 else 60.0
    ref = reference_audio(str(JFK_FLAC), RATE, tuple(JFK_TEXT.split()))
    audio = load_reference_samples(JFK_FLAC, RATE)
    looped = np.tile(audio, int(seconds * RATE // len(audio)) + 3)
    aligners = [AudioAligner(ref) for _ in range(sessions)]
    offsets = [(i * 8000) % len(audio) for i in range(sessions)]
    chunks = int(seconds * RATE // CHUNK)
    words = 0
    t0 = time.process_time()
    for k in range(chunks):
        for aligner, off in zip(aligners, offsets, strict=True):
            words += len(aligner.feed(looped[off + k * CHUNK : off + (k + 1) * CHUNK]))
    total = time.process_time() - t0
    searches = sum(a.searches for a in aligners)
    seg = audio[40000:48000]
    t1 = time.process_time()
    for _ in range(50):
        ref.search(seg)
    search_ms = (time.process_time() - t1) / 50 * 1000
    tracked = AudioAligner(ref)
    tracked.feed(audio[:CHUNK])
    t2 = time.process_time()
    for k in range(200):
        tracked.feed(looped[CHUNK + k * CHUNK : CHUNK + (k + 1) * CHUNK])
    tracked_ms = (time.process_time() - t2) / 200 * 1000
    print(f"sessions={sessions} chunks/session={chunks} chunk=2s words={words} full searches={searches}")
    print(f"amortised CPU per chunk: {total / (chunks * sessions) * 1000:.3f} ms")
    print(f"tracked chunk (4 windows verified): {tracked_ms:.3f} ms; full search (0.5 s window): {search_ms:.3f} ms")
    print(f"CPU for {sessions} real-time sessions: {total / seconds * 100:.1f}% of one core")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
