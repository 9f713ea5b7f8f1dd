"""reachlive usage: the usage records of ended tasks, for billing per customer.

One record per REACH task, written by the poller when the task's final status is settled: partner,
event, task, service (captions | translation), source and target languages, final status (ready,
error, cancelled), the task's window (start, end), when it ended, the event's media seconds
received, the seconds of speech (KWIKmotion) sessions that served the task, and the words of its
captions. Records are kept REACHLIVE_RETENTION_DAYS (30) after the task's end.

--since and --until select by when the task ended: a date (2026-11-01, midnight UTC) or a time
(2026-11-01T14:30, 2026-11-01T14:30:00+01:00; UTC unless an offset is given); --since is included,
--until is not, so --since 2026-11-01 --until 2026-12-01 is November. --partner ID keeps one
partner's. --format csv (default; times in ISO 8601 UTC) or json (a list). Reads Redis only
(REACHLIVE_REDIS_URL); Redis unreachable is exit status 2.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import sys
from datetime import UTC, datetime
from typing import Any

import redis

from services.console.redis_io import with_redis
from shared import usage
from shared.cli import plain

COLUMNS = [f.name for f in dataclasses.fields(usage.Record)]
TIMES = ("start", "end", "ended")


def parse_date(value: str) -> float:
    """``YYYY-MM-DD`` or an ISO 8601 time (UTC unless it has an offset) → epoch seconds."""
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date or ISO 8601 time: {value!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z") if epoch else ""


def to_csv(records: list[usage.Record]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for rec in records:
        row: dict[str, Any] = rec.as_dict()
        for name in TIMES:
            row[name] = _iso(row[name])
        writer.writerow([row[c] for c in COLUMNS])
    return out.getvalue()


def to_json(records: list[usage.Record]) -> str:
    return json.dumps([r.as_dict() for r in records], indent=1) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="reachlive usage", description=plain(__doc__))
    parser.add_argument("--since", type=parse_date, metavar="DATE", help="tasks that ended at or after DATE")
    parser.add_argument("--until", type=parse_date, metavar="DATE", help="tasks that ended before DATE")
    parser.add_argument("--partner", metavar="ID", help="one Kaltura partner id")
    parser.add_argument("--format", choices=("csv", "json"), default="csv", help="csv (default) or json")
    args = parser.parse_args(argv)

    def show(client: redis.Redis) -> int:
        records = list(usage.read(client, args.since, args.until, args.partner))
        sys.stdout.write(to_csv(records) if args.format == "csv" else to_json(records))
        return 0

    return with_redis("reachlive usage", show)
