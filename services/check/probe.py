"""What a KWIKmotion server did during ``reachlive check kwikmotion``, sans-I/O (docs/design.md section 8).

:class:`Probe` is told what the driver sent (chunks, with their place in the audio and the time)
and fed every server message raw, as text: unlike :class:`~shared.kwikmotion.KwikSession`, which
keeps only what the seed's one reading allows, it keeps everything, so the readings the seed
leaves open (issue 17) can be observed. :meth:`Probe.observations` sums it up;
:func:`verdict` (pure) says whether the relay handles all of it; :func:`report` renders the lines
the command prints.

Readings the relay handles (issue 17): times from the session or from the chunk, results in any
order, no AddTranslation for an empty transcript, missing ``word_count``/``language``, a
transcript claiming up to 1 s of audio before its chunk (word-boundary buffering), unlisted
message types. Anything else the server does is "not handled".
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from shared.kwikmotion.errors import AUTHENTICATION_ERROR, INVALID_MODEL

KNOWN = ("RecognitionStarted", "AudioAdded", "AddTranscript", "AddTranslation", "EndOfTranscript", "Error")
OPTIONAL_FIELDS = ("word_count", "language")
BUFFER_SECONDS = 1.0  # seed FAQ: "1-second audio buffering"
TOLERANCE = 0.25  # seconds of slack when placing a result's times


def _num(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class _Chunk:
    offset: float  # seconds of audio before it in the session
    duration: float
    silent: bool
    sent_at: float


@dataclass
class _Transcript:
    index: int
    text: str
    start: float
    end: float
    at: float
    owed: set[str]  # targets whose AddTranslation has not come
    translated: set[str] = field(default_factory=set)


@dataclass
class Observations:
    """Everything the check saw, in plain values (what :func:`verdict` and :func:`report` read)."""

    language: str
    targets: list[str]
    auth: str = "unknown"  # accepted | refused | unreachable | unknown
    auth_detail: str = ""
    languages: str = "unknown"  # accepted | refused | unknown
    languages_detail: str = ""
    session_id: str | None = None
    chunks_sent: int = 0
    silent_chunks: int = 0
    chunk_seconds: float = 0.0
    transcript: str = ""
    time_base: str = "unknown"  # session | chunk | mixed | unknown
    lead_seconds: float = 0.0  # the most a transcript started before its chunk
    empty_translations: str = "not observed"  # sent | omitted | sometimes | not observed | no targets
    order: str = "in order"  # in order | reordered
    missing_optional: dict[str, int] = field(default_factory=dict)  # field → AddTranscripts without it
    transcripts: int = 0
    unknown_types: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    ended: bool = False
    end_detail: str = ""
    complete: bool = False  # the session ran to its end: the result rows mean something
    problems: list[str] = field(default_factory=list)  # outside the seed's readings: not handled


@dataclass(frozen=True)
class Verdict:
    handled: bool
    reasons: list[str]  # why not (empty when handled)


class Probe:
    """One check session: call :meth:`sent` for each chunk, :meth:`received` for each message,
    :meth:`closed` / :meth:`refused_at_handshake` / :meth:`unreachable` for the connection."""

    def __init__(self, language: str, targets: list[str], chunk_seconds: float) -> None:
        self.language = language
        self.targets = list(dict.fromkeys(targets))
        self.chunk_seconds = chunk_seconds
        self.chunks: list[_Chunk] = []
        self.acked = 0
        self.started = False
        self.ended = False
        self.failed = False  # the session cannot go on (refusal, Error, close)
        self.session_id: str | None = None
        self._auth, self._auth_detail = "unknown", ""
        self._languages, self._languages_detail = "unknown", ""
        self._end_detail = ""
        self._transcripts: dict[int, _Transcript] = {}
        self._arrival: list[int] = []
        self._missing: Counter[str] = Counter()
        self._unknown: Counter[str] = Counter()
        self._problems: list[str] = []
        self._noted: set[str] = set()

    # -- what the driver did ----------------------------------------------------------------

    def sent(self, offset: float, duration: float, silent: bool, now: float) -> None:
        self.chunks.append(_Chunk(offset, duration, silent, now))

    def unreachable(self, reason: str) -> None:
        self._auth, self._auth_detail = "unreachable", reason
        self.failed = True

    def refused_at_handshake(self, status: int, body: str = "") -> None:
        """The HTTP upgrade was answered with a status (a server that refuses before the WebSocket)."""
        detail = f"HTTP {status} at the WebSocket handshake"
        try:
            doc = json.loads(body) if body else None
        except ValueError:
            doc = None
        if isinstance(doc, dict) and doc.get("message") == "Error":
            detail += f": {_describe_error(doc)}"
        self._auth = "refused" if status in (401, 403) else "unreachable"
        self._auth_detail = detail
        self.failed = True

    def closed(self, code: int, reason: str) -> None:
        if self.ended or (self.failed and self._auth in ("refused", "unreachable")):
            return
        if not self.failed:
            if not self.started and self._auth == "unknown" and code in (1008, 4001, 4401, 4403):
                self._auth, self._auth_detail = "refused", f"closed {code} {reason!r} before RecognitionStarted"
            self._problem(f"connection closed ({code} {reason!r}) before EndOfTranscript")
        self.failed = True

    # -- what the server sent -----------------------------------------------------------------

    def received(self, text: str | bytes, now: float) -> None:
        try:
            msg = json.loads(text)
        except (ValueError, UnicodeDecodeError):
            self._problem("a message that is not JSON")
            return
        if not isinstance(msg, dict) or not isinstance(msg.get("message"), str):
            self._problem("a message without a 'message' name")
            return
        name = msg["message"]
        if name not in KNOWN:
            self._unknown[name[:40]] += 1
            return
        if self._auth == "unknown" and name != "Error":
            self._auth = "accepted"  # the server talks to us: the handshake's token passed
        getattr(self, f"_on_{name}")(msg, now)

    def _on_Error(self, msg: dict[str, Any], now: float) -> None:
        detail = _describe_error(msg)
        self.failed = True
        if msg.get("type") == AUTHENTICATION_ERROR or msg.get("code") in (401, 403):
            self._auth, self._auth_detail = "refused", detail
        elif msg.get("code") == INVALID_MODEL or msg.get("type") == "invalid_model":
            self._auth = "accepted"
            self._languages, self._languages_detail = "refused", detail
        else:
            self._problem(f"Error during the session: {detail}")

    def _on_RecognitionStarted(self, msg: dict[str, Any], now: float) -> None:
        self.started = True
        self._languages = "accepted"
        self.session_id = msg.get("session_id") if isinstance(msg.get("session_id"), str) else None
        if self.session_id is None:
            self._problem("RecognitionStarted without a session_id")

    def _on_AudioAdded(self, msg: dict[str, Any], now: float) -> None:
        seq = msg.get("seq_no")
        if seq != self.acked:
            self._problem(f"AudioAdded seq_no {seq!r} where {self.acked} was expected")
        self.acked += 1

    def _on_AddTranscript(self, msg: dict[str, Any], now: float) -> None:
        meta = msg.get("metadata")
        if not isinstance(meta, dict):
            self._problem("AddTranscript without metadata")
            return
        index, text, start, end = (meta.get(k) for k in ("chunk_index", "transcript", "start_time", "end_time"))
        missing = [k for k, ok in (("transcript", isinstance(text, str)), ("chunk_index", _int(index)),
                                   ("start_time", _num(start)), ("end_time", _num(end))) if not ok]  # fmt: skip
        if missing:
            self._problem(f"AddTranscript without a valid {', '.join(missing)}")
            return
        if not 0 <= index < len(self.chunks):
            self._problem(f"AddTranscript for chunk {index}, which was not sent")
            return
        if index in self._transcripts:
            self._problem(f"a second AddTranscript for chunk {index}")
            return
        for name in OPTIONAL_FIELDS:
            if name not in meta:
                self._missing[name] += 1
        self._transcripts[index] = _Transcript(index, text, float(start), float(end), now, set(self.targets))
        self._arrival.append(index)

    def _on_AddTranslation(self, msg: dict[str, Any], now: float) -> None:
        meta = msg.get("metadata")
        ok = isinstance(meta, dict) and isinstance(meta.get("translation"), str)
        ok = ok and isinstance(meta.get("target_language"), str) and _num(meta.get("start_time"))
        if not ok or not _num(meta.get("end_time")):
            self._problem("AddTranslation without a valid translation, target_language, start_time or end_time")
            return
        target = meta["target_language"]
        if target not in self.targets:
            self._problem(f"AddTranslation for {target[:16]!r}, which was not requested")
            return
        # Paired by language and time range (the seed gives a translation no chunk index), an
        # empty translation with an empty transcript; the earliest transcript still owed one.
        empty = not meta["translation"].strip()
        for t in self._transcripts.values():
            if (
                target in t.owed
                and abs(t.start - meta["start_time"]) <= 0.01
                and abs(t.end - meta["end_time"]) <= 0.01
                and (not t.text.strip()) == empty
            ):
                t.owed.discard(target)
                t.translated.add(target)
                return
        self._problem(
            f"AddTranslation ({target}, {meta['start_time']}-{meta['end_time']} s) that matches no transcript "
            "owed one by language and time range"
        )

    def _on_EndOfTranscript(self, msg: dict[str, Any], now: float) -> None:
        self.ended = True
        self._end_detail = str(msg.get("reason", ""))[:80]

    def _problem(self, text: str) -> None:
        if text not in self._noted:  # each kind once
            self._noted.add(text)
            self._problems.append(text)

    # -- the summary --------------------------------------------------------------------------

    def observations(self) -> Observations:
        obs = Observations(self.language, self.targets, self._auth, self._auth_detail)
        obs.languages, obs.languages_detail = self._languages, self._languages_detail
        obs.session_id, obs.chunk_seconds = self.session_id, self.chunk_seconds
        obs.chunks_sent, obs.silent_chunks = len(self.chunks), sum(c.silent for c in self.chunks)
        obs.ended, obs.end_detail = self.ended, self._end_detail
        obs.unknown_types = dict(self._unknown)
        obs.missing_optional = dict(self._missing)
        obs.transcripts = len(self._transcripts)
        problems = list(self._problems)
        if not self.started or (self.failed and not self.ended):
            obs.problems = problems
            return obs
        obs.complete = True
        results = [self._transcripts[i] for i in sorted(self._transcripts)]
        obs.transcript = " ".join(t.text.strip() for t in results if t.text.strip())
        obs.order = "in order" if self._arrival == sorted(self._arrival) else "reordered"
        obs.latencies = [t.at - self.chunks[t.index].sent_at for t in results]
        lost = [i for i in range(len(self.chunks)) if i not in self._transcripts]
        if lost:
            problems.append(f"no AddTranscript for chunk(s) {_ranges(lost)}")
        obs.time_base, obs.lead_seconds, misplaced = self._time_base(results)
        problems += misplaced
        obs.empty_translations, untranslated = self._empty_translations(results)
        problems += untranslated
        if not self.ended:
            problems.append("no EndOfTranscript after EndOfStream")
        obs.problems = problems
        return obs

    def _time_base(self, results: list[_Transcript]) -> tuple[str, float, list[str]]:
        """session or chunk, from where each result's times fall relative to its chunk (chunk 0
        fits both; later chunks start ≥ 2 s into the session, so they decide)."""
        votes: Counter[str] = Counter()
        problems = []
        for t in results:
            c = self.chunks[t.index]
            fits = [base for base, origin in (("session", 0.0), ("chunk", c.offset)) if _within(t, c, origin)]
            if not fits:
                problems.append(
                    f"chunk {t.index}'s times {t.start}-{t.end} s fit neither its session time "
                    f"{c.offset:.3f}-{c.offset + c.duration:.3f} s nor its chunk time 0-{c.duration:.3f} s"
                )
            elif len(fits) == 1:
                votes[fits[0]] += 1
        if len(votes) > 1:
            problems.append(f"times counted from the session in {votes['session']} results, from the chunk in "
                            f"{votes['chunk']}")  # fmt: skip
            base = "mixed"
        elif votes:
            base = next(iter(votes))
        else:
            base = "unknown"
            if len(results) > 1:
                problems.append("the time base could not be told (no result placed beyond doubt)")
        lead = 0.0
        if base in ("session", "chunk"):
            for t in results:
                origin = self.chunks[t.index].offset if base == "chunk" else 0.0
                lead = max(lead, round(self.chunks[t.index].offset - origin - t.start, 3))
        return base, lead, problems

    def _empty_translations(self, results: list[_Transcript]) -> tuple[str, list[str]]:
        if not self.targets:
            return "no targets", []
        problems = [
            f"no AddTranslation ({', '.join(sorted(t.owed))}) for chunk {t.index}'s transcript {t.text[:40]!r}"
            for t in results
            if t.text.strip() and t.owed
        ][:3]
        empty = [t for t in results if not t.text.strip()]
        if not empty:
            return "not observed", problems
        full = sum(1 for t in empty if not t.owed)
        none = sum(1 for t in empty if not t.translated)
        if full == len(empty):
            return "sent", problems
        if none == len(empty):
            return "omitted", problems
        return "sometimes", problems


def _within(t: _Transcript, c: _Chunk, origin: float) -> bool:
    lo = c.offset - origin - BUFFER_SECONDS - TOLERANCE
    hi = c.offset + c.duration - origin + TOLERANCE
    return lo <= t.start <= t.end <= hi


def _describe_error(msg: dict[str, Any]) -> str:
    """An Error payload in one line: code, type, reason, details.message (never a token: the
    server's payload does not echo it, and nothing here reads the request)."""
    parts = [str(msg.get("code", "?")), str(msg.get("type", "?"))]
    reason = str(msg.get("reason", ""))[:200]
    text = " ".join(parts) + (f": {reason}" if reason else "")
    details = msg.get("details")
    if isinstance(details, dict) and details.get("message") and details.get("message") != reason:
        text += f" ({str(details['message'])[:80]})"
    return text


def _ranges(values: list[int]) -> str:
    return ", ".join(str(v) for v in values[:10]) + (" ..." if len(values) > 10 else "")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (0 < q ≤ 100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def verdict(obs: Observations) -> Verdict:
    """Whether the relay handles everything the server did (issue 17's readings), and why not."""
    reasons: list[str] = []
    if obs.auth == "unreachable":
        reasons.append(f"server unreachable: {obs.auth_detail}")
    elif obs.auth == "refused":
        reasons.append(f"authentication refused: {obs.auth_detail}")
    elif obs.languages == "refused":
        reasons.append(f"language refused: {obs.languages_detail}")
    elif obs.auth != "accepted" or obs.languages != "accepted":
        reasons.append("the session never started (no RecognitionStarted)")
    reasons += obs.problems
    if obs.lead_seconds > BUFFER_SECONDS + TOLERANCE:
        reasons.append(f"a transcript starts {obs.lead_seconds} s before its chunk (more than the 1 s buffer)")
    return Verdict(not reasons, reasons)


def report(obs: Observations, url: str, fast: bool) -> list[str]:
    """The lines ``reachlive check kwikmotion`` prints (plain text, one finding per line)."""
    rows: list[tuple[str, str]] = []
    auth = {
        "accepted": "accepted (Authorization: Bearer <token>)",
        "unknown": "unknown (no answer)",
        "refused": f"refused: {obs.auth_detail} (check REACHLIVE_KWIKMOTION_TOKEN and the subscription)",
    }
    rows.append(("authentication", auth.get(obs.auth, f"{obs.auth}: {obs.auth_detail}")))
    if obs.auth != "accepted":
        return _lines(obs, url, rows)
    targets = ", ".join(obs.targets) or "none"
    if obs.languages == "refused":
        rows.append(("languages", f"refused: {obs.languages_detail} (asked {obs.language} → {targets})"))
    else:
        rows.append(("languages", f"{obs.languages}: {obs.language} → {targets}"))
    if obs.session_id:
        rows.append(("session", obs.session_id))
    if obs.chunks_sent:
        pace = "as fast as acknowledged" if fast else "in real time"
        speech = obs.chunks_sent - obs.silent_chunks
        rows.append(("audio sent", f"{obs.chunks_sent} chunks of {obs.chunk_seconds:g} s ({speech} speech, "
                                   f"{obs.silent_chunks} silence), {pace}"))  # fmt: skip
    if obs.chunks_sent and not obs.complete:
        rows.append(("results", f"{obs.transcripts} AddTranscript before the session ended"))
    if obs.complete:
        rows.append(("transcript", obs.transcript or "(empty)"))
        base = {
            "session": "session (start_time/end_time count from the session's start)",
            "chunk": "chunk (start_time/end_time count from each chunk's start)",
        }
        rows.append(("time base", base.get(obs.time_base, obs.time_base)))
        boundary = "transcripts stay within their chunk"
        if obs.lead_seconds > 0:
            boundary = f"transcripts start up to {obs.lead_seconds:g} s before their chunk (word-boundary buffering)"
        rows.append(("word boundaries", boundary))
        empty = {
            "sent": "translations come for empty transcripts",
            "omitted": "no translation for an empty transcript",
            "sometimes": "translations come for some empty transcripts, not others",
            "not observed": "no empty transcript seen (the silence was transcribed?)",
            "no targets": "no target language asked",
        }
        rows.append(("empty chunks", empty[obs.empty_translations]))
        rows.append(("result order", obs.order))
        missing = ", ".join(f"{k} missing in {n} of {obs.transcripts}" for k, n in sorted(obs.missing_optional.items()))
        rows.append(("optional fields", missing or "word_count and language always present"))
    unknown = ", ".join(f"{k} ×{n}" for k, n in sorted(obs.unknown_types.items()))
    rows.append(("unknown messages", f"{unknown} (ignored)" if unknown else "none"))
    if obs.latencies:
        p50, p95 = percentile(obs.latencies, 50), percentile(obs.latencies, 95)
        rows.append(("latency", f"p50 {p50:.3f} s, p95 {p95:.3f} s (chunk sent → its AddTranscript, "
                                f"{len(obs.latencies)} chunks)"))  # fmt: skip
    if obs.chunks_sent:
        rows.append(("end", f"EndOfTranscript ({obs.end_detail})" if obs.ended else "no EndOfTranscript"))
    return _lines(obs, url, rows)


def _lines(obs: Observations, url: str, rows: list[tuple[str, str]]) -> list[str]:
    result = verdict(obs)
    lines = [f"reachlive check kwikmotion: {url}"]
    lines += [f"  {name:<17} {value}" for name, value in rows]
    lines += [f"  not handled: {reason}" for reason in result.reasons]
    if result.handled:
        lines.append("verdict: HANDLED: the relay handles everything this server did")
    else:
        lines.append(f"verdict: NOT HANDLED: {result.reasons[0]}")
    return lines
