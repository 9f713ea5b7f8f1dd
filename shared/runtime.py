"""The common shape of every entry point (docs/design.md section 8): settings → logging → metrics and
probes server → explicit Redis → build → run → drain on SIGTERM/SIGINT.

Issue 18: a single service never starts an embedded Redis (only ``reachlive all`` and
``reachlive demo`` do): an empty ``REACHLIVE_REDIS_URL`` is refused with one line, since a
misspelt variable used to give each pod a private Redis of its own, and every pod reported ready.
A ``REACHLIVE_*`` variable that no setting reads is reported at start with the nearest name.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Mapping

from pydantic_settings import BaseSettings

from shared import gctune, loopwatch, probes, settings
from shared.logs import setup_logging
from shared.settings import ENV_PREFIX, CommonSettings, SettingsError, load

log = logging.getLogger(__name__)

# A service body: given the Redis URL and an event set on SIGTERM/SIGINT, runs until the event
# is set, then drains and returns.
ServiceMain = Callable[[str, asyncio.Event], Awaitable[None]]

REDIS_REQUIRED = (
    "REACHLIVE_REDIS_URL is empty: set it to the Redis all services share (e.g. redis://redis:6379/0); "
    "only `reachlive all` and `reachlive demo` start an embedded Redis"
)


def known_variables() -> set[str]:
    """Every ``REACHLIVE_*`` name a settings class of shared/settings.py reads."""
    names: set[str] = set()
    for obj in vars(settings).values():
        if isinstance(obj, type) and issubclass(obj, BaseSettings) and obj is not BaseSettings:
            prefix = obj.model_config.get("env_prefix", "")
            names |= {f"{prefix}{field}".upper() for field in obj.model_fields}
    return names


def unknown_variables(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """``REACHLIVE_*`` variables no setting reads, each with the nearest real name (or None)."""
    known = known_variables()
    # Compared without the common prefix, which would make every name look alike.
    tails = {name.removeprefix(ENV_PREFIX): name for name in known}
    out = []
    for name in sorted(environ):
        upper = name.upper()
        if upper.startswith(ENV_PREFIX) and upper not in known:
            near = difflib.get_close_matches(upper.removeprefix(ENV_PREFIX), sorted(tails), n=1, cutoff=0.6)
            out.append((name, tails[near[0]] if near else None))
    return out


def warn_unknown_variables(environ: Mapping[str, str] | None = None) -> None:
    for name, near in unknown_variables(os.environ if environ is None else environ):
        hint = f"; did you mean {near}?" if near else ""
        log.warning("%s is not a reachlive setting and is ignored%s", name, hint, extra={"variable": name})


def prepare(service: str) -> CommonSettings:
    """Load the common settings, configure logging and report unknown variables (SettingsError
    propagates to the CLI)."""
    common = load(CommonSettings)
    setup_logging(common.log_format, common.log_level, service)
    warn_unknown_variables()
    return common


def require_redis(common: CommonSettings) -> str:
    """The Redis URL of a single service: never empty (SettingsError, one line, exit 2)."""
    if not common.redis_url:
        raise SettingsError(REDIS_REQUIRED)
    return common.redis_url


def run_async_service(service: str, body: ServiceMain, *, metrics: bool = True) -> int:
    common = prepare(service)
    redis_url = require_redis(common)
    probe = probes.install(service)
    if metrics:
        probes.serve(probe, common.metrics_port, common.metrics_host)
    return asyncio.run(_main(service, body, redis_url, probe))


async def _main(service: str, body: ServiceMain, redis_url: str, probe: probes.Probe) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("%s starting", service)
    # All cancelled below, always.
    helpers = [
        asyncio.create_task(gctune.run(), name=f"{service}:gc"),
        asyncio.create_task(loopwatch.run(), name=f"{service}:loopwatch"),
        # /readyz and /livez: the loop turns and Redis answers (shared.probes).
        asyncio.create_task(probes.watch(probe, redis_url), name=f"{service}:probes"),
    ]
    try:
        await body(redis_url, stop)
    finally:
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
    log.info("%s stopped", service)
    return 0
