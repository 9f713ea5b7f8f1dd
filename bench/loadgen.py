"""A load generator that costs little per stream (issue 22): one asyncio process publishing many
RTMP streams, each its own connection and stream key, from one FLV file held in memory, paced
by the file's timestamps.

    .venv/bin/python bench/loadgen.py 'rtmp://127.0.0.1:1935/live/bench-{i}' --streams 50 --seconds 30

Why it is cheap: the FLV's tags (audio, video, the onMetaData script tag as ffmpeg sends it:
``@setDataFrame``; the H.264 and AAC sequence headers first) become RTMP messages once, and are
chunked once per chunk size and stream id the server agreed (``shared.rtmp.client.chunk_media``:
the media has chunk streams of its own, so the chunked bytes do not depend on anything else the
connection sent). Every connection then sends slices of those same bytes: per stream and pacing
tick, one ``transport.write`` of a memoryview, no parsing, no copying, no per-message Python.
One timer paces all the streams (a heap of their next due times, woken at most once per
``tick``), instead of a task and a sleep per message and stream.

The protocol is the project's own codec, client side (``shared.rtmp.client.ClientConnection``,
sans-I/O); this module is its thin asyncio driver. A refused publish (an ``_error`` or an
``error``-level onStatus) is a result with the server's code and description, never a hang; a
connection that never gets an answer fails after ``timeout``.

As a library: ``Media.from_flv`` + ``publish`` (a coroutine) in a process of one's own, or
``Publishers`` (child processes, what bench/pipeline.py uses, for the reasons given there).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import heapq
import math
import multiprocessing
import statistics
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import itertools

from shared.rtmp import amf0
from shared.rtmp.chunks import AUDIO, DATA_AMF0, VIDEO
from shared.rtmp.client import (
    ClientConnection,
    PublishStarted,
    Refused,
    Status,
    chunk_media,
    split_url,
)
from shared.rtmp.errors import ProtocolError

LATE_MS = 50.0  # a send this late behind the file's timeline counts as late
# Bytes a stream may queue in its transport before it waits for the server (pause_writing). A
# real-time server may leave a publisher's bytes unread for a while (the ingest coalesces reads
# for up to 250 ms: ~100 kB at 3 Mbps, more with a keyframe); the kernel's buffers hold some of
# it and this the rest, so the sends stay on time and their lateness is the generator's own.
# What the server left unread is reported apart (``max_backlog``).
WRITE_BUFFER_HIGH = 4 << 20
SET_DATA_FRAME = amf0.encode("@setDataFrame")
Message = tuple[int, int, bytes]  # (RTMP type id, timestamp ms, payload)


# --- the media ------------------------------------------------------------------------------------
def read_flv(data: bytes) -> list[Message]:
    """The tags of an FLV file (FLV spec v10, annex E) as (type, timestamp ms, body), in file order."""
    if data[:3] != b"FLV" or len(data) < 9:
        raise ValueError("not an FLV file")
    pos = int.from_bytes(data[5:9], "big") + 4  # the header, then PreviousTagSize0
    out: list[Message] = []
    while pos + 11 <= len(data):
        type_id = data[pos] & 0x1F
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        ts = int.from_bytes(data[pos + 4 : pos + 7], "big") | (data[pos + 7] << 24)
        body = data[pos + 11 : pos + 11 + size]
        if len(body) < size:
            break  # a truncated last tag (a file still being written)
        if type_id in (AUDIO, VIDEO, DATA_AMF0):
            out.append((type_id, ts, body))
        pos += 11 + size + 4
    return out


def _is_header(msg: Message) -> bool:
    """A sequence header (AAC AudioSpecificConfig, AVC decoder configuration) or the metadata."""
    type_id, _ts, body = msg
    if type_id == DATA_AMF0:
        return True
    if type_id == AUDIO:
        return len(body) > 1 and body[0] >> 4 == 10 and body[1] == 0
    return len(body) > 1 and body[0] & 0x0F == 7 and body[1] == 0


def _is_end_of_sequence(msg: Message) -> bool:
    return msg[0] == VIDEO and len(msg[2]) > 1 and msg[2][0] & 0x0F == 7 and msg[2][1] == 2


@dataclass
class Media:
    """RTMP messages in sending order with the second each is due (non-decreasing), and their
    chunked bytes per (chunk size, stream id)."""

    messages: list[Message]
    due: list[float]
    duration: float
    _chunked: dict[tuple[int, int], tuple[memoryview, list[int]]] = field(default_factory=dict, repr=False)

    @classmethod
    def from_flv(cls, path: str | Path, seconds: float | None = None) -> Media:
        """The file's tags: metadata and sequence headers first, timestamps from the first tag
        on; cut at ``seconds``, or repeated back to back (the timeline continuing) to fill it."""
        tags = read_flv(Path(path).read_bytes())
        if not tags:
            raise ValueError(f"{path}: no audio, video or data tags")
        heads = [t for t in tags if _is_header(t)]
        body = [t for t in tags if not _is_header(t)]
        base = min(ts for _t, ts, _b in tags)
        # onMetaData goes out as ffmpeg's RTMP muxer sends it: ``@setDataFrame`` first.
        heads = [(t, 0, SET_DATA_FRAME + b if t == DATA_AMF0 else b) for t, _ts, b in heads]
        body = [(t, ts - base, b) for t, ts, b in body]
        audio = [ts for t, ts, _b in body if t == AUDIO]
        step = statistics.median(b - a for a, b in itertools.pairwise(audio)) if len(audio) > 1 else 0
        period = max(ts for _t, ts, _b in body) + round(step)  # the file's length, one frame after its last
        limit = math.inf if seconds is None else seconds * 1000
        loops = 1
        if seconds is not None and limit > period:
            body = [m for m in body if not _is_end_of_sequence(m)]
            loops = math.ceil(limit / period)
            body = [(t, ts + k * period, b) for k in range(loops) for t, ts, b in body]
        body = [m for m in body if m[1] < limit]
        messages = heads + body
        due, last = [], 0.0
        for _t, ts, _b in messages:
            last = max(last, ts / 1000)
            due.append(last)
        return cls(messages, due, min(limit, loops * period) / 1000)

    @property
    def size(self) -> int:
        return sum(len(b) for _t, _ts, b in self.messages)

    def chunked(self, chunk_size: int, stream_id: int) -> tuple[memoryview, list[int]]:
        """The media's bytes as a connection with this chunk size and stream id sends them, and
        the end of each message in them (made once, shared by every such connection)."""
        key = (chunk_size, stream_id)
        if key not in self._chunked:
            blob, ends = chunk_media(self.messages, chunk_size, stream_id)
            self._chunked[key] = (memoryview(blob), ends)
        return self._chunked[key]


# --- the streams ------------------------------------------------------------------------------------
@dataclass
class StreamResult:
    index: int
    outcome: str = "pending"  # done | refused | failed
    detail: str = ""  # the server's code and description, or what went wrong
    publish_seconds: float = 0.0  # connect → publish started
    media_seconds: float = 0.0  # of the file's timeline sent
    bytes_sent: int = 0
    max_lag_ms: float = 0.0  # the latest a send was behind the file's timeline
    late_sends: int = 0  # sends more than LATE_MS late
    max_backlog: int = 0  # the most bytes queued in the transport (the server not reading)


class _Stream(asyncio.Protocol):
    """One publish: the ClientConnection's bytes in and out, then slices of the media's bytes."""

    def __init__(self, gen: LoadGenerator, index: int, url: str) -> None:
        self.gen, self.result = gen, StreamResult(index)
        _scheme, self.host, self.port, app, key = split_url(url)
        self.conn = ClientConnection(app, key, tc_url=url.rsplit("/", 1)[0])
        self.transport: asyncio.Transport | None = None
        self.answered: asyncio.Future[None] = gen.loop.create_future()  # publish started, refused or lost
        self.closed: asyncio.Future[None] = gen.loop.create_future()
        self.blob: memoryview | None = None
        self.ends: list[int] = []
        self.next = 0  # index of the next message to send
        self.connect_at = 0.0
        self.started = 0.0  # loop time the publish started: the file's time 0
        self.due_at = 0.0
        self.paused = False
        self.sending = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)
        self._flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except ProtocolError as exc:
            self.fail(f"protocol error from the server: {exc}")
            return
        for ev in events:
            if isinstance(ev, PublishStarted):
                self._start()
            elif isinstance(ev, Refused):
                self.result.outcome = "refused"
                self.result.detail = f"{ev.stage}: {ev.code} {ev.description}".strip()
                self._answer()
                assert self.transport is not None
                self.transport.close()
            elif isinstance(ev, Status):
                self.result.detail = f"{ev.level} {ev.code} {ev.description}".strip()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.sending = False
        if self.result.outcome == "pending":
            self.result.outcome = "failed"
            when = "before the publish started" if not self.started else f"after {self.result.media_seconds:.1f} s"
            reason = f" ({exc})" if exc else ""
            self.result.detail = f"closed by the server {when}{reason}; {self.result.detail}".rstrip("; ")
        self._answer()
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:  # the server reads slower than we send: wait, as ffmpeg blocks
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.sending:
            self.gen.schedule(self)

    # the publish
    def _flush(self) -> None:
        out = self.conn.data_to_send()
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)

    def _answer(self) -> None:
        if not self.answered.done():
            self.answered.set_result(None)

    def fail(self, detail: str) -> None:
        if self.result.outcome == "pending":
            self.result.outcome, self.result.detail = "failed", detail
        self._answer()
        if self.transport is not None:
            self.transport.abort()

    def _start(self) -> None:
        self.blob, self.ends = self.gen.media.chunked(self.conn.chunk_size, self.conn.stream_id)
        self.started = self.due_at = self.gen.loop.time()
        self.result.publish_seconds = self.started - self.connect_at
        self.sending = True
        self._answer()
        self.gen.schedule(self)

    def send_due(self, now: float) -> None:
        """Send every message due by ``now`` in one write; set when the next one is due."""
        gen, i = self.gen, self.next
        elapsed = (now - self.started) * gen.rate
        j = bisect.bisect_right(gen.media.due, elapsed, lo=i)
        if j > i:
            lag = (elapsed - gen.media.due[i]) / gen.rate * 1000 if gen.rate != math.inf else 0.0
            if lag > self.result.max_lag_ms:
                self.result.max_lag_ms = lag
            if lag > LATE_MS:
                self.result.late_sends += 1
            start = self.ends[i - 1] if i else 0
            assert self.blob is not None and self.transport is not None
            self.transport.write(self.blob[start : self.ends[j - 1]])
            backlog = self.transport.get_write_buffer_size()
            if backlog > self.result.max_backlog:
                self.result.max_backlog = backlog
            self.result.bytes_sent += self.ends[j - 1] - start
            self.result.media_seconds = gen.media.due[j - 1]
            self.next = j
        if self.next >= len(self.ends):
            self.finish("done")
        else:
            self.due_at = self.started + gen.media.due[self.next] / gen.rate

    def finish(self, outcome: str) -> None:
        """End the publish as ffmpeg does (FCUnpublish, deleteStream) and close once it is sent."""
        self.sending = False
        if self.result.outcome == "pending":
            self.result.outcome = outcome
        self.conn.unpublish()
        self._flush()
        if self.transport is not None:
            self.transport.close()


class LoadGenerator:
    """Publishes ``media`` to each URL from its start offset on (seconds after ``run`` starts)."""

    def __init__(
        self,
        media: Media,
        urls: list[str],
        *,
        starts: list[float] | None = None,
        rate: float = 1.0,
        tick: float = 0.01,
        timeout: float = 15.0,
    ) -> None:
        self.media, self.urls = media, urls
        self.starts = starts if starts is not None else [0.0] * len(urls)
        self.rate = rate if rate > 0 else math.inf  # media seconds per second; 0: as fast as possible
        self.tick, self.timeout = tick, timeout
        self.loop = asyncio.get_running_loop()
        self._heap: list[tuple[float, int, _Stream]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._last_run = 0.0

    def schedule(self, stream: _Stream) -> None:
        """(Re)queue a sending stream at its next due time; one timer serves every stream."""
        heapq.heappush(self._heap, (stream.due_at, stream.result.index, stream))
        self._arm()

    def _arm(self) -> None:
        if not self._heap:
            return
        when = max(self._heap[0][0], self._last_run + self.tick)
        if self._timer is not None:
            if self._timer.when() <= when:
                return
            self._timer.cancel()
        self._timer = self.loop.call_at(when, self._run)

    def _run(self) -> None:
        self._timer = None
        now = self._last_run = self.loop.time()
        heap = self._heap
        while heap and heap[0][0] <= now:
            _due, _i, stream = heapq.heappop(heap)
            if not stream.sending or stream.paused:
                continue  # finished, lost, or waiting for the socket (resume_writing requeues it)
            stream.send_due(now)
            if stream.sending and not stream.paused:
                heapq.heappush(heap, (stream.due_at, stream.result.index, stream))
        self._arm()

    async def run(self) -> list[StreamResult]:
        streams = [_Stream(self, i, url) for i, url in enumerate(self.urls)]
        t0 = self.loop.time()
        try:
            async with asyncio.TaskGroup() as group:
                for stream, start in zip(streams, self.starts, strict=True):
                    group.create_task(self._one(stream, t0 + start))
        finally:
            if self._timer is not None:
                self._timer.cancel()
        return [s.result for s in streams]

    async def _one(self, stream: _Stream, at: float) -> None:
        await asyncio.sleep(max(0.0, at - self.loop.time()))
        stream.connect_at = self.loop.time()
        try:
            await asyncio.wait_for(self.loop.create_connection(lambda: stream, stream.host, stream.port), self.timeout)
        except (OSError, TimeoutError) as exc:
            stream.result.outcome, stream.result.detail = "failed", f"connect: {exc or 'timed out'}"
            return
        try:
            await asyncio.wait_for(asyncio.shield(stream.answered), self.timeout)
        except TimeoutError:
            stream.fail(f"no answer to the publish in {self.timeout:.0f} s (state {stream.conn.state})")
        await stream.closed


@dataclass
class Report:
    streams: list[StreamResult]
    cpu_seconds: float  # the publishing processes' CPU while they published
    setup_cpu_seconds: float  # reading and chunking the file, before the first connection
    wall_seconds: float
    processes: int = 1

    @property
    def media_seconds(self) -> float:
        return sum(s.media_seconds for s in self.streams)

    def cpu_per_stream_pct(self) -> float:
        """% of a core per real-time stream: CPU / media seconds sent."""
        return 100 * self.cpu_seconds / self.media_seconds if self.media_seconds else math.nan

    def lines(self) -> list[str]:
        outcomes = Counter(s.outcome for s in self.streams)
        lags = [s.max_lag_ms for s in self.streams if s.media_seconds]
        out = [
            f"{len(self.streams)} streams: " + ", ".join(f"{v} {k}" for k, v in sorted(outcomes.items())),
            f"load generator CPU: {self.cpu_seconds:.2f} s over {self.media_seconds:.0f} stream-seconds of media = "
            f"{self.cpu_per_stream_pct():.3f} % of a core per stream ({self.cpu_per_stream_pct() * 0.6:.3f} s per "
            f"stream-minute) in {self.processes} process(es); setup {self.setup_cpu_seconds:.2f} s",
        ]
        if lags:
            late = sum(s.late_sends for s in self.streams)
            backlog = max(s.max_backlog for s in self.streams) / 1000
            out.append(
                f"sends behind the file's timeline: max {max(lags):.1f} ms, median of the streams' max "
                f"{statistics.median(lags):.1f} ms, {late} sends over {LATE_MS:.0f} ms late; "
                f"most bytes the server left unread past the kernel's buffers {backlog:.0f} kB"
            )
        for (outcome, detail), count in Counter(
            (s.outcome, s.detail) for s in self.streams if s.outcome != "done"
        ).most_common(5):
            out.append(f"  {count} × {outcome}: {detail}")
        return out


async def publish(
    media: Media,
    urls: list[str],
    *,
    starts: list[float] | None = None,
    rate: float = 1.0,
    tick: float = 0.01,
    timeout: float = 15.0,
) -> Report:
    """Publish ``media`` to every URL (each its own connection) from its start offset on; returns
    when every stream has ended (sent the file, been refused or failed). ``rate``: media seconds
    per second (1: real time, 0: as fast as the server reads); ``tick``: the pacing grid (s)."""
    cpu0, t0 = time.process_time(), time.monotonic()
    streams = await LoadGenerator(media, urls, starts=starts, rate=rate, tick=tick, timeout=timeout).run()
    return Report(streams, time.process_time() - cpu0, 0.0, time.monotonic() - t0)


# --- in child processes -------------------------------------------------------------------------------
def _child(flv: str, seconds: float | None, urls: list[str], starts: list[float], options: dict, conn: Any) -> None:
    cpu0 = time.process_time()
    media = Media.from_flv(flv, seconds)
    media.chunked(4096, 1)  # what the ingest agrees by default: chunked before the clock starts
    setup = time.process_time() - cpu0
    conn.send("ready")
    t0_epoch = conn.recv()  # everyone's time 0, on the wall clock

    async def go() -> Report:
        await asyncio.sleep(max(0.0, t0_epoch - time.time()))
        return await publish(media, urls, starts=starts, **options)

    report = asyncio.run(go())
    report.setup_cpu_seconds = setup
    conn.send(asdict(report))


class Publishers:
    """The load generator in ``processes`` child processes (the streams dealt round-robin), each
    with the same time 0. ``start`` once they are ready, ``wait`` for the merged report."""

    def __init__(
        self,
        flv: str | Path,
        urls: list[str],
        starts: list[float] | None = None,
        *,
        processes: int = 1,
        seconds: float | None = None,
        **options: Any,
    ) -> None:
        starts = starts if starts is not None else [0.0] * len(urls)
        ctx = multiprocessing.get_context("spawn")
        self._parts: list[tuple[list[int], Any, Any]] = []
        count = max(1, min(processes, len(urls)))
        for p in range(count):
            idx = list(range(p, len(urls), count))
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(
                target=_child,
                args=(str(flv), seconds, [urls[i] for i in idx], [starts[i] for i in idx], options, theirs),
                daemon=True,
                name=f"loadgen-{p}",
            )
            proc.start()
            self._parts.append((idx, proc, mine))
        for _idx, proc, mine in self._parts:
            if not mine.poll(120) or mine.recv() != "ready":
                raise RuntimeError(f"load generator process {proc.pid} did not start")

    @property
    def pids(self) -> list[int]:
        return [proc.pid for _i, proc, _c in self._parts]

    def start(self, t0_epoch: float | None = None) -> float:
        """Time 0 of every stream's start offset (default: now); returns it."""
        t0 = time.time() if t0_epoch is None else t0_epoch
        for _idx, _proc, mine in self._parts:
            mine.send(t0)
        return t0

    def wait(self, timeout: float | None = None) -> Report:
        """The merged report (streams in the order of the URLs); a process that does not answer
        in ``timeout`` is killed and its streams reported failed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        results: dict[int, StreamResult] = {}
        cpu = setup = wall = 0.0
        for idx, proc, mine in self._parts:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if mine.poll(left):
                raw = mine.recv()
                streams = [StreamResult(**s) for s in raw["streams"]]
                cpu, setup = cpu + raw["cpu_seconds"], setup + raw["setup_cpu_seconds"]
                wall = max(wall, raw["wall_seconds"])
            else:
                proc.kill()
                streams = [StreamResult(i, "failed", "the load generator process did not finish") for i in idx]
            for i, s in zip(idx, streams, strict=True):
                s.index = i
                results[i] = s
            proc.join(10)
        return Report([results[i] for i in sorted(results)], cpu, setup, wall, len(self._parts))

    def kill(self) -> None:
        for _idx, proc, _mine in self._parts:
            if proc.is_alive():
                proc.kill()
            proc.join(5)


# --- command line -------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url_template", nargs="?", help="RTMP URL; {i} is replaced by the stream's number (0..N-1)")
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--flv", help="the FLV to publish (default: the 3 Mbps 720p30 A/V speech sample)")
    parser.add_argument("--seconds", type=float, help="media per stream (cut, or the file repeated)")
    parser.add_argument("--stagger", type=float, default=0.1, help="seconds between stream starts")
    parser.add_argument("--rate", type=float, default=1.0, help="media seconds per second; 0: as fast as read")
    parser.add_argument("--tick", type=float, default=10.0, help="pacing grid, ms")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for each publish's answer")
    args = parser.parse_args(argv)
    if args.url_template is None:
        # ``make bench`` runs every bench script without arguments: this one needs a server, and
        # bench/publishers.py measures it against a real ingest.
        parser.print_usage()
        print("loadgen.py: no URL given, nothing published (bench/publishers.py measures the load generator)")
        return 0
    flv: str | Path | None = args.flv
    if flv is None:
        from emulators.media.flv import SAMPLE_SECONDS, av_flv

        flv = av_flv(loops=max(1, math.ceil((args.seconds or SAMPLE_SECONDS) / SAMPLE_SECONDS)))
    urls = [args.url_template.replace("{i}", str(i)) for i in range(args.streams)]
    starts = [i * args.stagger for i in range(args.streams)]
    pubs = Publishers(
        flv,
        urls,
        starts,
        processes=args.processes,
        seconds=args.seconds,
        rate=args.rate,
        tick=args.tick / 1000,
        timeout=args.timeout,
    )
    try:
        pubs.start()
        report = pubs.wait()
    finally:
        pubs.kill()
    print(f"{Path(flv).name} ({Path(flv).stat().st_size / 1e6:.1f} MB)")
    for line in report.lines():
        print(line)
    return 0 if all(s.outcome == "done" for s in report.streams) else 1


if __name__ == "__main__":
    raise SystemExit(main())
