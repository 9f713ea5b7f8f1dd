"""The chunk ledger on its own (no I/O): seq and KWIKmotion-clock assignment, the complete prefix
moving the cursor and forgetting older chunks, replay accounting across connections."""

from __future__ import annotations

from services.relay.audio import Chunk
from services.relay.ledger import ChunkLedger


def _chunk(first: str, last: str, seconds: float = 2.0, media_t0: float = 0.0) -> Chunk:
    return Chunk(first, last, media_t0, 10.0 + media_t0, 1e9 + media_t0, b"\0\0" * int(16000 * seconds))


def test_send_assigns_seq_and_kwik_time() -> None:
    ledger = ChunkLedger("0-0")
    ledger.add([_chunk("1-0", "4-0", 2.0), _chunk("5-0", "8-0", 1.5, 2.0)])
    assert ledger.held(outstanding=0) == 2
    a = ledger.send_next(0, now=100.0)
    b = ledger.send_next(1, now=101.0)
    replay_a, replay_b = ledger.delivered(a), ledger.delivered(b)
    assert (a.seq, a.kwik_t0, a.sent_at) == (0, 0.0, 100.0)
    assert (b.seq, b.kwik_t0, b.sent_at) == (1, 2.0, 101.0)
    assert ledger.kwik_time == 3.5
    assert not replay_a and not replay_b
    assert ledger.sent_high == "8-0"
    assert ledger.chunk(1) is b and ledger.chunk(2) is None
    assert ledger.held(outstanding=2) == 2  # both sent, neither complete


def test_complete_prefix_moves_cursor_and_forgets() -> None:
    ledger = ChunkLedger("0-0")
    ledger.add([_chunk("1-0", "4-0"), _chunk("5-0", "8-0"), _chunk("9-0", "12-0")])
    for seq in range(3):
        ledger.send_next(seq, now=float(seq))
    assert ledger.complete(0) is None and ledger.cursor == "0-0"  # nothing complete yet
    last = ledger.complete(2)
    assert last is not None and last.seq == 1
    assert ledger.cursor == "8-0"
    # The chunk before the last complete one is kept too: its end is the prime (a replay after a
    # failure starts there when the server moves words across chunk boundaries).
    assert ledger.prime == "4-0" and ledger.chunk(0) is not None
    assert ledger.chunk(1) is last  # the last complete chunk is kept (the prefix may not grow)
    assert ledger.complete(2) is None  # same prefix: the cursor does not move again
    assert ledger.complete(3).last_id == "12-0"
    assert (ledger.cursor, ledger.prime) == ("12-0", "8-0")
    # Stream ids compare as pairs, not text: "12-0" is after "8-0".
    assert ledger.chunk(0) is None  # forgotten


def test_prime_of_a_connections_first_chunk_is_the_cursor_it_started_at() -> None:
    ledger = ChunkLedger("7-0")
    ledger.add([_chunk("8-0", "11-0")])
    ledger.send_next(0, now=0.0)
    assert ledger.complete(1).last_id == "11-0"
    assert (ledger.cursor, ledger.prime) == ("11-0", "7-0")


def test_cursor_never_moves_back() -> None:
    ledger = ChunkLedger("20-0")
    ledger.add([_chunk("3-0", "9-0")])
    ledger.send_next(0, now=0.0)
    assert ledger.complete(1) is None
    assert ledger.cursor == "20-0"


def test_replay_accounting_across_connections() -> None:
    first = ChunkLedger("0-0")
    first.add([_chunk("1-0", "4-0"), _chunk("5-0", "8-0")])
    first.delivered(first.send_next(0, now=0.0))
    first.delivered(first.send_next(1, now=0.0))
    first.complete(1)  # only the first chunk got its results before the drop
    # The next connection replays from the cursor, carrying the high mark.
    second = ChunkLedger(first.cursor, first.sent_high)
    second.add([_chunk("5-0", "8-0"), _chunk("9-0", "12-0")])
    replayed = second.send_next(0, now=1.0)
    fresh = second.send_next(1, now=1.0)
    was_replay, fresh_replay = second.delivered(replayed), second.delivered(fresh)
    assert replayed.kwik_t0 == 0.0 and was_replay
    assert fresh.kwik_t0 == 2.0 and not fresh_replay
    assert second.sent_high == "12-0"


def test_a_failed_send_is_not_a_replay_later() -> None:
    """A chunk taken for sending whose send failed (the socket closed) never reached the
    high mark: sent again on the next connection, it is not counted as replayed."""
    first = ChunkLedger("0-0")
    first.add([_chunk("1-0", "4-0")])
    first.send_next(0, now=0.0)  # ws.send raised: delivered() never called
    second = ChunkLedger(first.cursor, first.sent_high)
    second.add([_chunk("1-0", "4-0")])
    assert not second.delivered(second.send_next(0, now=1.0))
