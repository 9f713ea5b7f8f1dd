"""The sans-I/O parts fed directly: delivery state (cursor, pings, end of stream, limits), token
parsing (fuzzed), the failed-attempt limiter and the inbound token bucket."""

from __future__ import annotations

import json

from hypothesis import example, given
from hypothesis import strategies as st

from services.gateway.auth import FailureLimiter, TokenBucket, client_address, token_from_message, token_from_request
from services.gateway.delivery import Close, Delivery, Item, StreamId, parse_types


def item(ms: int, kind: str = "captions", eos: bool = False) -> Item:
    return Item(id=StreamId(ms, 0), data=b"{}", kind=kind, eos=eos, created=0.0)


def delivery(cursor: StreamId | None = None, types=("transcript", "captions"), now: float = 0.0) -> Delivery:
    return Delivery(
        frozenset(types), cursor, now, max_seconds=100.0, ping_interval=20.0, ack_interval=1.0, pong_timeout=20.0
    )


def test_stream_ids_order_like_redis():
    assert StreamId.parse("10-2") < StreamId.parse("10-10") < StreamId.parse("11-0")
    assert StreamId.parse(b"5") == StreamId(5, 0)
    assert str(StreamId(7, 3)) == "7-3"


def test_offer_skips_what_is_at_or_before_the_position():
    d = delivery(cursor=StreamId(5, 0))
    assert d.offer(item(5), 0) is None
    assert d.offer(item(4), 0) is None
    assert d.offer(item(6), 0) is not None
    assert d.offer(item(6), 0) is None  # a duplicate from the live queue after catch-up
    assert d.position == StreamId(6, 0)


def test_pong_proves_the_position_at_ping_time_only():
    d = delivery()
    d.sent(d.offer(item(1), 0))
    assert not d.ping_due(0.5)
    assert d.ping_due(1.0)  # ack interval after frames
    ref = d.ping_sent(1.0)
    d.sent(d.offer(item(2), 1.1))  # written after the ping: not proven by its pong
    assert d.pong(ref) == StreamId(1, 0)
    assert d.proven == StreamId(1, 0)
    assert d.pong(ref) is None  # the same pong twice moves nothing
    ref2 = d.ping_sent(2.5)
    assert d.pong(ref2) == StreamId(2, 0)


def test_idle_connection_pings_at_the_keepalive_interval():
    d = delivery()
    assert not d.ping_due(19.9)
    assert d.ping_due(20.0)
    ref = d.ping_sent(20.0)
    assert d.pong(ref) is None  # nothing new proven
    assert d.next_wakeup(20.0) == 20.0


def test_missing_pong_closes_1011():
    d = delivery()
    d.ping_sent(20.0)
    assert not d.ping_due(30.0)  # one ping outstanding at a time
    assert d.poll(39.9) is None
    assert d.poll(40.0) == Close(1011, "keepalive ping timeout")


def test_connection_time_limit_closes_1001():
    d = delivery(now=10.0)
    assert d.poll(109.0) is None
    close = d.poll(110.0)
    assert isinstance(close, Close) and close.code == 1001


def test_end_of_stream_written_then_close_1000_and_nothing_after():
    d = delivery()
    frame = d.offer(item(1, eos=True), 0)
    assert frame is not None
    assert d.poll(0) is None  # not yet written
    d.sent(frame)
    assert d.poll(0).code == 1000
    assert d.offer(item(2), 0) is None
    assert not d.ping_due(100.0)


def test_end_of_stream_of_a_filtered_type_is_held_then_sent():
    d = delivery(types=("captions",))
    assert d.offer(item(1, kind="transcript", eos=True), 10.0) is None
    assert d.poll(11.0) is None
    held = d.poll(10.0 + Delivery.EOS_GRACE)
    assert isinstance(held, Item) and held.eos
    # ... unless the matching one follows
    d = delivery(types=("captions",))
    d.offer(item(1, kind="transcript", eos=True), 10.0)
    assert d.offer(item(2, kind="captions", eos=True), 10.5) is not None
    assert d.poll(20.0) is None


def test_close_acknowledged_proves_everything_written():
    d = delivery()
    d.sent(d.offer(item(3), 0))
    assert d.close_acknowledged() == StreamId(3, 0)
    assert d.close_acknowledged() is None


def test_parse_types():
    assert parse_types(None, "transcript,captions") == {"transcript", "captions"}
    assert parse_types("captions", "transcript,captions") == {"captions"}
    assert parse_types("transcript", "captions") is None
    assert parse_types("bogus", "transcript,captions") is None
    assert parse_types("", "transcript,captions") is None


def test_token_from_request():
    assert token_from_request("Bearer abc", "/v1/captions") == "abc"
    assert token_from_request("bearer  abc ", "/") == "abc"
    assert token_from_request("Basic abc", "/?token=q") == "q"
    assert token_from_request(None, "/v1/captions?types=captions&token=q%2Bx") == "q+x"
    assert token_from_request(None, "/v1/captions?token=") is None
    assert token_from_request("Bearer ", "/") is None


def test_token_from_message():
    assert token_from_message('{"token": "abc"}') == "abc"
    assert token_from_message(b'{"token": "abc"}') == "abc"
    for bad in ('{"token": 5}', '{"token": ""}', "[]", "null", "ping", b"\xff\xfe", '{"tok": "a"}'):
        assert token_from_message(bad) is None


@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_token_from_message_never_raises(message):
    result = token_from_message(message)
    assert result is None or isinstance(result, str)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
    )
)
def test_token_from_any_json_document(doc):
    result = token_from_message(json.dumps(doc))
    expected = doc.get("token") if isinstance(doc, dict) and isinstance(doc.get("token"), str) else None
    assert result == (expected or None)


@given(st.text(max_size=100), st.text(max_size=300))
@example("", "/[")  # "//[": urlsplit took it for an authority and raised "Invalid IPv6 URL" (found by hypothesis)
def test_token_from_request_never_raises(header, path):
    token_from_request(header, "/" + path)


def test_request_targets_split_at_the_query_whatever_their_path():
    from services.gateway.auth import query_params, split_target

    assert split_target("//[?token=a&types=x#frag") == ("//[", "token=a&types=x")
    assert split_target("/healthz") == ("/healthz", "")
    assert token_from_request(None, "//[?token=abc") == "abc"
    assert query_params("//evil.example:99/x?types=a&types=b") == {"types": ["a", "b"]}


def test_failure_limiter_blocks_after_limit_and_forgets_with_time():
    lim = FailureLimiter(limit=3, window=60.0)
    for t in (0.0, 1.0, 2.0):
        assert lim.blocked("1.2.3.4", t) == 0
        lim.failed("1.2.3.4", t)
    assert lim.blocked("1.2.3.4", 3.0) == 57.0
    assert lim.blocked("5.6.7.8", 3.0) == 0  # per address
    assert lim.blocked("1.2.3.4", 60.5) == 0  # the first failure left the window


def test_failure_limiter_memory_is_bounded():
    lim = FailureLimiter(limit=2, window=60.0, max_addresses=100)
    for i in range(1000):
        lim.failed(f"10.0.{i // 256}.{i % 256}", 0.0)
    assert len(lim._failures) == 100


def test_token_bucket():
    b = TokenBucket(rate=5.0, burst=10.0, now=0.0)
    assert all(b.take(0.0) for _ in range(10))
    assert not b.take(0.0)
    assert b.take(0.2)  # one more token after 1/5 s
    assert not b.take(0.2)


def test_client_address():
    assert client_address(("10.0.0.1", 5555), "1.1.1.1", 0) == "10.0.0.1"  # no proxy: the peer
    assert client_address(("10.0.0.1", 5555), "6.6.6.6, 1.1.1.1", 1) == "1.1.1.1"
    assert client_address(("10.0.0.1", 5555), "6.6.6.6,1.1.1.1, 2.2.2.2", 2) == "1.1.1.1"
    assert client_address(("10.0.0.1", 5555), "1.1.1.1", 2) == "1.1.1.1"  # fewer entries: the leftmost
    assert client_address(("10.0.0.1", 5555), None, 1) == "10.0.0.1"  # reached directly
    assert client_address(None, None, 0) == "unknown"
