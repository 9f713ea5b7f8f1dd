"""How a console command reaches Redis, in one place: the URL from the project's settings, a
client with bounded timeouts, and the same exit statuses for every command (0 done, 1 the id is
unknown or the request does not apply, 2 Redis not configured or unreachable), so scripts can
tell "nothing there" from "could not look"."""

from __future__ import annotations

import sys
from collections.abc import Callable

import redis

NOT_FOUND = 1
NO_REDIS = 2


def with_redis(
    prog: str,
    body: Callable[[redis.Redis], int],
    *,
    refusals: tuple[type[Exception], ...] = (),
    socket_timeout: float = 10.0,
) -> int:
    """Run ``body(client)`` and map its failures to exit statuses with one line on stderr: an
    exception in ``refusals`` (the command's own "unknown id"/"does not apply") is 1, a Redis or
    socket error 2. The URL is shown without its password."""
    from shared.redis_client import redacted, sync_client
    from shared.settings import CommonSettings

    url = CommonSettings().redis_url
    if not url:
        print(f"{prog}: REACHLIVE_REDIS_URL is not set", file=sys.stderr)
        return NO_REDIS
    client = sync_client(url, socket_timeout=socket_timeout, socket_connect_timeout=5.0)
    try:
        return body(client)
    except refusals as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return NOT_FOUND
    except (redis.RedisError, OSError) as exc:
        print(f"{prog}: redis at {redacted(url)} unreachable: {type(exc).__name__}", file=sys.stderr)
        return NO_REDIS
    finally:
        client.close()
