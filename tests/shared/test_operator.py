"""Operator requests (shared.operator) and their path through the revocation listener, on the
embedded Redis: a request published by the console reaches the services' callback; revocations
still reach theirs; a listener without an operator callback does not hear requests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import redis
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from shared import keys, operator, revocations
from tests.support.polling import eventually as _wait


def test_requests_round_trip_and_garbage_is_refused() -> None:
    for req in (
        operator.Request(operator.DISCONNECT, "123"),
        operator.Request(operator.DISCONNECT, "123", publisher="abc"),
        operator.Request(operator.REVOKE, "123", "456"),
    ):
        assert operator.parse(req.encode()) == req
        assert operator.parse(req.encode().encode()) == req
    bad = [
        b"",
        b"garbage",
        b"[]",
        b'{"v": 2, "action": "disconnect", "event": "1"}',  # another version
        b'{"v": 1, "action": "end-media", "event": "1"}',  # not a channel action
        b'{"v": 1, "action": "disconnect"}',
        b'{"v": 1, "action": "disconnect", "event": 1}',
        b'{"v": 1, "action": "revoke", "event": "1"}',  # revoke names a task
        b'{"v": 1, "action": "disconnect", "event": "1", "publisher": 7}',
        b"\xff\xfe",
    ]
    for data in bad:
        assert operator.parse(data) is None, data


def test_the_listener_hears_operator_requests_next_to_revocations(redis_url: str) -> None:
    async def main() -> None:
        client = aioredis.Redis.from_url(redis_url)
        revoked: list[tuple[str, str]] = []
        requests: list[operator.Request] = []
        plain: list[tuple[str, str]] = []
        subscribed = [0, 0]

        async def on_lost(exc: BaseException) -> None:
            await asyncio.sleep(0.05)

        def counter(i: int) -> Callable[[], Awaitable[None]]:
            async def on_subscribed() -> None:
                subscribed[i] += 1

            return on_subscribed

        errors = (RedisError, TimeoutError)
        with_ops = asyncio.create_task(
            revocations.listen(
                client,
                lambda e, t: revoked.append((e, t)),
                on_lost,
                on_subscribed=counter(0),
                on_operator=requests.append,
                errors=errors,
            )
        )
        without = asyncio.create_task(
            revocations.listen(
                client, lambda e, t: plain.append((e, t)), on_lost, on_subscribed=counter(1), errors=errors
            )
        )
        try:
            await _wait(lambda: subscribed == [1, 1])
            with redis.Redis.from_url(redis_url) as sync:
                heard = operator.publish(sync, operator.Request(operator.DISCONNECT, "e1", publisher="p1"))
                assert heard == 1  # only the listener given on_operator subscribes to the channel
                sync.publish(keys.OPERATOR_CHANNEL, "garbage")
                sync.publish(keys.REVOKED_CHANNEL, "e1:t1")
            await _wait(lambda: revoked == [("e1", "t1")] and plain == [("e1", "t1")])
            assert requests == [operator.Request(operator.DISCONNECT, "e1", publisher="p1")]
        finally:
            for task in (with_ops, without):
                task.cancel()
            await asyncio.gather(with_ops, without, return_exceptions=True)
            await client.aclose()

    asyncio.run(main())
