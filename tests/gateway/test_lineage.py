"""Resume per connection lineage (issue 19 item 4), with real clients on real gateways over the
test's Redis: every connection has its own proven cursor; a new one takes over the cursor of the
most recently closed connection of its token that nobody has resumed yet, else it starts at the
beginning of the retained captions. No connection skips a caption it was not proven to receive.

A reader that "falls behind" stops reading its socket (``pause_reading``): its client answers no
more pings, so nothing written after that is proven, exactly as for a stalled or cut-off reader."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis
from websockets.asyncio.client import ClientConnection, connect

from services.gateway.connection import Connection
from services.gateway.delivery import StreamId
from services.gateway.lineage import dead_records
from services.gateway.server import Gateway
from shared import keys
from shared.settings import GatewaySettings, load
from tests.gateway.conftest import ws_url
from tests.gateway.helpers import add_caption, make_task, sid_key, stream_ids_by_response
from tests.gateway.test_delivery import wait_for
from tests.support.outage import OutageRedis


def records(redis_client, event: str = "E1", task: str = "T1") -> dict[str, tuple[int, str, str, str]]:
    """The task's lineage records: connection id → (seq, "o" | "c", cursor, gateway instance)."""
    out = {}
    for field, value in redis_client.hgetall(keys.lineage(event, task)).items():
        if field.decode() != keys.LINEAGE_SEQ:
            seq, state, cursor, instance = value.decode().split(" ")
            out[field.decode()] = (int(seq), state, cursor, instance)
    return out


def ordered_ids(redis_client, event: str = "E1", task: str = "T1") -> list[str]:
    by_id = stream_ids_by_response(redis_client, event, task)
    return sorted(by_id, key=lambda rid: sid_key(by_id[rid]))


async def recv_ids(ws: ClientConnection, count: int, timeout: float = 10.0) -> list[str]:
    return [json.loads(await asyncio.wait_for(ws.recv(), timeout))["response"]["id"] for _ in range(count)]


async def nothing_more(ws: ClientConnection) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ws.recv(), 0.5)


async def new_connection(gw: Gateway, before: set[Connection]) -> Connection:
    """The server side of the connection just opened on ``gw`` (once it is delivering)."""
    found = await wait_for(lambda: [c for c in gw.connections - before if c.delivery is not None])
    assert len(found) == 1
    return found[0]


async def connect_to(gw: Gateway, token: str) -> tuple[ClientConnection, Connection]:
    before = set(gw.connections)
    ws = await connect(ws_url(gw, f"?token={token}"))
    return ws, await new_connection(gw, before)


def proven(conn: Connection) -> str:
    assert conn.delivery is not None
    return str(conn.delivery.proven)


def test_dead_records_are_ours_no_longer_served_and_every_one_of_a_dead_gateway():
    candidates = [("c1", "me"), ("c2", "me"), ("c3", "other"), ("c4", "gone"), ("c5", "gone")]
    assert dead_records(candidates, "me", live={"c1"}, dead_instances={"gone"}) == ["c2", "c4", "c5"]
    assert dead_records(candidates, "me", live={"c1", "c2"}, dead_instances=set()) == []


async def test_a_second_reader_gets_every_retained_caption_while_the_first_reads(start_gateway, redis_client):
    """A backup reader's first connection, while the primary reader is connected and has proven
    all ten captions: it gets all ten (today's single task cursor gave it none)."""
    token = make_task(redis_client)
    sids = [add_caption(redis_client, "E1", "T1", n) for n in range(10)]
    gw = await start_gateway()
    primary, on_server = await connect_to(gw, token)
    first = await recv_ids(primary, 10)
    await wait_for(lambda: proven(on_server) == sids[-1])
    async with connect(ws_url(gw, f"?token={token}")) as backup:
        second = await recv_ids(backup, 10, timeout=5)
        await nothing_more(backup)
    await primary.close()
    assert first == second == ordered_ids(redis_client)


async def test_concurrent_connections_each_get_everything_and_resume_from_their_own_point(start_gateway, redis_client):
    token = make_task(redis_client)
    gw = await start_gateway()
    sids = [add_caption(redis_client, "E1", "T1", n) for n in range(5)]
    a, server_a = await connect_to(gw, token)
    got_a = await recv_ids(a, 5)
    b, server_b = await connect_to(gw, token)
    got_b = await recv_ids(b, 5, timeout=5)
    sids += [add_caption(redis_client, "E1", "T1", n) for n in range(5, 10)]
    got_a += await recv_ids(a, 5)
    got_b += await recv_ids(b, 5)
    everything = ordered_ids(redis_client)
    assert got_a == got_b == everything  # each connection: every caption once, in order

    # A's reader stalls (nothing after this is proven on A); B reads on and proves more.
    await wait_for(lambda: proven(server_a) == sids[9])
    a.transport.pause_reading()
    sids += [add_caption(redis_client, "E1", "T1", n) for n in range(10, 15)]
    got_b += await recv_ids(b, 5)
    await wait_for(lambda: proven(server_b) == sids[14])
    assert proven(server_a) == sids[9]
    # A's connection is cut; its reader reconnects while B is still connected.
    a.transport.abort()
    await wait_for(lambda: server_a not in gw.connections)
    a2, _ = await connect_to(gw, token)
    resumed_a = await recv_ids(a2, 5, timeout=5)
    await nothing_more(a2)
    everything = ordered_ids(redis_client)
    assert resumed_a == everything[10:15]  # from A's own proof: nothing skipped, nothing repeated

    # B closes and reconnects (A's lineage, now on a2, is open): B resumes from its own proof.
    await b.close()
    await wait_for(lambda: server_b not in gw.connections)
    sids += [add_caption(redis_client, "E1", "T1", n) for n in range(15, 17)]
    resumed_a += await recv_ids(a2, 2)
    async with connect(ws_url(gw, f"?token={token}")) as b2:
        resumed_b = await recv_ids(b2, 2, timeout=5)
        await nothing_more(b2)
    await a2.close()
    everything = ordered_ids(redis_client)
    assert resumed_b == everything[15:17]
    assert got_a[:10] + resumed_a == everything  # A's reader: every caption once
    assert got_b + resumed_b == everything  # B's reader: every caption once


async def test_a_reconnect_while_the_old_socket_lingers_starts_over_and_the_old_cursor_is_taken_later(
    start_gateway, redis_client
):
    token = make_task(redis_client)
    gw = await start_gateway()
    sids = [add_caption(redis_client, "E1", "T1", n) for n in range(5)]
    old, server_old = await connect_to(gw, token)
    assert len(await recv_ids(old, 5)) == 5
    await wait_for(lambda: proven(server_old) == sids[4])
    old.transport.pause_reading()  # the reader gave up on this socket; the gateway still has it open

    # The reconnect cannot take over a connection that is still open: it starts at the beginning.
    new, _ = await connect_to(gw, token)
    assert await recv_ids(new, 5, timeout=5) == ordered_ids(redis_client)
    sids += [add_caption(redis_client, "E1", "T1", n) for n in range(5, 8)]
    assert len(await recv_ids(new, 3)) == 3

    # The old socket closes at last: its cursor is now the one a new connection takes over ...
    old.transport.abort()
    await wait_for(lambda: server_old not in gw.connections)
    async with connect(ws_url(gw, f"?token={token}")) as third:
        assert await recv_ids(third, 3, timeout=5) == ordered_ids(redis_client)[5:8]
        await nothing_more(third)
        # ... once: a connection opened after that (two open, none closed) starts over again.
        async with connect(ws_url(gw, f"?token={token}")) as fourth:
            assert await recv_ids(fourth, 8, timeout=5) == ordered_ids(redis_client)
    await new.close()


async def test_a_reconnect_to_another_gateway_takes_over_the_closed_connection(start_gateway, redis_client):
    token = make_task(redis_client)
    gw_a = await start_gateway()
    gw_b = await start_gateway()
    sids = [add_caption(redis_client, "E1", "T1", n) for n in range(5)]
    a, server_a = await connect_to(gw_a, token)
    got_a = await recv_ids(a, 5)
    await wait_for(lambda: proven(server_a) == sids[4])
    backup, server_backup = await connect_to(gw_b, token)  # another reader, on the other replica
    got_backup = await recv_ids(backup, 5, timeout=5)
    a.transport.pause_reading()
    sids += [add_caption(redis_client, "E1", "T1", n) for n in range(5, 10)]
    got_backup += await recv_ids(backup, 5)
    await wait_for(lambda: proven(server_backup) == sids[9])
    a.transport.abort()
    await wait_for(lambda: server_a not in gw_a.connections)

    async with connect(ws_url(gw_b, f"?token={token}")) as a2:  # A's reader, on the other replica
        resumed = await recv_ids(a2, 5, timeout=15)
        await nothing_more(a2)
    everything = ordered_ids(redis_client)
    assert got_a + resumed == everything and resumed == everything[5:]
    assert got_backup == everything
    await backup.close()


async def test_takeover_order_and_bounded_state(start_gateway, redis_client):
    """Straight against the store: the most recently closed record is taken over first, each
    once; cursors never move back and never reopen; the hash expires with the captions stream
    and keeps at most ``LINEAGE_MAX_RECORDS`` records."""
    make_task(redis_client)
    add_caption(redis_client, "E1", "T1", 0)
    redis_client.expire(keys.captions("E1", "T1"), 500)
    gw = await start_gateway()
    store = gw.hub.lineages
    opened = [await store.open("E1", "T1") for _ in range(3)]
    assert [cursor for _lineage, cursor in opened] == [None, None, None]
    (l1, _), (l2, _), (l3, _) = opened
    l1.save(StreamId(100, 0))
    l2.save(StreamId(200, 0))
    l3.save(StreamId(300, 0))
    await store.flush(5)
    l3.save(StreamId(250, 0))  # an older proof never moves a cursor back
    for lineage in (l2, l1, l3):  # closed in this order
        lineage.close(None)
        await store.flush(5)
    l1.save(StreamId(150, 0))  # a closed record keeps its state (only its cursor may grow)
    await store.flush(5)
    assert sorted((state, cursor) for _seq, state, cursor, _inst in records(redis_client).values()) == [
        ("c", "150-0"),
        ("c", "200-0"),
        ("c", "300-0"),
    ]
    # Most recently closed first, each taken over once; then the beginning.
    taken = [(await store.open("E1", "T1"))[1] for _ in range(4)]
    assert taken == [StreamId(300, 0), StreamId(150, 0), StreamId(200, 0), None]
    assert len(records(redis_client)) == 4 and all(r[1] == "o" for r in records(redis_client).values())

    ttl = redis_client.pttl(keys.lineage("E1", "T1"))
    assert 0 < ttl <= 500_000
    for _ in range(keys.LINEAGE_MAX_RECORDS + 5):
        await store.open("E1", "T1")
    assert len(records(redis_client)) == keys.LINEAGE_MAX_RECORDS


def expiry_commands(redis_client) -> int:
    """PTTL and PEXPIRE calls Redis has run so far, those inside scripts included."""
    stats = redis_client.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("pttl", "pexpire"))


async def test_a_save_of_a_synced_record_leaves_its_expiry_alone(start_gateway, redis_client):
    """Issue 22: a save that only moves the cursor of a record whose expiry is already the
    captions stream's runs no PTTL or PEXPIRE (they were two of the gateway's ~3.3 commands per
    connection per second); its cursor still moves."""
    make_task(redis_client)
    add_caption(redis_client, "E1", "T1", 0)
    redis_client.expire(keys.captions("E1", "T1"), 500)
    gw = await start_gateway()
    store = gw.hub.lineages
    lineage, _ = await store.open("E1", "T1")
    lineage.save(StreamId(100, 0))  # the first cursor off 0-0: synced
    await store.flush(5)
    before = expiry_commands(redis_client)
    for ms in (200, 300, 400):
        lineage.save(StreamId(ms, 0))
        await store.flush(5)
    assert expiry_commands(redis_client) == before
    assert [cursor for _seq, _state, cursor, _inst in records(redis_client).values()] == ["400-0"]
    assert 0 < redis_client.pttl(keys.lineage("E1", "T1")) <= 500_000


async def test_the_first_cursor_and_a_close_mark_sync_the_expiry_with_the_captions(start_gateway, redis_client):
    """A connection opened before any captions existed gets the fallback expiry; its first cursor
    off 0-0 copies the captions stream's, and so does its close mark (a later expiry of the
    stream reaches the lineage then)."""
    make_task(redis_client)
    gw = await start_gateway()
    store = gw.hub.lineages
    lineage_key = keys.lineage("E1", "T1")
    lineage, cursor = await store.open("E1", "T1")
    assert cursor is None
    assert redis_client.ttl(lineage_key) > 500  # the fallback: no captions stream yet
    sid = add_caption(redis_client, "E1", "T1", 0)
    redis_client.expire(keys.captions("E1", "T1"), 500)
    lineage.save(StreamId.parse(sid))
    await store.flush(5)
    assert 0 < redis_client.pttl(lineage_key) <= 500_000
    redis_client.expire(keys.captions("E1", "T1"), 900)  # e.g. the event's end moved later
    lineage.save(StreamId(StreamId.parse(sid).ms + 1, 0))
    await store.flush(5)
    assert redis_client.pttl(lineage_key) <= 500_000  # a plain save leaves it
    lineage.close(None)
    await store.flush(5)
    assert 500_000 < redis_client.pttl(lineage_key) <= 900_000
    assert [state for _seq, state, _cursor, _inst in records(redis_client).values()] == ["c"]


@pytest.mark.slow
async def test_a_close_during_a_redis_outage_is_marked_when_redis_is_back(tmp_path):
    """The reader closes while Redis is down: the close mark is retried until Redis is back, so
    a reconnect to another gateway then takes the connection over (instead of starting over)."""
    with OutageRedis(tmp_path) as server:
        client = redis.Redis.from_url(server.url)
        token = make_task(client)
        sids = [add_caption(client, "E1", "T1", n) for n in range(5)]
        settings = load(GatewaySettings, ping_interval_seconds=5.0, ack_interval_seconds=0.2, drain_seconds=2.0)
        gateways = [Gateway(server.url, settings, "transcript,captions") for _ in range(2)]
        for gw in gateways:
            await gw.start("127.0.0.1", 0)
        try:
            a, server_a = await connect_to(gateways[0], token)
            assert len(await recv_ids(a, 5)) == 5
            await wait_for(lambda: [r for r in records(client).values() if r[2] == sids[4]])
            server.stop()
            await wait_for(lambda: gateways[0].health.down, 15)
            await a.close()
            await wait_for(lambda: server_a not in gateways[0].connections)
            server.start()
            client = redis.Redis.from_url(server.url)
            await wait_for(lambda: [r for r in records(client).values() if r[1] == "c"], 20)
            sids += [add_caption(client, "E1", "T1", n) for n in range(5, 7)]
            await wait_for(lambda: gateways[1].accepting(), 20)
            async with connect(ws_url(gateways[1], f"?token={token}")) as a2:
                assert await recv_ids(a2, 2, timeout=15) == ordered_ids(client)[5:]
                await nothing_more(a2)
        finally:
            for gw in gateways:
                await gw.drain()
            client.close()
