"""The chunks of one KWIKmotion connection, from built to transcribed (sans-I/O, docs/design.md section 4).

A chunk is *queued* when the chunker builds it, *sent* when it goes to KWIKmotion as chunk
``seq``, and *complete* when its transcript and every translation have arrived. The session
core (``KwikSession.completed``) says how long the prefix of complete chunks is; the ledger
turns that prefix into the persisted cursor (the last audio entry of the last complete chunk:
nothing at or before it is ever sent again, and the audio stream is trimmed behind it) and
forgets the chunks before it.

Priming (issue 17): a server that reports a chunk's last word with the next chunk ("1-second audio
buffering") has not finished with the last complete chunk until the next one is transcribed. A
session that ends abnormally is therefore replayed from ``prime``, the end of the chunk before
the last complete one: the new session hears the cut word whole again, and the replayed chunk's
own results are skipped by each task's ``done`` position.

Replay accounting: ``sent_high`` is the highest audio entry this replica ever sent for the
event (carried from one connection's ledger to the next); a chunk ending at or before it is a
replay (audio sent again after a reconnect).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from services.relay.audio import Chunk, id_le


class ChunkLedger:
    def __init__(self, cursor: str, sent_high: str = "0-0") -> None:
        self.cursor = cursor  # last audio entry whose chunk (and all before it) is complete
        self.prime = cursor  # last audio entry of the chunk before the cursor's (see module doc)
        self.sent_high = sent_high
        self.queue: deque[Chunk] = deque()  # built, not sent yet
        self.sent: dict[int, Chunk] = {}  # by KWIKmotion seq_no, until a later chunk completes
        self.kwik_time = 0.0  # audio sent on this connection so far: the next chunk's kwik_t0

    def add(self, chunks: Iterable[Chunk]) -> None:
        self.queue.extend(chunks)

    def held(self, outstanding: int) -> int:
        """Chunks held in memory: queued, plus ``outstanding`` sent and not complete."""
        return len(self.queue) + outstanding

    def send_next(self, seq: int, now: float) -> Chunk:
        """Take the next queued chunk as KWIKmotion chunk ``seq`` sent at ``now``: it starts
        where the audio sent before it ends, on the connection's clock."""
        chunk = self.queue.popleft()
        chunk.seq = seq
        chunk.kwik_t0 = self.kwik_time
        chunk.sent_at = now
        self.kwik_time += chunk.duration
        self.sent[seq] = chunk
        return chunk

    def delivered(self, chunk: Chunk) -> bool:
        """The chunk went out on the socket: True if it is a replay (audio this replica sent
        before). Called only after a successful send, so a send that failed is not counted."""
        if id_le(chunk.last_id, self.sent_high):
            return True
        self.sent_high = chunk.last_id
        return False

    def chunk(self, seq: int) -> Chunk | None:
        """A sent chunk still remembered (None: unknown, or before the complete prefix's last)."""
        return self.sent.get(seq)

    def complete(self, completed: int) -> Chunk | None:
        """Chunks ``[0, completed)`` have every result. If that moves the cursor, return the
        last complete chunk (the cursor is now its ``last_id``), set ``prime`` to the end of the
        chunk before it, and forget the chunks before that; else None."""
        last = self.sent.get(completed - 1)
        if last is None or last.last_id == self.cursor or not id_le(self.cursor, last.last_id):
            return None
        before = self.sent.get(completed - 2)
        self.prime = before.last_id if before is not None else self.cursor
        self.cursor = last.last_id
        for seq in [s for s in self.sent if s < completed - 2]:
            del self.sent[seq]
        return last
