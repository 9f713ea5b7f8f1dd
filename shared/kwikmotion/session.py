"""One KWIKmotion session as a sans-I/O state machine (docs/design.md sections 4 and 8).

Seed, "Connection Flow": connect with the Authorization header → StartRecognition → wait for
RecognitionStarted → binary audio chunks, each answered by AudioAdded → AddTranscript per chunk
and AddTranslation per target per transcript → EndOfStream ``last_seq_no`` → EndOfTranscript.

The session is fed the server's text messages and the current time, and returns events and the
messages to send. It owns no socket, task or clock: the driver passes ``now`` (any monotonic
clock), calls :meth:`poll` at :meth:`next_deadline`, and reports a closed connection with
:meth:`connection_closed`. Whatever the server sends becomes an event; only our own misuse of
the session raises (:class:`KwikProtocolError`).

States::

    connecting --start()--> starting --RecognitionStarted--> streaming --end_of_stream()--> ending
    ending --EndOfTranscript--> done
    any --Error / fatal violation / timeout / close--> failed
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from shared.kwikmotion import messages
from shared.kwikmotion.errors import classify_close, classify_error
from shared.kwikmotion.events import (
    AudioAdded,
    ConnectionClosed,
    EndOfTranscript,
    Event,
    KwikError,
    KwikProtocolError,
    ProtocolViolation,
    RecognitionStarted,
    Timeout,
)
from shared.kwikmotion.results import DEFAULT_WAIT, ChunkResults

State = Literal["connecting", "starting", "streaming", "ending", "done", "failed"]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_time(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class KwikSession:
    """Client side of one KWIKmotion WebSocket session.

    Counters: ``sent`` chunks sent (the next chunk's seq_no; EndOfStream's ``last_seq_no``),
    ``acked`` AudioAdded received (in order: the seed numbers chunks from 0), ``unacked`` their
    difference, ``completed`` the length of the prefix of chunks whose results are all released
    (what a reconnect need not replay).

    Results (AddTranscript, AddTranslation) go through ``results`` (:class:`ChunkResults`): placed
    by chunk index and time range, in any order, under either time base, and released per stream
    in chunk order; a result that never comes is given up after ``result_wait`` seconds (then
    :meth:`poll` returns the events it releases).
    """

    def __init__(
        self,
        language: str,
        targets: Sequence[str] = (),
        *,
        sample_rate: int = 16000,
        encoding: str = "pcm_s16le",
        start_timeout: float = 10.0,
        end_timeout: float = 30.0,
        ack_timeout: float | None = None,
        result_wait: float = DEFAULT_WAIT,
    ) -> None:
        if encoding not in messages.ENCODINGS:
            raise ValueError(f"unsupported encoding {encoding!r}; the seed allows {messages.ENCODINGS}")
        if not _is_int(sample_rate) or sample_rate <= 0:
            raise ValueError("sample_rate must be a positive integer")
        self.language = language
        # Keep the order given, drop duplicates: one AddTranslation per distinct target.
        self.targets: tuple[str, ...] = tuple(dict.fromkeys(targets))
        self.sample_rate = sample_rate
        self.encoding = encoding
        self.start_timeout = start_timeout
        self.end_timeout = end_timeout
        self.ack_timeout = ack_timeout

        self.state: State = "connecting"
        self.session_id: str | None = None
        self.end_reason: str | None = None
        self.sent = 0
        self.acked = 0
        self.bytes_sent = 0
        self.results = ChunkResults(language, self.targets, result_wait)
        self._started_at: float | None = None
        self._ended_at: float | None = None
        self._unacked_at: dict[int, float] = {}  # seq_no → send time, until its AudioAdded

    @property
    def completed(self) -> int:
        return self.results.completed

    # -- what we send ---------------------------------------------------------------------

    @property
    def unacked(self) -> int:
        return self.sent - self.acked

    def start(self, now: float) -> str:
        """The StartRecognition message; starts the RecognitionStarted timeout."""
        self._require("connecting", "start")
        self.state = "starting"
        self._started_at = now
        return messages.start_recognition(
            self.language, self.targets, sample_rate=self.sample_rate, encoding=self.encoding
        )

    def can_send(self, max_unacked: int) -> bool:
        """True if a chunk may go now: streaming, with fewer than ``max_unacked`` unacknowledged."""
        return self.state == "streaming" and self.unacked < max_unacked

    def send_audio(self, pcm: bytes, now: float) -> bytes:
        """Account for one audio chunk and return the binary frame to send (the raw audio: the
        seed sends "Raw PCM audio bytes"). Its seq_no is ``sent - 1`` afterwards."""
        self._require("streaming", "send audio")
        width = messages.BYTES_PER_SAMPLE[self.encoding]
        if not pcm:
            raise KwikProtocolError("empty audio chunk")
        if len(pcm) % width:
            raise KwikProtocolError(f"{self.encoding} chunk of {len(pcm)} bytes is not whole samples")
        self._unacked_at[self.sent] = now
        self.results.sent(self.seconds(len(pcm)), now)
        self.sent += 1
        self.bytes_sent += len(pcm)
        return bytes(pcm)

    def seconds(self, nbytes: int) -> float:
        """Duration of ``nbytes`` of audio in this session's format."""
        return nbytes / (messages.BYTES_PER_SAMPLE[self.encoding] * self.sample_rate)

    def end_of_stream(self, now: float) -> str:
        """EndOfStream with ``last_seq_no`` = chunks sent; starts the EndOfTranscript timeout."""
        self._require("streaming", "end the stream")
        self.state = "ending"
        self._ended_at = now
        return messages.end_of_stream(self.sent)

    def _require(self, state: State, what: str) -> None:
        if self.state != state:
            raise KwikProtocolError(f"cannot {what} in state {self.state!r}")

    # -- time -----------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When :meth:`poll` next has something to check (None: nothing pending)."""
        deadlines = []
        if self.state == "starting" and self._started_at is not None:
            deadlines.append(self._started_at + self.start_timeout)
        if self.state == "ending" and self._ended_at is not None:
            deadlines.append(self._ended_at + self.end_timeout)
        if self.ack_timeout is not None and self.state in ("streaming", "ending") and self.unacked:
            deadlines.append(self._unacked_at[self.acked] + self.ack_timeout)
        if self.state in ("streaming", "ending") and (due := self.results.next_deadline()) is not None:
            deadlines.append(due)
        return min(deadlines) if deadlines else None

    def poll(self, now: float) -> list[Event]:
        """Timeouts: RecognitionStarted, EndOfTranscript and (if ``ack_timeout``) AudioAdded, which
        end the session; results waited for too long, released without them (not an end)."""
        released = self.results.poll(now) if self.state in ("streaming", "ending") else []
        what = None
        if self.state == "starting" and self._started_at is not None and now - self._started_at >= self.start_timeout:
            what = "start"
        elif self.state == "ending" and self._ended_at is not None and now - self._ended_at >= self.end_timeout:
            what = "end"
        elif (
            self.ack_timeout is not None
            and self.state in ("streaming", "ending")
            and self.unacked
            and now - self._unacked_at[self.acked] >= self.ack_timeout
        ):
            what = "ack"
        if what is None:
            return released
        self.state = "failed"
        return [*released, Timeout(what)]

    def connection_closed(self, code: int, reason: str = "") -> list[Event]:
        """The driver saw the WebSocket close (1006 for a drop). Nothing after ``done``, or after
        ``failed`` (the cause was already reported)."""
        if self.state in ("done", "failed"):
            return []
        self.state = "failed"
        return [ConnectionClosed(code, reason, classify_close(code, reason))]

    # -- what the server sends ----------------------------------------------------------

    def receive(self, text: str | bytes, now: float) -> list[Event]:
        """Parse one server text message into events. Never raises for any input."""
        if isinstance(text, bytes | bytearray):
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError:
                return self._violation("message is not UTF-8", fatal=True)
        try:
            msg = json.loads(text)
        except (ValueError, RecursionError):
            return self._violation("message is not JSON", fatal=True)
        if not isinstance(msg, dict):
            return self._violation("message is not a JSON object", fatal=True)
        name = msg.get("message")
        if not isinstance(name, str):
            return self._violation("message has no 'message' name", fatal=True)
        if name == "Error":
            return self._error(msg)
        if self.state in ("done", "failed"):
            return []  # late messages of a finished session change nothing
        handler = _HANDLERS.get(name)
        if handler is None:
            # A newer server may add messages (an informational one, partial transcripts): count
            # and drop, do not break the session.
            return [ProtocolViolation(f"unknown message {name[:40]!r} ignored", False, label="unknown_message")]
        return handler(self, msg, now)

    def _violation(self, reason: str, *, fatal: bool) -> list[Event]:
        if fatal:
            if self.state in ("done", "failed"):
                return []
            self.state = "failed"
        return [ProtocolViolation(reason, fatal)]

    def _error(self, msg: dict[str, Any]) -> list[Event]:
        code = msg.get("code") if _is_int(msg.get("code")) else None
        type_ = msg.get("type") if isinstance(msg.get("type"), str) else ""
        reason = msg.get("reason") if isinstance(msg.get("reason"), str) else ""
        details = msg.get("details") if isinstance(msg.get("details"), dict) else None
        stamp = msg.get("timestamp") if _is_time(msg.get("timestamp")) else None
        self.state = "failed"
        return [KwikError(code, type_, reason, classify_error(code, type_, reason), details, stamp)]

    def _recognition_started(self, msg: dict[str, Any], now: float) -> list[Event]:
        if self.state != "starting":
            return self._violation(f"RecognitionStarted in state {self.state}", fatal=True)
        session_id = msg.get("session_id")
        if not isinstance(session_id, str):
            return self._violation("RecognitionStarted without a session_id", fatal=True)
        self.session_id = session_id
        self.state = "streaming"
        return [RecognitionStarted(session_id)]

    def _audio_added(self, msg: dict[str, Any], now: float) -> list[Event]:
        if self.state not in ("streaming", "ending"):
            return self._violation(f"AudioAdded in state {self.state}", fatal=True)
        seq = msg.get("seq_no")
        if not _is_int(seq):
            return self._violation("AudioAdded without an integer seq_no", fatal=True)
        if seq != self.acked or seq >= self.sent:
            # Chunks are acknowledged in order (TCP keeps it): any other number means our
            # accounting and the server's disagree, and replay positions would be wrong.
            return self._violation(f"AudioAdded seq_no {seq}, expected {self.acked} ({self.sent} sent)", fatal=True)
        self.acked += 1
        sent_at = self._unacked_at.pop(seq, None)
        return [AudioAdded(seq, None if sent_at is None else max(0.0, now - sent_at))]

    def _add_transcript(self, msg: dict[str, Any], now: float) -> list[Event]:
        if self.state not in ("streaming", "ending"):
            return self._violation(f"AddTranscript in state {self.state}", fatal=True)
        return self.results.transcript(msg, now)

    def _add_translation(self, msg: dict[str, Any], now: float) -> list[Event]:
        if self.state not in ("streaming", "ending"):
            return self._violation(f"AddTranslation in state {self.state}", fatal=True)
        return self.results.translation(msg, now)

    def _end_of_transcript(self, msg: dict[str, Any], now: float) -> list[Event]:
        if self.state != "ending":
            return self._violation(f"EndOfTranscript in state {self.state}", fatal=True)
        reason = msg.get("reason") if isinstance(msg.get("reason"), str) else ""
        self.state = "done"
        self.end_reason = reason
        # Nothing more comes: every chunk is released, with what it got.
        return [*self.results.finish(), EndOfTranscript(reason)]


_HANDLERS = {
    "RecognitionStarted": KwikSession._recognition_started,
    "AudioAdded": KwikSession._audio_added,
    "AddTranscript": KwikSession._add_transcript,
    "AddTranslation": KwikSession._add_translation,
    "EndOfTranscript": KwikSession._end_of_transcript,
}
