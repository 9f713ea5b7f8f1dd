"""RedisHealth: one line lost, one line back per outage, and the three series (issue 18)."""

from __future__ import annotations

import logging

from prometheus_client import REGISTRY
from redis.exceptions import ConnectionError, ResponseError

from shared.redis_health import RedisHealth, is_outage


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sample(name: str, service: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"service": service})


def test_one_line_per_outage_and_the_gauges(caplog):
    caplog.set_level(logging.INFO, logger="shared.redis_health")
    clock = Clock()
    health = RedisHealth("unit-a", clock=clock)
    assert sample("reachlive_redis_up", "unit-a") == 0  # not known up before the first answer
    assert health.back() is None  # the first answer ends no outage
    assert sample("reachlive_redis_up", "unit-a") == 1
    assert sample("reachlive_redis_outage_seconds", "unit-a") == 0
    assert caplog.records == []

    clock.now += 1
    for _ in range(50):  # every feed, pinger and retry of the process reports the same outage
        health.lost(ConnectionError("Connection refused"))
    assert not health.up
    clock.now += 12.5
    assert sample("reachlive_redis_up", "unit-a") == 0
    assert sample("reachlive_redis_outage_seconds", "unit-a") == 12.5  # grows during the outage
    assert sample("reachlive_redis_outages_total", "unit-a") == 1
    assert health.back() == 12.5
    assert health.back() is None
    assert sample("reachlive_redis_outage_seconds", "unit-a") == 0
    assert sample("reachlive_redis_up", "unit-a") == 1

    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines == [
        ("WARNING", "redis lost (ConnectionError); retrying until it is back"),
        ("INFO", "redis back after 12.5 s"),
    ]

    clock.now += 60  # a second outage, well after the first
    health.lost(TimeoutError())
    health.back()
    assert sample("reachlive_redis_outages_total", "unit-a") == 2
    assert len(caplog.records) == 4


def test_unreachable_at_start_says_so(caplog):
    caplog.set_level(logging.INFO, logger="shared.redis_health")
    clock = Clock()
    health = RedisHealth("unit-b", clock=clock)
    assert health.lost(ConnectionError())
    assert not health.lost(ConnectionError())
    clock.now += 3
    assert health.back() == 3
    assert [r.getMessage() for r in caplog.records] == [
        "redis unreachable at start (ConnectionError); retrying until it is back",
        "redis back after 3.0 s",
    ]


def test_outage_errors_are_told_from_bad_commands():
    assert is_outage(ConnectionError()) and is_outage(TimeoutError()) and is_outage(ConnectionRefusedError())
    assert not is_outage(ResponseError("WRONGTYPE"))


def test_stale_connections_failing_just_after_the_outage_are_not_a_new_one(caplog):
    """The pools' connections that died during the outage fail once each after it: not a new
    outage, unless the pinger (a fresh PING) says so."""
    caplog.set_level(logging.INFO, logger="shared.redis_health")
    clock = Clock()
    health = RedisHealth("unit-c", clock=clock)
    health.back()
    health.lost(ConnectionError())
    clock.now += 10
    health.back()
    clock.now += 1
    assert not health.lost(ConnectionError("stale"))  # within the settle time
    assert health.up
    assert health.lost(ConnectionError(), confirmed=True)  # the pinger: a real new outage
    health.back()
    clock.now += 10
    assert health.lost(ConnectionError())  # long after: an outage
    assert sample("reachlive_redis_outages_total", "unit-c") == 3
