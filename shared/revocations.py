"""The poller's revocations, heard by the ingest and the gateway: "<event>:<task>" published on
``keys.REVOKED_CHANNEL`` when a task is cancelled, so its publishers and caption connections
close at once (docs/design.md section 2). One listener for both services (issue 21).

It polls ``get_message`` with a timeout instead of ``async for ... in pubsub.listen()``:
redis-py can swallow a task cancellation that lands while ``listen`` waits, which hung a
shutdown; a poll returns each second and ``check_cancelled`` re-raises a swallowed stop.
Messages published while the subscription is down are lost: each service re-checks what it
holds after resubscribing (``on_subscribed``) or at its next revalidation.

Given ``on_operator``, the same subscription also hears the operator's requests
(``keys.OPERATOR_CHANNEL``, shared/operator.py: reachlive admin disconnect / revoke), which need
the same promptness and the same outage handling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from shared import keys, operator
from shared.aio import check_cancelled

log = logging.getLogger(__name__)

# A subscribe that does not answer within this is a Redis outage, not a slow command.
SUBSCRIBE_DEADLINE_SECONDS = 5.0


def parse(data: bytes | str) -> tuple[str, str] | None:
    """A revocation message → (event id, task id); None for anything else."""
    text = data.decode() if isinstance(data, bytes) else str(data)
    event_id, sep, task_id = text.partition(":")
    return (event_id, task_id) if sep and event_id and task_id else None


async def listen(
    client: aioredis.Redis,
    on_revoke: Callable[[str, str], None],
    on_lost: Callable[[BaseException], Awaitable[None]],
    *,
    on_subscribed: Callable[[], Awaitable[None]] | None = None,
    on_operator: Callable[[operator.Request], None] | None = None,
    errors: tuple[type[BaseException], ...] = (Exception,),
    running: Callable[[], bool] = lambda: True,
) -> None:
    """Subscribe, call ``on_revoke`` per message, and resubscribe after ``on_lost`` (which waits
    as the service's outage handling says) until ``running()`` is false or the task is cancelled.
    ``errors`` are the losses ``on_lost`` handles; any other error is logged and retried after
    a second (a listener that ends would leave revoked tasks served). ``on_operator`` is called
    per operator request (see the module doc)."""
    channels = [keys.REVOKED_CHANNEL] + ([keys.OPERATOR_CHANNEL] if on_operator is not None else [])
    while running():
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            async with asyncio.timeout(SUBSCRIBE_DEADLINE_SECONDS):
                await pubsub.subscribe(*channels)
                if on_subscribed is not None:
                    await on_subscribed()
            while running():
                message = await pubsub.get_message(timeout=1.0)
                check_cancelled()
                if message is None or message.get("type") != "message":
                    continue
                if on_operator is not None and _channel(message) == keys.OPERATOR_CHANNEL:
                    request = operator.parse(message["data"])
                    if request is not None:
                        on_operator(request)
                    continue
                parsed = parse(message["data"])
                if parsed is not None:
                    on_revoke(*parsed)
        except asyncio.CancelledError:
            raise
        except errors as exc:
            check_cancelled()  # the error may stand for a swallowed stop (shared.aio)
            await on_lost(exc)
        except Exception:
            check_cancelled()
            log.exception("revocation listener failed; resubscribing")
            await asyncio.sleep(1)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()


def _channel(message: dict) -> str:
    channel = message.get("channel", b"")
    return channel.decode() if isinstance(channel, bytes) else str(channel)
