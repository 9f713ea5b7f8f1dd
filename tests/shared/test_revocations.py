"""The one revocation listener (shared.revocations) of the ingest and the gateway, on the
embedded Redis: messages reach the callback, a lost subscription is reported and resubscribed,
and a stop is honoured."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from shared import keys, revocations
from tests.support.polling import eventually as _wait


def test_parse_takes_event_and_task_and_refuses_anything_else() -> None:
    assert revocations.parse(b"123:456") == ("123", "456")
    assert revocations.parse("1:2:3") == ("1", "2:3")
    for bad in (b"", b"123", b":456", b"123:", "garbage"):
        assert revocations.parse(bad) is None


def test_the_listener_hears_resubscribes_after_a_lost_connection_and_stops(redis_url: str) -> None:
    async def main() -> None:
        client = aioredis.Redis.from_url(redis_url)
        heard: list[tuple[str, str]] = []
        lost: list[BaseException] = []
        subscribed = 0
        running = True

        async def on_subscribed() -> None:
            nonlocal subscribed
            subscribed += 1

        async def on_lost(exc: BaseException) -> None:
            lost.append(exc)
            await asyncio.sleep(0.05)

        task = asyncio.create_task(
            revocations.listen(
                client,
                lambda e, t: heard.append((e, t)),
                on_lost,
                on_subscribed=on_subscribed,
                errors=(RedisError, TimeoutError),
                running=lambda: running,
            )
        )
        try:
            await _wait(lambda: subscribed == 1)
            await client.publish(keys.REVOKED_CHANNEL, "e1:t1")
            await client.publish(keys.REVOKED_CHANNEL, "not a revocation")
            await _wait(lambda: heard == [("e1", "t1")])
            # The server drops the subscriber's connection (a restart, a failover): reported,
            # then subscribed again, and the next message is heard.
            await client.client_kill_filter(_type="pubsub")
            await _wait(lambda: lost and subscribed == 2)
            await client.publish(keys.REVOKED_CHANNEL, "e2:t2")
            await _wait(lambda: heard == [("e1", "t1"), ("e2", "t2")])
            running = False
            await asyncio.wait_for(task, 5)  # the poll returns within a second and sees the flag
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await client.aclose()

    asyncio.run(main())
