"""``reachlive gateway``: settings → logging → metrics → Redis → serve → drain on SIGTERM."""

from __future__ import annotations

import argparse
import asyncio

from services.gateway.server import Gateway
from shared import probes
from shared.runtime import run_async_service
from shared.settings import CommonSettings, GatewaySettings, load, split_listen


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="reachlive gateway",
        description="Caption WebSocket for Kaltura's caption client on REACHLIVE_GATEWAY_LISTEN; /metrics, "
        "/readyz and /livez (and the operator's page /console/ when REACHLIVE_GATEWAY_CONSOLE_TOKEN is set) on "
        "REACHLIVE_METRICS_PORT only. Settings: REACHLIVE_GATEWAY_* (see shared/settings.py).",
    )
    parser.parse_args(argv)
    settings = load(GatewaySettings)
    common = load(CommonSettings)
    caption_types = common.caption_types

    async def body(redis_url: str, stop: asyncio.Event) -> None:
        token = settings.console_token.get_secret_value()
        if token:  # the operator's page on the metrics port; imported only then (it reads the registry)
            from services.console import web

            web.install(redis_url, token, common.metrics_port)
        host, port = split_listen(settings.listen)
        await Gateway(redis_url, settings, caption_types, probe=probes.current()).run(host, port, stop)

    return run_async_service("gateway", body)
