"""The usage stream (shared/usage.py) and ``reachlive usage``: once per task under racing
writers, trimmed by time to the retention period, listed by end time and partner as CSV or JSON.
The records of a whole event are checked in test_captions_usage.py; the poller's ends in
tests/poller/test_usage.py."""

from __future__ import annotations

import csv
import io
import json
import threading
from datetime import UTC, datetime

import pytest
import redis

from services.console import usage as command
from shared import keys, usage

DAY = 86400.0
NOV_1 = datetime(2026, 11, 1, tzinfo=UTC).timestamp()


def record(task_id: str, partner: str = "101", **over: object) -> usage.Record:
    base: dict[str, object] = dict(
        partner_id=partner,
        event_id="E" + task_id,
        task_id=task_id,
        service="captions",
        feature="8",
        source_language="en",
        target_language="en",
        status="ready",
        start=NOV_1 - 3600,
        end=NOV_1,
        ended=NOV_1,
        media_seconds=3600.0,
        session_seconds=3590.5,
        words=9000,
    )
    base.update(over)
    return usage.Record(**base)  # type: ignore[arg-type]


def test_racing_appends_of_one_task_write_one_record(redis_url: str, redis_client: redis.Redis) -> None:
    go = threading.Barrier(8)
    results: list[bool] = []

    def append() -> None:
        client = redis.Redis.from_url(redis_url)
        go.wait()
        results.append(usage.append(client, record("T1"), 30 * DAY, NOV_1))
        client.close()

    threads = [threading.Thread(target=append) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(results) == [False] * 7 + [True]
    assert [r.task_id for r in usage.read(redis_client)] == ["T1"]
    assert usage.append(redis_client, record("T1", words=1), 30 * DAY, NOV_1 + DAY) is False


def test_records_older_than_the_retention_go_at_the_next_append(redis_client: redis.Redis) -> None:
    # Appended at their end time (the stream id is the time of the append): here, by hand.
    for i in range(3):
        when = NOV_1 + i * 10 * DAY
        redis_client.xadd(keys.USAGE_STREAM, record(f"T{i}", ended=when).fields(), id=f"{int(when * 1000)}-0")
        redis_client.zadd(keys.USAGE_RECORDED, {f"T{i}": when})
    # 35 days after the first: T0 (35 days old) goes, T1 (25 days) stays.
    assert usage.append(redis_client, record("T3"), 30 * DAY, NOV_1 + 35 * DAY)
    assert [r.task_id for r in usage.read(redis_client)] == ["T1", "T2", "T3"]
    assert {m.decode() for m in redis_client.zrange(keys.USAGE_RECORDED, 0, -1)} == {"T1", "T2", "T3"}


def _fill(client: redis.Redis) -> None:
    for i, (partner, day) in enumerate([("101", 0), ("202", 0), ("101", 14), ("101", 29), ("202", 30)]):
        when = NOV_1 + day * DAY + i
        client.xadd(keys.USAGE_STREAM, record(f"T{i}", partner, ended=when).fields(), id=f"{int(when * 1000)}-0")


def test_read_filters_by_end_time_and_partner_across_pages(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(redis_client)
    monkeypatch.setattr(usage, "PAGE", 2)
    nov = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
    assert [r.task_id for r in usage.read(redis_client, NOV_1, nov)] == ["T0", "T1", "T2", "T3"]
    assert [r.task_id for r in usage.read(redis_client, NOV_1, nov, "101")] == ["T0", "T2", "T3"]
    assert [r.task_id for r in usage.read(redis_client, NOV_1 + DAY)] == ["T2", "T3", "T4"]
    assert [r.task_id for r in usage.read(redis_client, until=NOV_1 + 1)] == ["T0"]  # until: excluded


def test_cli_csv_and_json(
    redis_url: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill(redis_client)
    monkeypatch.setenv("REACHLIVE_REDIS_URL", redis_url)
    assert command.main(["--since", "2026-11-01", "--until", "2026-12-01", "--partner", "101"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["task_id"] for r in rows] == ["T0", "T2", "T3"]
    assert rows[0]["ended"] == "2026-11-01T00:00:00Z" and rows[0]["start"] == "2026-10-31T23:00:00Z"
    assert rows[0]["media_seconds"] == "3600.0" and rows[0]["words"] == "9000" and rows[0]["service"] == "captions"

    assert command.main(["--since", "2026-11-15T00:00:00+01:00", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["task_id"] for r in doc] == ["T2", "T3", "T4"]
    assert doc[0]["session_seconds"] == 3590.5 and doc[0]["partner_id"] == "101"

    with pytest.raises(SystemExit) as exited:
        command.main(["--since", "last tuesday"])
    assert exited.value.code == 2 and "not a date" in capsys.readouterr().err
