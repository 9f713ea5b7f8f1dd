"""The common shape of every entry point (DESIGN section 8): settings → logging → metrics
server → embedded Redis if needed → build → run → drain on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

from shared import gctune, loopwatch
from shared.embedded_redis import redis_url_or_embedded
from shared.logs import setup_logging
from shared.metrics import start_metrics_server
from shared.settings import CommonSettings, load

log = logging.getLogger(__name__)

# A service body: given the Redis URL and an event set on SIGTERM/SIGINT, runs until the event
# is set, then drains and returns.
ServiceMain = Callable[[str, asyncio.Event], Awaitable[None]]


def prepare(service: str) -> CommonSettings:
    """Load the common settings and configure logging (SettingsError propagates to the CLI)."""
    common = load(CommonSettings)
    setup_logging(common.log_format, common.log_level, service)
    return common


def run_async_service(service: str, body: ServiceMain, *, metrics: bool = True) -> int:
    common = prepare(service)
    if metrics:
        start_metrics_server(common.metrics_port, common.metrics_host)
    with redis_url_or_embedded(common.redis_url, common.data_dir) as redis_url:
        return asyncio.run(_main(service, body, redis_url))


async def _main(service: str, body: ServiceMain, redis_url: str) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("%s starting", service)
    # Both cancelled below, always.
    helpers = [
        asyncio.create_task(gctune.run(), name=f"{service}:gc"),
        asyncio.create_task(loopwatch.run(), name=f"{service}:loopwatch"),
    ]
    try:
        await body(redis_url, stop)
    finally:
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
    log.info("%s stopped", service)
    return 0
