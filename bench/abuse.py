"""Hostile and careless clients (issue 19) against a running stack with one real event live.

Starts every service as ``reachlive all`` does (embedded Redis, the Kaltura and KWIKmotion
emulators), orders three events in the Kaltura emulator — a live one (ffmpeg publishes the
speech sample in a loop in real time; Kaltura's caption client reads its whole transcript in a
process of its own), a "probe" one (the valid clients that check, all through every attack,
that good clients are still served) and a "hostile" one (the valid token and key an attacker
holds) — then runs each attack in turn. Per attack it prints the attacked service's RSS
(baseline, peak, after), its CPU, memory per hostile connection (peak growth / connections),
the words the live event lost (its received transcript against the reference, loop by loop of
the sample), the valid clients refused or dropped, and the time to recover (the service
answering a valid client again and its RSS back near the baseline).

    .venv/bin/python bench/abuse.py                        # every attack
    .venv/bin/python bench/abuse.py --quick                # shorter floods and holds
    .venv/bin/python bench/abuse.py --attack ping-flood --attack secrets
    .venv/bin/python bench/abuse.py --list                 # the attacks

Attackers connect from their own loopback addresses (127.0.0.10 and up, one per attack); valid
clients from 127.0.0.1. Settings are read from shared/settings.py at run time (a limit that
changes changes what is sent: e.g. the failed-auth limit, the gateway's trusted proxy hops).
The services run from the tree this script is in (PYTHONPATH), whatever is installed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis
from websockets.frames import Opcode

from bench import _hostile as h
from emulators.kaltura_admin import KalturaAdmin
from emulators.media import JFK_FLAC
from emulators.restreamer import encode_flv, publish_url
from services.demo import scenario
from shared import keys
from shared.settings import GatewaySettings, IngestSettings, load

TARGET_KIB = 64  # memory per hostile connection, both ports
RSS_CAP = 1 << 30  # an attack stops early once it has grown a service by this much (a shared machine)
GATEWAY, INGEST = "gateway", "ingest"


@dataclass(frozen=True)
class Durations:
    flood: float  # PING flood, seconds
    flood_connections: int
    publish: float  # the 30 publishers, seconds
    read: float  # the second reader: reading, lingering
    linger: float
    hold_extra: float  # holds last the service's own timeout plus this
    recover: float  # at most this long waiting for the service to recover
    many: int  # idle flood connections per port
    some: int  # slowloris / random-bytes connections per port
    tries: int  # bad credentials per transport


FULL = Durations(
    flood=10, flood_connections=8, publish=20, read=6, linger=8, hold_extra=10, recover=30, many=500, some=100, tries=10
)
QUICK = Durations(
    flood=5, flood_connections=4, publish=10, read=4, linger=6, hold_extra=5, recover=15, many=200, some=40, tries=5
)


@dataclass
class Outcome:
    connections: dict[str, int]  # attacked service → hostile connections made to it
    notes: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # valid clients the attack itself saw refused


@dataclass
class Ctx:
    stack: h.BenchStack
    d: Durations
    gw: GatewaySettings
    ingest: IngestSettings
    rss: h.RssSampler
    redis_url: str
    live: dict[str, str]  # event, task, token, key of each event
    probe: dict[str, str]
    hostile: dict[str, str]
    tags: list[tuple[int, bytes]]  # AAC audio of the sample (FLV tags), for the hostile publishers
    _address: int = 10

    def attacker(self) -> str:
        """A loopback address of its own for each attack: per-address limits (and their lockouts)
        never spill from one attack to the next, or onto the valid clients (127.0.0.1)."""
        self._address = self._address + 1 if self._address < 250 else 11
        return f"127.0.0.{self._address}"

    def over_cap(self, service: str, base: int) -> bool:
        return self.rss.now(service) - base > RSS_CAP


ATTACKS: dict[str, tuple[str, Callable[[Ctx], Outcome], bool]] = {}
# The order they run in: the RSS of a Python process does not always fall back after a big
# allocation, so the attacks that grow a service the most come last (on the code before issue
# 19 the 30 publishers left the ingest 35-45 MiB above its baseline, the pre-publish buffering
# once ~100 MiB: a later ingest row would reuse that memory and show less growth than it caused).
ORDER = (
    "secrets",
    "bad-credentials",
    "random-bytes",
    "slowloris",
    "idle-flood",
    "big-frames",
    "bad-token-lockout",
    "second-reader",
    "ping-flood",
    "ping-flood-token",
    "publish-flood",
    "ingest-prepublish",
)


def attack(name: str, what: str, per_connection: bool = True) -> Callable[[Callable[[Ctx], Outcome]], Any]:
    """Register an attack; ``per_connection`` False: a handful of requests, whose memory per
    connection would be noise (the table shows none)."""

    def register(fn: Callable[[Ctx], Outcome]) -> Callable[[Ctx], Outcome]:
        ATTACKS[name] = (what, fn, per_connection)
        return fn

    return register


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"p50 {statistics.median(values):.1f} s, max {max(values):.1f} s"


# --- (a) PING flood -------------------------------------------------------------------------------------
def _ping_flood(ctx: Ctx, token: str | None) -> Outcome:
    """Masked PING frames as fast as the gateway takes them, after an upgrade request, never
    reading anything (not even the 101): every PONG the gateway writes stays with it."""
    burst = h.ws_frame(Opcode.PING, b"p" * 125) * 2000  # whole frames, so a partial send stays aligned
    source, n = ctx.attacker(), ctx.d.flood_connections
    socks, notes = [], []
    for _ in range(n):
        client = h.WsClient(ctx.stack.gateway_url, token=token, source=source)
        try:
            sock = client.connect_tcp()
            sock.sendall(client.request_bytes())
            socks.append(sock)
        except OSError as exc:
            notes.append(f"connect refused: {type(exc).__name__}")
    sent = [0] * len(socks)
    ended: dict[int, float] = {}
    stop = threading.Event()
    t0 = time.monotonic()

    def flood(i: int) -> None:
        sock, view, off = socks[i], memoryview(burst), 0
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                k = sock.send(view[off:])
            except TimeoutError:
                continue
            except OSError:
                ended[i] = time.monotonic() - t0
                return
            off = (off + k) % len(burst)
            sent[i] += k

    base = ctx.rss.now(GATEWAY)
    threads = [threading.Thread(target=flood, args=(i,), daemon=True) for i in range(len(socks))]
    for t in threads:
        t.start()
    capped = False
    while time.monotonic() - t0 < ctx.d.flood and len(ended) < len(socks):
        if ctx.over_cap(GATEWAY, base):
            capped = True
            break
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(2)
    for sock in socks:
        h.abort(sock)
    notes.append(f"sent {sum(sent) / h.MIB:.0f} MiB of PINGs in {time.monotonic() - t0:.1f} s")
    notes.append(f"gateway ended {len(ended)}/{len(socks)} ({spread(list(ended.values()))})")
    if capped:
        notes.append(f"stopped at the bench's cap (+{RSS_CAP // h.MIB} MiB)")
    return Outcome({GATEWAY: len(socks)}, notes)


@attack("ping-flood", "(a) gateway: PING flood without a token, never reading")
def ping_flood(ctx: Ctx) -> Outcome:
    return _ping_flood(ctx, None)


@attack("ping-flood-token", "(a) gateway: PING flood with a valid token, never reading")
def ping_flood_token(ctx: Ctx) -> Outcome:
    return _ping_flood(ctx, ctx.hostile["token"])


# --- (b) failed-auth lockout ----------------------------------------------------------------------------
def _ws_try(ctx: Ctx, token: str | None, source: str, xff: str | None, transport: str = "header") -> str:
    """One caption connection: "served", or how it was refused (HTTP status, close code)."""
    client = h.WsClient(ctx.stack.gateway_url, token=token, transport=transport, source=source, xff=xff)
    try:
        if not client.open():
            return f"HTTP {client.status}" if client.status else (client.error or "no handshake")
        client.pump(0.5 if token else 0.1)
        if client.close_code is None and transport == "message":
            client.pump(ctx.gw.auth_timeout_seconds)
        return f"close {client.close_code}" if client.close_code is not None else "served"
    finally:
        client.abort()


@attack("bad-token-lockout", "(b) gateway: 20+ bad tokens a minute, then valid tokens from the same address")
def bad_token_lockout(ctx: Ctx) -> Outcome:
    hops = int(getattr(ctx.gw, "trusted_proxy_hops", 0))
    bad = max(25, ctx.gw.auth_failures_per_minute + 5)
    if hops:  # behind a trusted proxy (us, at 127.0.0.1): the client address is X-Forwarded-For's
        same, other = (h.GOOD, "198.51.100.7"), (h.GOOD, "198.51.100.8")
        how = f"through a proxy hop (X-Forwarded-For, trusted_proxy_hops={hops})"
    else:  # no proxy setting: the address is the TCP peer's, as for every client behind a proxy today
        address = ctx.attacker()
        same, other = (address, None), (ctx.attacker(), None)
        how = "direct (no trusted proxy setting)"
    results = Counter(_ws_try(ctx, f"bad-{i:04d}-{os.urandom(8).hex()}", *same) for i in range(bad))
    # Valid tokens in each transport (the first message's is judged after the upgrade).
    transports = ("header", "query", "message", "header", "query")
    valid_same = [_ws_try(ctx, ctx.probe["token"], *same, transport) for transport in transports]
    valid_other = [_ws_try(ctx, ctx.probe["token"], *other, transport) for transport in transports]
    refused = [f"same address, {t}: {r}" for t, r in zip(transports, valid_same, strict=True) if r != "served"]
    refused += [f"other address, {t}: {r}" for t, r in zip(transports, valid_other, strict=True) if r != "served"]
    notes = [
        how,
        f"{bad} bad tokens: " + ", ".join(f"{k} ×{v}" for k, v in results.most_common()),
        f"valid refused: same address {sum(r != 'served' for r in valid_same)}/5, "
        f"other address {sum(r != 'served' for r in valid_other)}/5",
    ]
    return Outcome({GATEWAY: bad + 10}, notes, refused)


# --- (c) ingest pre-publish buffering -------------------------------------------------------------------
def _chunk(fmt_csid: int, length: int, type_id: int, stream_id: int) -> bytes:
    """A type 0 chunk header (timestamp 0)."""
    return (
        bytes((fmt_csid,)) + b"\0\0\0" + length.to_bytes(3, "big") + bytes((type_id,)) + stream_id.to_bytes(4, "little")
    )


@attack("ingest-prepublish", "(c) ingest: 20 connections, no connect, Set Chunk Size 4 MiB + partial 8 MiB message")
def ingest_prepublish(ctx: Ctx) -> Outcome:
    n, size = 20, 4 << 20
    handshake = b"\x03" + bytes(1536) + bytes(1536)  # C0 C1, and C2 at once: nothing read back
    set_chunk = _chunk(0x02, 4, 1, 0) + size.to_bytes(4, "big")
    body = bytes(size)
    # An 8 MiB audio message (the reader's largest) on chunk stream 4, all but its last byte.
    message = [_chunk(0x04, 2 * size, 8, 1), body, b"\xc4", body[:-1]]
    source = ctx.attacker()
    socks, sent = [], []
    t0 = time.monotonic()
    ended: dict[int, float] = {}

    def send(i: int) -> None:
        try:
            socks[i].settimeout(30)
            for part in [handshake + set_chunk, *message]:
                view = memoryview(part)
                while view:
                    k = socks[i].send(view[: 1 << 18])
                    sent[i] += k
                    view = view[k:]
        except OSError:
            ended.setdefault(i, time.monotonic() - t0)

    for _ in range(n):
        with contextlib.suppress(OSError):
            socks.append(h.tcp(ctx.stack.ingest_port, source))
            sent.append(0)
    threads = [threading.Thread(target=send, args=(i,), daemon=True) for i in range(len(socks))]
    for t in threads:
        t.start()
    # Held, never read, until the ingest closes them (its handshake timeout) or long past it.
    hold = ctx.ingest.handshake_timeout_seconds + ctx.d.hold_extra + 10
    while time.monotonic() - t0 < hold and len(ended) < len(socks):
        for i in h.closed_by_peer(socks):
            ended.setdefault(i, time.monotonic() - t0)
        time.sleep(0.1)
    for sock in socks:
        h.abort(sock)
    full = sum(1 for s in sent if s >= len(handshake + set_chunk) + 2 * size)
    notes = [
        f"{full}/{len(socks)} sent the whole 8 MiB minus a byte (p50 {statistics.median(sent or [0]) / h.MIB:.1f} MiB)",
        f"ingest closed {len(ended)}/{len(socks)} ({spread(list(ended.values()))}; "
        f"handshake timeout {ctx.ingest.handshake_timeout_seconds:.0f} s)",
    ]
    return Outcome({INGEST: len(socks)}, notes)


# --- (d) a second reader of the same task ---------------------------------------------------------------
def _transcript_ids(ctx: Ctx) -> list[str]:
    """Response ids of the live task's transcript entries, in stream order."""
    with redis.Redis.from_url(ctx.redis_url) as r:
        entries = r.xrange(keys.captions(ctx.live["event"], ctx.live["task"]))
    out = []
    for _id, fields in entries:
        if fields.get(b"kind") == b"transcript" and b"json" in fields:
            out.append(json.loads(fields[b"json"])["response"]["id"])
    return out


def _ids(client: h.WsClient) -> list[str]:
    out = []
    for _at, text in client.texts:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            out.append(json.loads(text)["response"]["id"])
    return out


@attack("second-reader", "(d) gateway: a backup reader of the live task; it stalls and reconnects", False)
def second_reader(ctx: Ctx) -> Outcome:
    """Kaltura's reader is live (the caption client). A second connection with the same token (a
    backup reader) reads a while, stalls (reads nothing) while captions go on, and reconnects
    while its old socket lingers. Does each connection get every caption it did not prove?"""
    url = ctx.stack.gateway_url + "?types=transcript"
    history = _transcript_ids(ctx)
    first = h.WsClient(url, token=ctx.live["token"])
    refused: list[str] = []
    if not first.open():
        refused.append(f"backup reader: {first.status or first.error}")
    first.pump(ctx.d.read)
    got_first = _ids(first)
    time.sleep(ctx.d.linger)  # stalled: nothing read, nothing answered; captions go on
    second = h.WsClient(url, token=ctx.live["token"])
    if not second.open():
        refused.append(f"its reconnect: {second.status or second.error}")
    first.abort()  # the old socket goes only now
    second.pump(ctx.d.read)
    got_second = _ids(second)
    second.close()
    stream = _transcript_ids(ctx)
    got = set(got_first) | set(got_second)
    start = stream.index(got_first[0]) if got_first and got_first[0] in stream else len(history)
    end = stream.index(got_second[-1]) if got_second and got_second[-1] in stream else len(stream) - 1
    span = stream[start : end + 1]
    skipped = [i for i in span if i not in got]
    notes = [
        f"backup reader got {len(set(history) & set(got_first))} of the {len(history)} captions the task had",
        f"it and its reconnect skipped {len(skipped)} of {len(span)} captions written meanwhile (target 0)",
        f"the reconnect repeated {len(set(got_first) & set(got_second))}",
    ]
    return Outcome({GATEWAY: 2}, notes, refused)


# --- (e) many publishers with one key -------------------------------------------------------------------
@attack("publish-flood", "(e) ingest: 30 publishes with one valid key, each sending audio in real time")
def publish_flood(ctx: Ctx) -> Outcome:
    n, source = 30, ctx.attacker()
    statuses: list[str] = [""] * n
    dropped: list[int] = []
    stop = threading.Event()

    def publisher(i: int) -> None:
        try:
            client = h.RtmpClient(ctx.stack.ingest_port, source)
        except OSError as exc:
            statuses[i] = type(exc).__name__
            return
        try:
            statuses[i] = client.publish(ctx.hostile["key"])
            if statuses[i] != "NetStream.Publish.Start":
                return
            t0, checked = time.monotonic(), time.monotonic()
            for at, body in h.looped(ctx.tags, ctx.d.publish + 5):
                delay = t0 + at / 1000 - time.monotonic()
                if delay > 0.05 and stop.wait(delay):
                    break
                client.send_audio(body, at)
                if time.monotonic() - checked > 0.5:
                    checked = time.monotonic()
                    if not client.read_available():
                        raise ConnectionError("closed")
            client.unpublish()
        except (OSError, ConnectionError, TimeoutError):
            dropped.append(i)
        except Exception as exc:  # a garbled answer: count it as dropped, keep the bench going
            statuses[i] = statuses[i] or f"error: {exc}"
            dropped.append(i)
        finally:
            client.close()

    threads = [threading.Thread(target=publisher, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    stop.wait(ctx.d.publish)
    stop.set()
    for t in threads:
        t.join(5)
    kinds = Counter(s or "no answer" for s in statuses)
    accepted = kinds.get("NetStream.Publish.Start", 0)
    notes = [
        f"accepted {accepted}/{n} (limit setting: {getattr(ctx.ingest, 'max_publishers_per_task', 'none')})",
        "answers: " + ", ".join(f"{k} ×{v}" for k, v in kinds.most_common()),
        f"{len(dropped)} of the accepted dropped by the ingest before the end",
    ]
    return Outcome({INGEST: n}, notes)


# --- (f) secrets on the public port ---------------------------------------------------------------------
@attack("secrets", "(f) gateway: /metrics and /readyz on the public port (and on the metrics port)", False)
def secrets(ctx: Ctx) -> Outcome:
    public, private = ctx.stack.gateway_port, ctx.stack.gateway_metrics_port
    paths = ("/metrics", "/readyz", "/livez", "/healthz")
    on_public = {p: h.http_status(public, p) for p in paths}
    on_metrics = {p: h.http_status(private, p) for p in paths}
    exposed = [p for p in ("/metrics", "/readyz", "/livez") if on_public[p] == "200"]
    notes = [
        "public port: " + ", ".join(f"{p} {s}" for p, s in on_public.items()),
        "metrics port: " + ", ".join(f"{p} {s}" for p, s in on_metrics.items()),
        f"EXPOSED on the public port: {' '.join(exposed)}" if exposed else "nothing but /healthz on the public port",
    ]
    return Outcome({GATEWAY: len(paths)}, notes)


# --- the attacks that pass today --------------------------------------------------------------------
def _hold(socks: list[Any], seconds: float, t0: float, drip: Callable[[int], None] | None = None) -> dict[int, float]:
    """Wait up to ``seconds`` (from ``t0``) for the server to close the sockets; ``drip(i)`` is
    called once a second on each open one. Returns index → when (monotonic) the server closed it."""
    ended: dict[int, float] = {}
    next_drip = time.monotonic()
    while time.monotonic() - t0 < seconds and len(ended) < len(socks):
        for i in h.closed_by_peer(socks):
            ended.setdefault(i, time.monotonic())
        if drip is not None and time.monotonic() >= next_drip:
            next_drip += 1.0
            for i in range(len(socks)):
                if i not in ended:
                    try:
                        drip(i)
                    except OSError:
                        ended.setdefault(i, time.monotonic())
        time.sleep(0.05)
    return ended


def _open_many(port: int, n: int, source: str) -> tuple[list[tuple[Any, float]], int]:
    """``n`` connections from ``source``, each with when it was opened; and how many were refused."""
    socks, failed = [], 0
    for _ in range(n):
        try:
            socks.append((h.tcp(port, source, timeout=5), time.monotonic()))
        except OSError:
            failed += 1
    return socks, failed


def _both_ports(ctx: Ctx, n: int, first: Callable[[str], bytes], seconds: float, drip: bool) -> Outcome:
    """``n`` connections to each port, each from the attack's address; each sends
    ``first(service)`` at once (or, with ``drip``, one byte of it a second), then is held until
    the service closes it or ``seconds`` pass."""
    ports = {GATEWAY: ctx.stack.gateway_port, INGEST: ctx.stack.ingest_port}
    conns: list[tuple[str, Any, bytes, float]] = []  # (service, socket, what it sends, opened at)
    failed = Counter()
    source = ctx.attacker()
    t0 = time.monotonic()
    for service, port in ports.items():
        socks, failed[service] = _open_many(port, n, source)
        conns += [(service, s, first(service), at) for s, at in socks]
    for _service, sock, payload, _at in conns:
        sock.setblocking(False)
        if not drip and payload:
            with contextlib.suppress(OSError):
                sock.send(payload)
    position = [0] * len(conns)

    def one_byte(i: int) -> None:
        payload = conns[i][2]
        if position[i] < len(payload):
            conns[i][1].send(payload[position[i] : position[i] + 1])
            position[i] += 1

    ended = _hold([c[1] for c in conns], seconds, t0, one_byte if drip else None)
    notes, counts = [], Counter(c[0] for c in conns)
    for service in ports:
        mine = [ended[i] - c[3] for i, c in enumerate(conns) if c[0] == service and i in ended]
        refused = f", {failed[service]} refused at connect" if failed[service] else ""
        notes.append(f"{service} closed {len(mine)}/{counts[service]} ({spread(mine)}){refused}")
    for c in conns:
        h.abort(c[1])
    return Outcome({s: counts[s] for s in ports}, notes)


@attack("random-bytes", "both ports: 64 KiB of random bytes on each of many connections")
def random_bytes(ctx: Ctx) -> Outcome:
    junk = os.urandom(64 << 10)
    return _both_ports(ctx, ctx.d.some, lambda _s: b"\xff" + junk, 10, drip=False)


@attack("slowloris", "both ports: the opening handshake at a byte a second")
def slowloris(ctx: Ctx) -> Outcome:
    upgrade = h.WsClient(ctx.stack.gateway_url).request_bytes()
    c0c1 = b"\x03" + os.urandom(1536)
    limit = max(ctx.ingest.handshake_timeout_seconds, 10.0) + ctx.d.hold_extra
    return _both_ports(ctx, ctx.d.some, lambda s: upgrade if s == GATEWAY else c0c1, limit, drip=True)


@attack("idle-flood", "both ports: many TCP connections that send nothing")
def idle_flood(ctx: Ctx) -> Outcome:
    limit = max(ctx.ingest.handshake_timeout_seconds, 10.0) + ctx.d.hold_extra
    return _both_ports(ctx, ctx.d.many, lambda _s: b"", limit, drip=False)


@attack("big-frames", "gateway: 10 MB WebSocket frames, with and without a valid token")
def big_frames(ctx: Ctx) -> Outcome:
    """After the upgrade, a binary frame announcing 10 MB, its payload streamed after the header
    until the gateway closes (it should at the header: its message limit is a few KiB)."""
    size, n = 10_000_000, max(2, ctx.d.flood_connections // 2)
    chunk = os.urandom(64 << 10)
    closed_after, codes = [], Counter()
    source = ctx.attacker()
    for i in range(2 * n):
        client = h.WsClient(ctx.stack.gateway_url, token=ctx.hostile["token"] if i < n else None, source=source)
        if not client.open():
            codes[f"HTTP {client.status}" if client.status else client.error] += 1
            continue
        assert client.sock is not None
        t0, sent = time.monotonic(), 0
        try:
            client.sock.sendall(h.ws_frame_header(size))
            while sent < size and client.close_code is None and not client.closed and time.monotonic() - t0 < 10:
                client.sock.settimeout(0.1)
                with contextlib.suppress(TimeoutError):
                    sent += client.sock.send(chunk[: min(len(chunk), size - sent)])
                client.pump(0.001)
        except OSError:
            pass
        client.pump(2)
        if client.ended_at:
            closed_after.append(client.ended_at - t0)
        codes[f"close {client.close_code}" if client.close_code is not None else "no close"] += 1
        client.abort()
    notes = [
        f"{2 * n} frames of 10 MB ({n} with a valid token): " + ", ".join(f"{k} ×{v}" for k, v in codes.items()),
        f"closed after the header by {spread(closed_after)}",
    ]
    return Outcome({GATEWAY: 2 * n}, notes)


@attack("bad-credentials", "both ports: bad tokens in every WebSocket transport, bad keys and apps in RTMP")
def bad_credentials(ctx: Ctx) -> Outcome:
    # An address per transport: fewer failures from each than the failed-auth limit, so every
    # transport's own refusal is seen (and not the 429 that the limit answers with).
    ws = Counter()
    for transport in ("header", "query", "message"):
        source = ctx.attacker()
        for _ in range(ctx.d.tries):
            ws[f"{transport}: {_ws_try(ctx, os.urandom(16).hex(), source, None, transport)}"] += 1
    source = ctx.attacker()
    ws[f"no token: {_ws_try(ctx, None, source, None, 'message')}"] += 1
    ws[f"8 KiB token: {_ws_try(ctx, 'x' * 8192, source, None, 'message')}"] += 1
    rtmp = Counter()
    cases = [("live", os.urandom(16).hex())] * ctx.d.tries + [("live", ""), ("live", "k" * 8000)]
    cases += [("other-app", ctx.hostile["key"]), ("live", ctx.hostile["key"] + "x")]
    for app, key in cases:
        try:
            client = h.RtmpClient(ctx.stack.ingest_port, source)
        except OSError as exc:
            rtmp[type(exc).__name__] += 1
            continue
        rtmp[client.publish(key, app=app)] += 1
        client.close()
    served = sum(v for k, v in ws.items() if k.endswith("served")) + rtmp.get("NetStream.Publish.Start", 0)
    notes = [
        "gateway: " + ", ".join(f"{k} ×{v}" for k, v in ws.items()),
        "ingest: " + ", ".join(f"{k} ×{v}" for k, v in rtmp.items()),
        f"bad credentials served: {served} (target 0)",
    ]
    return Outcome({GATEWAY: sum(ws.values()), INGEST: len(cases)}, notes)


# --- valid clients all along ------------------------------------------------------------------------
class Probes:
    """Valid clients of both services all through the run: a caption connection with the probe
    task's token every 2 s, a publish with its key every 5 s. Failures are kept with their time."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.failures: list[tuple[float, str, str]] = []  # (wall clock, service, why)
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._loop, args=(GATEWAY, 2.0), daemon=True),
            threading.Thread(target=self._loop, args=(INGEST, 5.0), daemon=True),
        ]

    def check(self, service: str) -> str:
        try:
            if service == GATEWAY:
                return h.gateway_probe(self.ctx.stack.gateway_url, self.ctx.probe["token"])
            return h.ingest_probe(self.ctx.stack.ingest_port, self.ctx.probe["key"])
        except Exception as exc:  # a probe never stops the bench
            return f"probe error {exc!r}"

    def _loop(self, service: str, period: float) -> None:
        while not self.stop.wait(period):
            why = self.check(service)
            if why:
                self.failures.append((time.time(), service, why))

    def __enter__(self) -> Probes:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(15)

    def between(self, t0: float, t1: float) -> list[str]:
        return [f"{s} probe: {why}" for at, s, why in self.failures if t0 <= at <= t1]


# --- one attack, measured -----------------------------------------------------------------------------
@dataclass
class Row:
    name: str
    per_connection: bool  # memory per hostile connection is a figure of this attack
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    wall: tuple[float, float] = (0.0, 0.0)  # attack start → recovery end (wall clock)
    words_lost: int | None = None
    repeats: int = 0


def run_attack(ctx: Ctx, probes: Probes, name: str) -> Row:
    what, fn, per_connection = ATTACKS[name]
    print(f"\n== {name}: {what}", flush=True)
    time.sleep(2)  # a baseline of its own, after the previous attack's recovery
    now = time.monotonic()
    watched = (GATEWAY, INGEST)
    base = {s: ctx.rss.median(s, now - 2, now) for s in watched}
    pids = {s: ctx.stack.pid(s) for s in watched}
    cpu0 = {s: h.cpu_seconds(pids[s]) for s in watched}
    counters0 = {s: h.metrics_counters(ctx.stack.metrics_ports[s]) for s in watched}
    restarts0 = ctx.stack.restarts()
    t0, wall0 = time.monotonic(), time.time()
    try:
        outcome = fn(ctx)
    except Exception as exc:  # an attack that breaks is a finding, never the end of the run
        outcome = Outcome({}, [f"attack failed: {type(exc).__name__}: {exc}"])
    time.sleep(max(0.0, 2.0 - (time.monotonic() - t0)))  # CPU over at least 2 s: clock ticks are 10 ms
    t1 = time.monotonic()
    row = Row(name, per_connection, notes=list(outcome.notes), refused=list(outcome.refused))
    attacked = list(outcome.connections or {GATEWAY: 0})
    recovered = recover(ctx, probes, {s: base[s] for s in attacked})
    for service in attacked:
        cpu = (h.cpu_seconds(pids[service]) - cpu0[service]) / max(t1 - t0, 1e-3)
        if ctx.stack.pid(service) != pids[service]:  # restarted: its CPU time started again at 0
            cpu = float("nan")
        answered, back = recovered[service]
        peak = ctx.rss.peak(service, t0, time.monotonic())
        row.services[service] = {
            "connections": outcome.connections.get(service, 0),
            "base": base[service],
            "peak": peak,
            "after": ctx.rss.now(service),
            "cpu": 100 * cpu,
            "answered": answered,
            "back": back,
            "seconds": t1 - t0,
        }
        moved = counter_deltas(counters0[service], h.metrics_counters(ctx.stack.metrics_ports[service]))
        if moved:
            row.notes.append(f"{service} metrics: {moved}")
    row.wall = (wall0, time.time())
    row.refused += probes.between(*row.wall)
    restarted = {n: c - restarts0[n] for n, c in ctx.stack.restarts().items() if c != restarts0[n]}
    if restarted:
        row.notes.append(f"SERVICES RESTARTED: {restarted}")
    for service, f in row.services.items():
        print(
            f"   {service}: RSS {f['base'] / h.MIB:.0f} → peak {f['peak'] / h.MIB:.0f} → {f['after'] / h.MIB:.0f} MiB, "
            f"CPU {f['cpu']:.0f} % over {f['seconds']:.0f} s, answering after {fmt_s(f['answered'])}, "
            f"RSS back after {fmt_s(f['back'])}",
            flush=True,
        )
    refused = Counter(row.refused)
    for line in row.notes + [f"VALID REFUSED: {r}" + (f" ×{n}" if n > 1 else "") for r, n in refused.items()]:
        print(f"   {line}", flush=True)
    return row


def recover(ctx: Ctx, probes: Probes, bases: dict[str, int]) -> dict[str, tuple[float | None, float | None]]:
    """Per attacked service, seconds from the attack's end until a valid client is served again
    and until its RSS is back near its baseline (within max(4 MiB, 5 %)); None: not within the
    wait."""
    t0 = time.monotonic()
    answered: dict[str, float | None] = dict.fromkeys(bases)
    back: dict[str, float | None] = dict.fromkeys(bases)
    with ThreadPoolExecutor(len(bases)) as pool:  # the services probed at once, not one after the other
        while time.monotonic() - t0 < ctx.d.recover and None in [*answered.values(), *back.values()]:
            started = time.monotonic()
            checks = {s: pool.submit(probes.check, s) for s in bases if answered[s] is None}
            for service, base in bases.items():
                if back[service] is None and ctx.rss.now(service) <= base + max(4 * h.MIB, base // 20):
                    back[service] = time.monotonic() - t0
            for service, check in checks.items():
                if not check.result():
                    answered[service] = started - t0  # when the probe that was served began
            time.sleep(0.25)
    return {s: (answered[s], back[s]) for s in bases}


def counter_deltas(before: dict[str, float], after: dict[str, float]) -> str:
    """The refusal/close/limit counters an attack moved (what the service says it did)."""
    words = ("refus", "reject", "abort", "limit", "close", "protocol", "auth_fail", "inbound", "timeout")
    moved = []
    for name, value in sorted(after.items()):
        delta = value - before.get(name, 0.0)
        if delta and not name.startswith("reachlive_event_loop") and any(w in name for w in words):
            moved.append(f"{name.removeprefix('reachlive_')} +{delta:.0f}")
    return ", ".join(moved)


def fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


# --- the live event -----------------------------------------------------------------------------------
def order(admin: KalturaAdmin) -> dict[str, str]:
    run = scenario.order(admin, translations=(), duration=6 * 3600)  # outlasts any run of the bench
    scenario.wait_scheduled(admin, run, 120)
    feature = run.features[run.task_ids[0]]
    return {
        "event": run.event_id,
        "task": run.task_ids[0],
        "token": feature["captionToken"],
        "key": feature["mediaKey"],
        "publish": publish_url(feature["mediaUrl"], feature["mediaKey"]),
        "caption_url": feature["captionUrl"],
    }


def wait_captions(ctx: Ctx, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(_transcript_ids(ctx)) >= count:
            return
        time.sleep(0.5)
    raise RuntimeError(f"the live event had fewer than {count} transcript responses after {timeout:.0f} s")


def wait_loop_end(ctx: Ctx) -> None:
    """Publish on to the end of the loop of the sample in progress (and 2 s more): the last
    attack's audio is then in a complete loop, which is what the word check counts."""
    with redis.Redis.from_url(ctx.redis_url) as r:
        newest = r.xrevrange(keys.captions(ctx.live["event"], ctx.live["task"]), count=1)
    if not newest:
        return
    response = json.loads(newest[0][1][b"json"])["response"]
    t0 = response["start_epoch"] - response["start"]  # media time 0 on the wall clock, roughly
    loops_done = (time.time() - t0) // h.SAMPLE_SECONDS + 1
    time.sleep(max(0.0, t0 + loops_done * h.SAMPLE_SECONDS + 2.0 - time.time()))


def judge_words(rows: list[Row], result: dict[str, Any], published_until: float) -> list[str]:
    """Words lost by the live event, per attack (the loops of the sample whose audio reached the
    ingest from 5 s before the attack to the end of its recovery: captions trail the audio by
    a chunk and more), and the live reader's reconnects (a valid client dropped)."""
    loops, _t0 = h.check_loops(result, published_until)
    lines = []
    if not loops:
        return ["live event: no complete loop of the sample was captioned"]
    for row in rows:
        mine = [lc for lc in loops if lc.start < row.wall[1] and lc.start + h.SAMPLE_SECONDS > row.wall[0] - 5]
        if row.wall[1] > published_until or not mine:
            continue
        row.words_lost = sum(lc.missing for lc in mine)
        row.repeats = sum(lc.extra for lc in mine)
        for at, count in result["connections"][1:]:
            if row.wall[0] <= at <= row.wall[1]:
                row.refused.append(f"live caption client reconnected (connection {count})")
    total = sum(lc.missing for lc in loops)
    lines.append(
        f"live event: {len(loops)} complete loops of the sample ({len(loops) * len(h.REFERENCE)} words), "
        f"{total} lost, {sum(lc.extra for lc in loops)} extra; the reader connected {len(result['connections'])} "
        f"time(s); end of stream {'received' if result['done'] else 'NOT received'}"
    )
    bad = [lc for lc in loops if lc.missing or lc.extra]
    if bad:
        lines.append(
            "loops with lost or extra words: " + ", ".join(f"#{lc.loop} -{lc.missing}/+{lc.extra}" for lc in bad)
        )
    return lines


# --- the table --------------------------------------------------------------------------------------
def table(rows: list[Row]) -> list[str]:
    head = (
        f"{'attack':<18} {'service':<8} {'conns':>5} {'RSS MiB base/peak/after':>24} {'KiB/conn':>9} "
        f"{'CPU %':>6} {'words lost':>10} {'valid refused':>13} {'recovered':>10}"
    )
    out = [head, "-" * len(head)]
    for row in rows:
        for i, (service, f) in enumerate(row.services.items()):
            growth = max(0, f["peak"] - f["base"])
            per = f"{growth / 1024 / f['connections']:.0f}" if f["connections"] and row.per_connection else "-"
            flag = " !" if per != "-" and float(per) >= TARGET_KIB else ""
            rss = f"{f['base'] / h.MIB:.0f}/{f['peak'] / h.MIB:.0f}/{f['after'] / h.MIB:.0f}"
            lost = "n/a" if row.words_lost is None else str(row.words_lost) + (" !" if row.words_lost else "")
            if row.repeats:
                lost += f" +{row.repeats}"
            refused = str(len(row.refused)) + (" !" if row.refused else "")
            if f["answered"] is None:
                recovered = f">{f['seconds']:.0f} s"
            elif f["back"] is None:
                recovered = f"RSS +{(f['after'] - f['base']) / h.MIB:.0f}"
            else:
                recovered = f"{max(f['answered'], f['back']):.1f} s"
            out.append(
                f"{row.name if i == 0 else '':<18} {service:<8} {f['connections']:>5} {rss:>24} "
                f"{per:>7}{flag:<2} {f['cpu']:>6.0f} {lost if i == 0 else '':>10} "
                f"{refused if i == 0 else '':>13} {recovered:>10}"
            )
    return out


# --- main ---------------------------------------------------------------------------------------------
def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attack", action="append", choices=list(ATTACKS), help="run only this one (repeatable)")
    parser.add_argument("--quick", action="store_true", help="shorter floods, holds and waits")
    parser.add_argument("--list", action="store_true", help="list the attacks and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, (what, _fn, _per) in ATTACKS.items():
            print(f"{name:<18} {what}")
        return 0
    names = [name for name in ORDER if name in (args.attack or ORDER)]
    # SIGTERM unwinds like Ctrl-C: every process and socket this bench started is stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="reachlive-abuse-"))
    env = {"REACHLIVE_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "INFO")}
    if "trusted_proxy_hops" in GatewaySettings.model_fields:
        env["REACHLIVE_GATEWAY_TRUSTED_PROXY_HOPS"] = "1"  # as the shipped compose / k8s proxies
    os.environ.update(env)  # the settings this process reads are the services'
    durations = QUICK if args.quick else FULL
    print(f"abuse bench: {os.cpu_count()} cores, {'quick' if args.quick else 'full'} run, workdir {workdir}")
    print(f"targets: memory per hostile connection < {TARGET_KIB} KiB on both ports, 0 words lost by the")
    print("         live event, 0 valid clients refused ('!' marks a figure past its target)")
    tags = h.flv_audio_tags(encode_flv(JFK_FLAC, workdir / "jfk.flv"))
    rows: list[Row] = []
    summary: list[str] = []
    stack = h.BenchStack(workdir, env)
    with contextlib.ExitStack() as exit:
        exit.enter_context(stack.running())
        rss = exit.enter_context(h.RssSampler({GATEWAY: lambda: stack.pid(GATEWAY), INGEST: lambda: stack.pid(INGEST)}))
        admin = KalturaAdmin(stack.kaltura_url)
        live, probe, hostile = order(admin), order(admin), order(admin)
        ctx = Ctx(
            stack=stack,
            d=durations,
            gw=load(GatewaySettings),
            ingest=load(IngestSettings),
            rss=rss,
            redis_url=stack.redis_url,
            live=live,
            probe=probe,
            hostile=hostile,
            tags=tags,
        )
        mp = multiprocessing.get_context("spawn")
        mine, theirs = mp.Pipe()
        reader = mp.Process(target=h.caption_reader, args=(live["caption_url"], live["token"], theirs), daemon=True)
        reader.start()
        exit.callback(lambda: (reader.terminate(), reader.join(5)))
        publisher = h.start_publisher(live["publish"], workdir / "ffmpeg.log")
        exit.callback(h.stop_process, publisher)
        wait_captions(ctx, 3, 120)
        print(
            f"live event {live['event']} captioned; gateway :{stack.gateway_port} "
            f"(metrics :{stack.gateway_metrics_port}), ingest :{stack.ingest_port}; attacks: {' '.join(names)}",
            flush=True,
        )
        published_until = float("inf")
        with Probes(ctx) as probes:
            for name in names:
                rows.append(run_attack(ctx, probes, name))
                if publisher.poll() is not None and published_until == float("inf"):
                    published_until = time.time()
                    rows[-1].refused.append(f"live publisher exited (code {publisher.returncode})")
                    print(f"   LIVE PUBLISHER EXITED (code {publisher.returncode}): later rows have no word check")
        if published_until == float("inf"):
            wait_loop_end(ctx)
        h.stop_process(publisher)
        published_until = min(published_until, time.time())
        admin.end_window(live["event"])
        result = mine.recv() if mine.poll(90) else None
        if result is None:
            mine.send("stop")
            result = mine.recv() if mine.poll(15) else {"done": False, "received": [], "connections": []}
        (workdir / "live-transcript.json").write_text(json.dumps(result))  # to check the word count by hand
        summary = judge_words(rows, result, published_until)
    print("\n" + "\n".join(table(rows)))
    print("\n".join(summary))
    print(f"(services' logs: {workdir}/logs)")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        print("interrupted: every process this bench started was stopped", file=sys.stderr)
        raise SystemExit(130) from None
