"""Delivery with a real client: resume after a killed socket, time limit, end of stream, types,
keepalive, inbound limits, slow subscribers, the shared reader and the drain."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from services.gateway import metrics
from services.gateway.delivery import StreamId
from shared import keys
from shared.streams import CaptionEntry
from tests.gateway.conftest import serve_probes, ws_url
from tests.gateway.helpers import add_caption, make_task, response, sid_key, stream_ids_by_response
from tests.support.polling import eventually as wait_for


async def recv_json(ws, timeout: float = 5.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


def delivered(redis_client, event="E1", task="T1") -> str | None:
    """The furthest cursor proven on any of the task's connections (their lineage records)."""
    cursors = [
        StreamId.parse(value.split(b" ")[2])
        for field, value in redis_client.hgetall(keys.lineage(event, task)).items()
        if field.decode() != keys.LINEAGE_SEQ
    ]
    best = max(cursors, default=StreamId(0, 0))
    return str(best) if best > StreamId(0, 0) else None


async def closed_with(ws, timeout: float = 10.0) -> ConnectionClosed:
    with pytest.raises(ConnectionClosed) as info:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    return info.value


async def test_resume_after_killed_socket_loses_nothing_and_repeats_only_unproven(start_gateway, redis_client):
    token = make_task(redis_client)
    gw = await start_gateway(ack_interval_seconds=0.3)
    url = ws_url(gw, f"?token={token}")
    first: list[str] = []
    ws = await connect(url)
    sids = [add_caption(redis_client, "E1", "T1", n) for n in range(5)]
    for _ in range(5):
        first.append((await recv_json(ws))["response"]["id"])
    # The pong for the ping sent after these frames proves them: the cursor reaches the 5th.
    await wait_for(lambda: delivered(redis_client) == sids[-1])
    sids += [add_caption(redis_client, "E1", "T1", n) for n in range(5, 8)]
    for _ in range(3):
        first.append((await recv_json(ws))["response"]["id"])
    ws.transport.abort()  # a killed socket: no close frame, no more pongs
    await wait_for(lambda: not gw.connections)
    cursor = delivered(redis_client)
    sids += [add_caption(redis_client, "E1", "T1", n) for n in range(8, 10)]  # while disconnected

    before = metrics.RESUMES._value.get()
    async with connect(url) as ws2:
        second = [(await recv_json(ws2))["response"]["id"] for _ in range(10 - sids.index(cursor) - 1)]
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws2.recv(), 0.5)  # and nothing more
    assert metrics.RESUMES._value.get() == before + 1

    by_id = stream_ids_by_response(redis_client, "E1", "T1")
    everything = sorted(by_id, key=lambda rid: sid_key(by_id[rid]))
    assert set(first) | set(second) == set(everything), "a response was lost"
    # The resumed connection starts right after the proven cursor, in stream order.
    assert second == [rid for rid in everything if sid_key(by_id[rid]) > sid_key(cursor)]
    repeated = set(first) & set(second)
    assert all(sid_key(by_id[rid]) > sid_key(cursor) for rid in repeated)  # only frames after the last pong
    assert sid_key(cursor) >= sid_key(sids[4])


async def test_first_connection_starts_at_the_beginning_of_the_event(start_gateway, redis_client):
    token = make_task(redis_client)
    for n in range(450):  # more than one catch-up page
        add_caption(redis_client, "E1", "T1", n, kind="transcript" if n % 2 else "captions")
    gw = await start_gateway()
    async with connect(ws_url(gw, f"?token={token}")) as ws:
        starts = [(await recv_json(ws))["response"]["start"] for _ in range(450)]
        add_caption(redis_client, "E1", "T1", 450)
        starts.append((await recv_json(ws))["response"]["start"])
    assert starts == [float(n) for n in range(451)]


async def test_connection_time_limit_closes_1001_and_resumes(start_gateway, redis_client):
    token = make_task(redis_client)
    gw = await start_gateway(max_connection_seconds=0.6)
    url = ws_url(gw, f"?token={token}")
    add_caption(redis_client, "E1", "T1", 0)
    add_caption(redis_client, "E1", "T1", 1)
    async with connect(url) as ws:
        got = [(await recv_json(ws))["response"]["start"] for _ in range(2)]
        exc = await closed_with(ws)
    assert exc.rcvd.code == 1001 and "reconnect" in exc.rcvd.reason
    # The client answered the close frame, which proves both frames: nothing repeats.
    add_caption(redis_client, "E1", "T1", 2)
    async with connect(url) as ws:
        got.append((await recv_json(ws))["response"]["start"])
    assert got == [0.0, 1.0, 2.0]


async def test_end_of_stream_response_then_close_1000(start_gateway, redis_client):
    token = make_task(redis_client)
    gw = await start_gateway()
    async with connect(ws_url(gw, f"?token={token}")) as ws:
        add_caption(redis_client, "E1", "T1", 0)
        add_caption(redis_client, "E1", "T1", 1, eos=True)
        add_caption(redis_client, "E1", "T1", 2)  # nothing after the end of stream is sent
        frames = [await recv_json(ws) for _ in range(2)]
        exc = await closed_with(ws)
    assert [f["response"]["is_end_of_stream"] for f in frames] == [False, True]
    assert exc.rcvd.code == 1000


async def test_end_of_stream_of_a_filtered_type_waits_for_the_matching_one(start_gateway, redis_client):
    token = make_task(redis_client)
    gw = await start_gateway()
    async with connect(ws_url(gw, f"?token={token}&types=captions")) as ws:
        add_caption(redis_client, "E1", "T1", 0, kind="transcript")
        add_caption(redis_client, "E1", "T1", 0, kind="captions")
        add_caption(redis_client, "E1", "T1", 1, kind="transcript", eos=True)
        add_caption(redis_client, "E1", "T1", 1, kind="captions", eos=True)
        frames = [await recv_json(ws) for _ in range(2)]
        exc = await closed_with(ws)
    assert [(f["response"]["type"], f["response"]["is_end_of_stream"]) for f in frames] == [
        ("captions", False),
        ("captions", True),
    ]
    assert exc.rcvd.code == 1000


@pytest.mark.parametrize(
    ("deployment", "query", "expected"),
    [
        ("transcript,captions", "", ["transcript", "captions", "transcript", "captions"]),
        ("transcript,captions", "&types=transcript", ["transcript", "transcript"]),
        ("captions", "", ["captions", "captions"]),
        ("transcript,captions", "&types=captions,transcript", ["transcript", "captions", "transcript", "captions"]),
    ],
)
async def test_response_type_filtering(start_gateway, redis_client, deployment, query, expected):
    token = make_task(redis_client)
    for n in range(2):
        add_caption(redis_client, "E1", "T1", n, kind="transcript")
        add_caption(redis_client, "E1", "T1", n, kind="captions")
    gw = await start_gateway(caption_types=deployment)
    async with connect(ws_url(gw, f"?token={token}{query}")) as ws:
        kinds = [(await recv_json(ws))["response"]["type"] for _ in expected]
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.3)
    assert kinds == expected


async def test_text_ping_gets_pong_and_idle_connection_stays_open(start_gateway, redis_client):
    token = make_task(redis_client)
    gw = await start_gateway(ping_interval_seconds=0.2)
    async with connect(ws_url(gw, f"?token={token}")) as ws:
        await ws.send("ping")
        assert await asyncio.wait_for(ws.recv(), 5) == "pong"
        await asyncio.sleep(1.0)  # several of our keepalive pings, answered by the client
        pong = await ws.ping()
        await asyncio.wait_for(pong, 5)  # WebSocket pings are answered too
        add_caption(redis_client, "E1", "T1", 0)
        assert (await recv_json(ws))["response"]["start"] == 0.0


async def test_oversized_message_closes_1009(start_gateway, redis_client):
    token = make_task(redis_client)
    gw = await start_gateway(max_message_bytes=1024)
    before = metrics.INBOUND_REFUSED._value.get()
    async with connect(ws_url(gw, f"?token={token}")) as ws:
        await ws.send("x" * 5000)
        exc = await closed_with(ws)
    assert exc.rcvd.code == 1009
    await wait_for(lambda: metrics.INBOUND_REFUSED._value.get() == before + 1)


async def test_oversized_first_message_closes_1009_before_auth(start_gateway, redis_client):
    make_task(redis_client)
    gw = await start_gateway(max_message_bytes=1024)
    async with connect(ws_url(gw)) as ws:
        await ws.send(json.dumps({"token": "y" * 5000}))
        exc = await closed_with(ws)
    assert exc.rcvd.code == 1009


async def test_flooding_client_is_closed_1008(start_gateway, redis_client):
    token = make_task(redis_client)
    gw = await start_gateway(messages_per_second=5.0)
    async with connect(ws_url(gw, f"?token={token}")) as ws:
        for _ in range(50):
            await ws.send("hello")
        exc = await closed_with(ws)
    assert exc.rcvd.code == 1008 and "too many" in exc.rcvd.reason


async def test_slow_subscriber_is_closed_and_never_delays_the_others(start_gateway, redis_client):
    token = make_task(redis_client)
    gw = await start_gateway(send_buffer_frames=4)
    url = ws_url(gw, f"?token={token}")
    before = metrics.SLOW_CLOSES._value.get()
    big = "word " * 40_000  # ~200 KB per response: the slow client's socket buffers fill fast
    async with connect(url, max_size=None) as fast, connect(url, max_size=None, max_queue=1) as slow:
        await asyncio.sleep(0.2)  # both subscribed and live
        # Lockstep with the fast client: it is never behind, while the slow one (which reads
        # nothing) fills its socket buffers, then its queue of 4, and is closed.
        for n in range(100):
            add_caption(redis_client, "E1", "T1", n, text=big)
            assert (await recv_json(fast, 10))["response"]["start"] == float(n)
            if metrics.SLOW_CLOSES._value.get() == before + 1:
                break
        await wait_for(lambda: metrics.SLOW_CLOSES._value.get() == before + 1)
        exc = await closed_with(slow)  # reading now drains what was buffered, then the close
    assert exc.rcvd is not None and exc.rcvd.code == 1013


def xread_clients(redis_client) -> int:
    return sum(1 for c in redis_client.client_list() if c.get("cmd") == "xread")


async def test_subscribers_of_one_task_share_one_redis_reader(start_gateway, redis_client):
    tokens = {t: make_task(redis_client, "E1", t) for t in ("T1", "T2")}
    gw = await start_gateway()
    clients = []
    for t, n in (("T1", 5), ("T2", 3)):
        for _ in range(n):
            clients.append((t, await connect(ws_url(gw, f"?token={tokens[t]}"))))
    try:
        await wait_for(lambda: xread_clients(redis_client) == 2)
        assert len(gw.hub.feeds) == 2
        add_caption(redis_client, "E1", "T1", 7)
        add_caption(redis_client, "E1", "T2", 9)
        for t, ws in clients:
            assert (await recv_json(ws))["response"]["start"] == (7.0 if t == "T1" else 9.0)
        await asyncio.sleep(0.3)
        assert xread_clients(redis_client) == 2
    finally:
        for _t, ws in clients:
            await ws.close()
    await wait_for(lambda: not gw.hub.feeds)


async def test_drain_closes_1001_and_the_client_resumes_on_another_replica(start_gateway, redis_client):
    token = make_task(redis_client)
    a = await start_gateway()
    b = await start_gateway()
    for n in range(3):
        add_caption(redis_client, "E1", "T1", n)
    async with connect(ws_url(a, f"?token={token}")) as ws:
        got = [(await recv_json(ws))["response"]["start"] for _ in range(3)]
        drain = asyncio.create_task(a.drain())
        exc = await closed_with(ws)
        await drain
    assert exc.rcvd.code == 1001 and "shutting down" in exc.rcvd.reason
    add_caption(redis_client, "E1", "T1", 3)
    async with connect(ws_url(b, f"?token={token}")) as ws:
        got.append((await recv_json(ws))["response"]["start"])
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.3)
    assert got == [0.0, 1.0, 2.0, 3.0]


async def test_cursor_never_moves_backwards(start_gateway, redis_client):
    gw = await start_gateway()
    lineage, _cursor = await gw.hub.lineages.open("E1", "T1")
    lineage.save(StreamId(200, 1))
    await gw.hub.lineages.flush(5)
    lineage.save(StreamId(150, 7))
    await gw.hub.lineages.flush(5)
    assert delivered(redis_client) == "200-1"
    lineage.save(StreamId(200, 2))
    await gw.hub.lineages.flush(5)
    assert delivered(redis_client) == "200-2"
    assert 0 < redis_client.ttl(keys.lineage("E1", "T1")) <= keys.LINEAGE_TTL_SECONDS


async def http_get(port: int, path: str) -> tuple[int, dict[str, str], str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = raw.decode().partition("\r\n\r\n")
    status_line, *header_lines = head.split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), headers, body


async def test_readiness_and_metrics_on_the_metrics_port_only(start_gateway, redis_client):
    token = make_task(redis_client)
    gw = await start_gateway()
    probe_port = serve_probes(gw)
    add_caption(redis_client, "E1", "T1", 0)
    async with connect(ws_url(gw, f"?token={token}")) as ws:
        await recv_json(ws)
    assert (await http_get(gw.port, "/healthz"))[0] == 200  # constant, for a load balancer
    await wait_for(lambda: gw.probe.ready()[0], 10)
    assert (await http_get(probe_port, "/readyz"))[0] == 200
    status, headers, body = await http_get(probe_port, "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    for name in (
        "reachlive_gateway_connections",
        "reachlive_gateway_frames_sent_total",
        "reachlive_gateway_delivery_lag_seconds_bucket",
        "reachlive_gateway_auth_failures_total",
    ):
        assert name in body
    # The public port (anyone reaches it) serves none of them (issue 19).
    for path in ("/metrics", "/readyz", "/livez", "/metrics?token=x"):
        status, _, body = await http_get(gw.port, path)
        assert status != 200 and "reachlive_" not in body and "ready" not in body, path
    # Draining (SIGTERM): not ready, and new caption connections go to another replica.
    gw.draining = True
    assert (await http_get(probe_port, "/readyz"))[0] == 503
    assert (await http_get(gw.port, "/healthz"))[0] == 200
    with pytest.raises(InvalidStatus) as info:
        async with connect(ws_url(gw, f"?token={token}")):
            pass
    assert info.value.response.status_code == 503
    await gw.drain()


async def test_reconnect_after_the_end_of_stream_was_delivered_closes_1000_at_once(start_gateway, redis_client):
    token = make_task(redis_client)
    gw = await start_gateway()
    url = ws_url(gw, f"?token={token}")
    add_caption(redis_client, "E1", "T1", 0)
    add_caption(redis_client, "E1", "T1", 1, eos=True)
    async with connect(url) as ws:
        assert len([await recv_json(ws) for _ in range(2)]) == 2
        assert (await closed_with(ws)).rcvd.code == 1000
    await wait_for(lambda: delivered(redis_client) is not None)
    async with connect(url) as ws:
        exc = await closed_with(ws)  # nothing repeated, and no idling until the time limit
    assert exc.rcvd.code == 1000 and exc.rcvd.reason == "end of stream"


async def test_missed_revocation_message_is_caught_by_the_periodic_check(start_gateway, redis_client):
    token = make_task(redis_client)
    gw = await start_gateway(ping_interval_seconds=0.3)
    async with connect(ws_url(gw, f"?token={token}")) as ws:
        add_caption(redis_client, "E1", "T1", 0)
        await recv_json(ws)
        # Cancelled in the registry, but the pub/sub message never came (e.g. a reconnect).
        redis_client.hset(keys.task("E1", "T1"), "cancelled", "1")
        exc = await closed_with(ws, timeout=10)
    assert exc.rcvd.code == 4003


async def test_entry_breaking_the_payload_contract_is_skipped(start_gateway, redis_client):
    token = make_task(redis_client)
    gw = await start_gateway()
    add_caption(redis_client, "E1", "T1", 0)
    redis_client.xadd(keys.captions("E1", "T1"), {"v": "9", "json": "{}", "kind": "captions", "eos": "0"})
    redis_client.xadd(keys.captions("E1", "T1"), {"v": "1", "json": "{}"})  # fields missing
    add_caption(redis_client, "E1", "T1", 1)
    async with connect(ws_url(gw, f"?token={token}")) as ws:
        starts = [(await recv_json(ws))["response"]["start"] for _ in range(2)]
        redis_client.xadd(keys.captions("E1", "T1"), {"v": "9", "json": "{}", "kind": "captions", "eos": "0"})
        add_caption(redis_client, "E1", "T1", 2)
        starts.append((await recv_json(ws))["response"]["start"])
    assert starts == [0.0, 1.0, 2.0]


async def test_connection_states_are_counted(start_gateway, redis_client):
    token = make_task(redis_client)
    gw = await start_gateway()
    live = metrics.CONNECTIONS.labels("live")
    before = live._value.get()
    async with connect(ws_url(gw, f"?token={token}")) as ws:
        await wait_for(lambda: live._value.get() == before + 1)
        await ws.send("ping")
        assert await asyncio.wait_for(ws.recv(), 5) == "pong"
    await wait_for(lambda: live._value.get() == before)


async def test_live_burst_arrives_complete_and_in_order(start_gateway, redis_client):
    """A burst larger than the socket's write buffer: frames switch between the direct write
    path and the queued one without loss, duplication or reordering."""
    token = make_task(redis_client)
    gw = await start_gateway()
    words = "lorem ipsum " * 150  # ~2 KB responses: the burst overflows the 32 KiB direct limit
    async with connect(ws_url(gw, f"?token={token}"), max_size=None) as ws:
        await wait_for(lambda: any(c.live for c in gw.connections))
        pipe = redis_client.pipeline()
        for n in range(600):
            body = json.dumps(response("T1", n, text=f"{n} {words}"))
            pipe.xadd(keys.captions("E1", "T1"), CaptionEntry(body, "captions", False, time.time()).fields())
        pipe.execute()
        starts = [(await recv_json(ws))["response"]["start"] for _ in range(600)]
    assert starts == [float(n) for n in range(600)]


async def test_frames_committed_together_are_proven_by_one_pong(start_gateway, redis_client):
    """A relay commits a result's transcript and caption lines in one step; the shared reader
    gets them in one reply. The ping goes after all of them, so the first cursor saved is the
    last of them: a replica killed right after its pong repeats none of them on resume."""
    token = make_task(redis_client)
    gw = await start_gateway(ack_interval_seconds=2.0)
    async with connect(ws_url(gw, f"?token={token}")) as ws:
        await wait_for(lambda: any(c.live for c in gw.connections))
        await asyncio.sleep(2.1)  # past the ack interval since the connection's start: ping at once
        pipe = redis_client.pipeline(transaction=True)
        for n in range(3):
            body = json.dumps(response("T1", n))
            pipe.xadd(keys.captions("E1", "T1"), CaptionEntry(body, "captions", False, time.time()).fields())
        sids = [s.decode() for s in pipe.execute()]
        for _ in range(3):
            await recv_json(ws)
        # The first save (within the ack interval, so from the first ping) covers all three;
        # pinging after the first frame saved sids[0] first and the rest an ack interval later.
        first_saved = await wait_for(lambda: delivered(redis_client), timeout=1.9, interval=0.005)
    assert first_saved == sids[-1]
