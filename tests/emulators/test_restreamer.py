"""The restreamer's pauses and late publishes (issue 16) against a real RTMP server process
(``tests.emulators.rtmp_sink``, our own RTMP core): an encoder restart is two RTMP connections
with a real gap between them, each with timestamps from 0, together carrying the source once;
a late publish connects late and carries the live media of that moment."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest

from emulators.media import JFK_FLAC
from emulators.restreamer import Publish, late_restream, restream, restream_segments, restream_with_gap
from services.demo import scenario
from shared.child import ROOT, free_port, wait_port

JFK_SECONDS = 11.0
AAC_FRAME_MS = 1024 / 44.1  # one AAC frame at 44.1 kHz
# A publish ends after the source frame that starts before its end (the sample's FLAC frames are
# 4608 samples at 44.1 kHz), and the AAC encoder adds its priming: the tolerance of a split point.
SPLIT_MS = 4608 / 44.1 + 3 * AAC_FRAME_MS


class Sink:
    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.out = tmp_path / "sink.jsonl"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.emulators.rtmp_sink", str(self.port), str(self.out)],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
        )
        wait_port(self.port)

    def url(self, key: str) -> str:
        return f"rtmp://127.0.0.1:{self.port}/live/{key}"

    def connections(self, n: int, timeout: float = 60) -> list[dict[str, Any]]:
        """The publishing connections that ended (at least ``n``, in order of opening), waiting
        for them; connections that never published (``wait_port``'s probe) are left out."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.out.read_text().splitlines() if self.out.exists() else []
            conns = [c for c in map(json.loads, lines) if c["key"] is not None]
            if len(conns) >= n or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert len(conns) >= n, conns
        return sorted(conns, key=lambda r: r["opened"])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[Sink]:
    server = Sink(tmp_path)
    yield server
    server.stop()


def media_ms(conn: dict[str, Any]) -> tuple[int, int]:
    stamps = [ts for _arrival, ts in conn["audio"]]
    return stamps[0], stamps[-1]


def test_encoder_restart_is_two_publishes_with_a_real_gap(sink: Sink) -> None:
    called = time.time()
    parts = restream_with_gap(
        JFK_FLAC, sink.url("key-a"), pause_at=4.0, pause_for=2.0, resume_url=sink.url("key-b"), realtime=False
    )
    first, second = sink.connections(2)
    # Two RTMP connections, one per publish, each to its key, each unpublished and closed.
    assert (first["key"], second["key"]) == ("key-a", "key-b")
    assert "FCUnpublish" in first["unpublished"] and "FCUnpublish" in second["unpublished"]
    # A real gap: the second connects only after the first closed and pause_for passed.
    assert second["opened"] - first["closed"] >= 2.0 - 0.05
    assert second["opened"] - called >= 2.0
    # A restarted encoder: timestamps from 0 again; together the source once (11 s).
    (a0, a1), (b0, b1) = media_ms(first), media_ms(second)
    assert a0 < 100 and b0 < 100
    assert 4000 - SPLIT_MS <= a1 <= 4000 + SPLIT_MS
    assert 7000 - SPLIT_MS <= b1 <= 7000 + SPLIT_MS
    assert a1 + b1 == pytest.approx(JFK_SECONDS * 1000, abs=2 * SPLIT_MS)
    # Stats per part: where in the source each one was.
    assert [p.error for p in parts] == ["", ""]
    assert (parts[0].source_start, parts[1].source_start) == (0.0, 4.0)
    assert 4.0 - SPLIT_MS / 1000 < parts[0].source_end < 4.0
    assert parts[1].source_end == pytest.approx(JFK_SECONDS, abs=0.2)
    assert parts[0].media_seconds + parts[1].media_seconds == pytest.approx(JFK_SECONDS, abs=0.3)
    assert parts[0].finished <= parts[1].started - 2.0 + 0.05
    assert all(p.packets > 0 for p in parts)


def test_late_publish_in_real_time_on_the_live_media(sink: Sink) -> None:
    called = time.time()
    stats = late_restream(JFK_FLAC, sink.url("late"), after=1.0, stop_at=3.5)
    [conn] = sink.connections(1)
    assert conn["key"] == "late" and conn["opened"] - called >= 1.0
    assert stats is not None and stats.error == "" and stats.source_start == 1.0
    # [1.0, 3.5) of the source, on a timeline from 0, paced to the wall clock.
    first, last = media_ms(conn)
    assert first < 100 and 2500 - 2 * SPLIT_MS <= last <= 2500 + 2 * SPLIT_MS
    arrivals = [arrival for arrival, _ts in conn["audio"]]
    assert arrivals[-1] - arrivals[0] >= 2.0  # not faster than real time
    assert stats.source_end == pytest.approx(3.5, abs=0.1)


def test_stop_during_the_gap_ends_without_the_second_publish(sink: Sink) -> None:
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    parts = restream_segments(
        JFK_FLAC,
        [Publish(sink.url("k"), until=1.0), Publish(sink.url("k"), after=30.0)],
        stop=stop,
        realtime=False,
    )
    assert len(parts) == 1 and parts[0].error == ""
    assert len(sink.connections(1)) == 1


def test_scenario_helpers_restream_every_feature_with_a_gap_and_a_late_one(sink: Sink) -> None:
    run = scenario.EventRun(event_id="1", task_ids=["10", "11"])
    run.features = {
        t: {"mediaUrl": f"rtmp://127.0.0.1:{sink.port}/live", "mediaKey": f"key-{t}"} for t in "10 11 12".split()
    }
    stop = threading.Event()
    threads = scenario.start_restreams_with_gap(run, JFK_FLAC, stop, pause_at=3.0, pause_for=1.0, realtime=False)
    threads += scenario.start_late_restreams(run, JFK_FLAC, stop, ["12"], after=0.5, start_offset=5.0, realtime=False)
    for thread in threads:
        thread.join(60)
    conns = sink.connections(5)
    keys = sorted(c["key"] for c in conns)
    assert keys == ["key-10", "key-10", "key-11", "key-11", "key-12"]
    for key in ("key-10", "key-11"):
        first, second = [c for c in conns if c["key"] == key]
        assert second["opened"] - first["closed"] >= 1.0 - 0.05
    assert len(run.restreams) == 5 and all(s.error == "" for s in run.restreams)
    late = next(s for s in run.restreams if s.source_start == 5.0)
    assert late.media_seconds == pytest.approx(JFK_SECONDS - 5.0, abs=0.2)


def test_stop_at_and_start_offset_on_a_looped_timeline(tmp_path: Path) -> None:
    """Without RTMP: an FLV file written by a publish of [9, 14) of the source looped twice."""
    target = tmp_path / "part.flv"
    stats = restream(JFK_FLAC, str(target), realtime=False, loops=2, start_offset=9.0, stop_at=14.0)
    assert stats.error == "" and stats.source_start == 9.0
    assert stats.source_end == pytest.approx(14.0, abs=0.1)
    with av.open(str(target)) as inp:
        stamps = [float(p.pts * p.time_base) for p in inp.demux(audio=0) if p.pts is not None]
    assert stamps[0] < 0.1 and stamps[-1] == pytest.approx(5.0, abs=0.1)


def test_cli_pause_and_resume(sink: Sink) -> None:
    args = ["--fast", "--json", "--pause-at", "2", "--pause-for", "1", "--stop-at", "5"]
    done = subprocess.run(
        [sys.executable, "-m", "emulators.restreamer", str(JFK_FLAC), sink.url("cli-secret-key"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    parts = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(p["source_start"], p["error"]) for p in parts] == [(0.0, ""), (2.0, "")]
    assert parts[1]["source_end"] == pytest.approx(5.0, abs=0.15)
    first, second = sink.connections(2)
    assert second["opened"] - first["closed"] >= 1.0 - 0.05
    assert "cli-secret-key" not in done.stdout  # the stream key is never printed
