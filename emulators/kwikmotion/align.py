"""Where in the reference audio is this chunk? The emulator's stand-in for speech recognition.

A real KWIKmotion transcribes the audio it receives, so a session that starts mid-speech (our
relay replaying audio not yet transcribed after a drop or a takeover, docs/design.md section 4) gets the
words of *that* audio, not the start of the transcript. The emulator mimics that for its one
reference recording: it locates each received window of audio inside the (looped) reference by
normalised cross-correlation and answers with the reference words whose start lies in the matched
span. Word k of n starts at reference sample ``k * L // n`` (the words spread evenly over the
reference audio's L samples, as the time-based :class:`~emulators.kwikmotion.protocol.ReferenceScript`
spreads them over its seconds), so the reference audio sent from its start gives exactly what the
time-based mode gives.

Sans-I/O: :class:`AudioAligner` is fed sample arrays and returns words; only
:func:`load_reference_samples` touches a file (PyAV), once per sample rate.

Cost (the relay benchmark runs up to 200 sessions on 2 cores): a full search (decimated to ~4 kHz,
one FFT correlation against the whole reference) runs only for a session's first window or when
a prediction fails; a tracked window is verified where it is predicted with 2r+1 dot products.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

WINDOW_SECONDS = 0.5  # matching granularity: a window with no match gives no words
CONTEXT_SECONDS = 0.25  # a short tracked piece is verified together with the audio before it
MIN_SECONDS = 0.1  # shorter pieces are not searched, and wait for more audio before being verified
# Pearson correlation to accept a match: through AAC at 128 kb/s the JFK sample stays above 0.93
# even over 0.1 s windows; reversed speech, noise and silence stay below 0.65.
THRESHOLD = 0.8
SEARCH_RATE = 4000  # the full search runs on audio box-decimated to about this rate
CANDIDATES = 3  # decimated peaks refined at full rate
_EPS = 1e-12


def decode_pcm(chunk: bytes, encoding: str) -> np.ndarray:
    """One chunk of the seed's encodings (pcm_s16le, pcm_f32le, mulaw) as float32 in [-1, 1]."""
    if encoding == "pcm_s16le":
        return np.frombuffer(chunk, dtype="<i2").astype(np.float32) / 32768.0
    if encoding == "pcm_f32le":
        # Any float is valid on the wire: keep NaN/inf/huge values from poisoning the sums.
        return np.clip(np.nan_to_num(np.frombuffer(chunk, dtype="<f4"), posinf=0.0, neginf=0.0), -16.0, 16.0)
    if encoding == "mulaw":
        return _MULAW[np.frombuffer(chunk, dtype=np.uint8)]
    raise ValueError(f"unsupported encoding {encoding!r}")


def _mulaw_table() -> np.ndarray:
    # ITU-T G.711 mu-law expansion (bytes are sent inverted).
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    magnitude = (((u & 0x0F) << 3) + 0x84) << ((u >> 4) & 0x07)
    return (np.where(u & 0x80, 0x84 - magnitude, magnitude - 0x84) / 32768.0).astype(np.float32)


_MULAW = _mulaw_table()


def load_reference_samples(path: str | Path, rate: int) -> np.ndarray:
    """Decode ``path`` with PyAV, resampled to ``rate`` Hz mono s16 (as the ingest resamples), as float32."""
    import av  # imported here: the time-based mode does not need PyAV

    pieces: list[np.ndarray] = []
    resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                pieces.append(out.to_ndarray().reshape(-1)[: out.samples])
    for out in resampler.resample(None):
        pieces.append(out.to_ndarray().reshape(-1)[: out.samples])
    if not pieces:
        raise ValueError(f"no audio in {path}")
    return np.concatenate(pieces).astype(np.float32) / 32768.0


@functools.lru_cache(maxsize=16)
def reference_audio(path: str, rate: int, words: tuple[str, ...]) -> ReferenceAudio:
    """The prepared reference for one file, rate and transcript, shared by every session."""
    return ReferenceAudio(load_reference_samples(path, rate), rate, words)


class ReferenceAudio:
    """The reference samples at one rate, looped, with what matching needs precomputed (read-only)."""

    def __init__(self, samples: np.ndarray, rate: int, words: Sequence[str]) -> None:
        x = np.asarray(samples, dtype=np.float32)
        self.rate = rate
        self.window = max(1, round(rate * WINDOW_SECONDS))
        self.context = max(1, round(rate * CONTEXT_SECONDS))
        self.minimum = max(1, round(rate * MIN_SECONDS))
        self.radius = max(2, round(8 * rate / 16000))  # lag tolerance of a verification (0.5 ms)
        self.factor = max(1, rate // SEARCH_RATE)
        self.length = len(x)
        if self.length < 2 * self.window:
            raise ValueError("reference audio shorter than two windows")
        self.words = list(words)
        n, L = len(self.words), self.length
        self.starts = [k * L // n for k in range(n)]
        # ext: the reference with ``pad`` samples of the loop on either side, so a span around
        # position q is ext[pad + q ...] whatever q's place in the loop.
        self.pad = pad = self.window + self.context + 4 * self.radius + 4 * self.factor
        reps = -(-pad // L) + 1
        looped = np.tile(x, 2 * reps + 1)
        self.ext = np.ascontiguousarray(looped[reps * L - pad : (reps + 1) * L + pad])
        e64 = self.ext.astype(np.float64)
        self.c1 = np.concatenate([[0.0], np.cumsum(e64)])
        self.c2 = np.concatenate([[0.0], np.cumsum(e64 * e64)])
        # Decimated search base: offsets 0..L-1 with a window's worth of the loop after them.
        base = _decimate(np.tile(x, 2)[: L + self.window + self.factor], self.factor)
        self.dec_len = L // self.factor
        d64 = base.astype(np.float64)
        self.dc1 = np.concatenate([[0.0], np.cumsum(d64)])
        self.dc2 = np.concatenate([[0.0], np.cumsum(d64 * d64)])
        self.fft_size = 1 << int(len(base) + self.window // self.factor + 1).bit_length()
        self.dec_fft = np.fft.rfft(base, self.fft_size)

    def words_in(self, a: int, b: int) -> list[str]:
        """Words whose start sample lies in [a, b) of one pass (0 <= a, b <= length)."""
        n, L = len(self.words), self.length
        a, b = max(0, a), min(L, b)
        if not n or b <= a:
            return []
        return self.words[-(-a * n // L) : -(-b * n // L)]

    def correlate(self, seg: np.ndarray, first: int, count: int) -> np.ndarray:
        """Pearson correlation of ``seg`` with the looped reference at positions first..first+count-1."""
        v = len(seg)
        centred = seg - seg.mean()
        energy = float(centred @ centred)
        if energy <= _EPS * v:
            return np.zeros(count)
        j = self.pad + first
        dots = np.correlate(self.ext[j : j + count - 1 + v], centred, "valid").astype(np.float64)
        s1 = self.c1[j + v : j + v + count] - self.c1[j : j + count]
        s2 = self.c2[j + v : j + v + count] - self.c2[j : j + count]
        var = s2 - s1 * s1 / v
        ok = var > _EPS * v
        return np.where(ok, dots / np.sqrt(energy * np.where(ok, var, 1.0)), 0.0)

    def search(self, seg: np.ndarray) -> tuple[int, float] | None:
        """Where ``seg`` best matches in the loop: (position in [0, length), correlation) or None."""
        f, v = self.factor, len(seg)
        sd = _decimate(seg, f)
        nd = len(sd)
        if nd < 2 or v > self.window + f:
            return None
        sd = sd - sd.mean()
        energy = float(sd @ sd)
        if energy <= _EPS * nd:
            return None
        spectrum = np.fft.rfft(sd, self.fft_size)
        dots = np.fft.irfft(self.dec_fft * np.conj(spectrum), self.fft_size)[: self.dec_len]
        count = self.dec_len
        s1 = self.dc1[nd : nd + count] - self.dc1[:count]
        s2 = self.dc2[nd : nd + count] - self.dc2[:count]
        var = s2 - s1 * s1 / nd
        ncc = np.where(var > _EPS * nd, dots / np.sqrt(energy * np.maximum(var, _EPS)), -1.0)
        best: tuple[int, float] | None = None
        for _ in range(CANDIDATES):
            peak = int(np.argmax(ncc))
            if ncc[peak] <= 0:
                break
            ncc[max(0, peak - nd // 2) : peak + nd // 2 + 1] = -1.0  # next candidate elsewhere
            first = peak * f - 2 * f - self.radius
            fine = self.correlate(seg, first, 4 * f + 2 * self.radius + 1)
            lag = int(np.argmax(fine))
            if best is None or fine[lag] > best[1]:
                best = ((first + lag) % self.length, float(fine[lag]))
        if best is None or best[1] < THRESHOLD:
            return None
        return best


def _decimate(x: np.ndarray, factor: int) -> np.ndarray:
    """Box-filter and keep one sample in ``factor`` (enough for a coarse correlation peak)."""
    if factor == 1:
        return x.astype(np.float32, copy=False)
    n = len(x) - len(x) % factor
    return x[:n].reshape(-1, factor).mean(axis=1, dtype=np.float32)


class AudioAligner:
    """One session's recogniser: feed each chunk's samples, get the reference words heard in it.

    State: ``pos`` predicts the reference position of the next sample (None when lost);
    ``done`` is the position up to which this pass's words were given (never twice); ``tail``
    keeps the last window of samples, the last ``run`` of them contiguous with ``pos`` in this
    pass (verification context) and the last ``unmatched`` of them not credited with words.
    Windows never cross the loop's end: the audio after it must match the reference's start on
    its own, so encoder padding after the last word does not bring the first word back. When a
    search finds its place after unmatched audio (a window half silence, half speech), the audio
    before it is matched backwards in short steps, so the words of the speech half are not lost.
    """

    def __init__(self, ref: ReferenceAudio) -> None:
        self.ref = ref
        self.pos: int | None = None
        self.done = 0
        self.run = 0
        self.unmatched = 0
        self.tail = np.zeros(0, dtype=np.float32)
        self.searches = 0  # full searches run (the expensive step)
        self.verifications = 0
        self.misses = 0  # windows that matched nothing

    def feed(self, x: np.ndarray) -> list[str]:
        ref, L = self.ref, self.ref.length
        words: list[str] = []
        i, m = 0, len(x)
        while i < m:
            if self.pos is not None:
                n = min(ref.window, m - i, L - self.pos)
                piece = x[i : i + n]
                c = min(self.run, len(self.tail), max(0, ref.context - n), self.pos)
                seg = np.concatenate([self.tail[len(self.tail) - c :], piece]) if c else piece
                if len(seg) < ref.minimum:
                    # Too little to judge: predict on, give its words with the next verified piece.
                    self._advance(piece, self.pos + n)
                    self.unmatched += n
                    i += n
                    continue
                self.verifications += 1
                ncc = ref.correlate(seg, self.pos - c - ref.radius, 2 * ref.radius + 1)
                lag = int(np.argmax(ncc))
                if ncc[lag] >= THRESHOLD:
                    end = min(L, self.pos + n + lag - ref.radius)
                    words += ref.words_in(self.done, end)
                    self.done = max(self.done, end)
                    self._advance(piece, end)
                    self.unmatched = 0
                    i += n
                    continue
                self.pos = None  # lost: search this same audio
            n = min(ref.window, m - i)
            piece = x[i : i + n]
            found = ref.search(piece) if n >= ref.minimum else None
            if n >= ref.minimum:
                self.searches += 1
            if found is None:
                self.misses += 1
                self.pos, self.run = None, 0
                self._keep(piece)
                self.unmatched += n
                i += n
                continue
            o = found[0]
            part = min(n, L - o)
            if part < n:
                # The match runs past the loop's end: the part before it is this pass's only if
                # it matches on its own (encoder priming before the reference's start does not);
                # the rest must match the reference's start, as a new pass.
                head = piece[:part]
                if part >= ref.minimum and ref.correlate(head, o - ref.radius, 2 * ref.radius + 1).max() >= THRESHOLD:
                    words += ref.words_in(o, L)
                self._keep(head)
                self.pos, self.done, self.run, self.unmatched = 0, 0, 0, 0
                i += part
                continue
            words += ref.words_in(self._backfill(piece, o), o + n)
            self.pos, self.done, self.run, self.unmatched = o, o + n, 0, 0
            self._advance(piece, o + n)
            i += n
        return words

    def _backfill(self, piece: np.ndarray, o: int) -> int:
        """How far before ``o`` (not before this pass's start) the unmatched audio before
        ``piece`` still matches the reference, stepping back ``minimum`` samples at a time and
        halving the step at the edge."""
        ref = self.ref
        back = min(self.unmatched, len(self.tail), o)
        if back <= 0:
            return o
        audio = np.concatenate([self.tail[len(self.tail) - back :], piece])
        base = o - back  # reference position of audio[0]
        q, step = o, ref.minimum
        while q > base:
            lo = max(base, q - step)
            hi = min(o + len(piece), max(q, lo + ref.minimum))  # judge a full step: reach into matched audio
            seg = audio[lo - base : hi - base]
            if ref.correlate(seg, lo - ref.radius, 2 * ref.radius + 1).max() >= THRESHOLD:
                q = lo
            elif step > ref.minimum // 8:
                step //= 2  # the edge of the match is in there: find it to within ~12 ms
            else:
                break
        return q

    def _advance(self, piece: np.ndarray, end: int) -> None:
        """``piece`` heard, the next sample predicted at ``end`` (wrapping to a new pass at the loop's end)."""
        self._keep(piece)
        if end >= self.ref.length:
            self.pos, self.done, self.run = 0, 0, 0
        else:
            self.pos = end
            self.run += len(piece)

    def _keep(self, piece: np.ndarray) -> None:
        keep = self.ref.window
        if len(piece) >= keep:
            self.tail = piece[-keep:].copy()
        else:
            self.tail = np.concatenate([self.tail[len(self.tail) - (keep - len(piece)) :], piece])
