"""Fixtures: a real in-process gateway on a free port over the test's embedded Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from services.gateway.server import Gateway
from shared import probes
from shared.child import free_port
from shared.settings import GatewaySettings, load

GatewayFactory = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def start_gateway(redis_url: str) -> AsyncIterator[GatewayFactory]:
    """Start gateways with setting overrides; each is drained at the end of the test."""
    started: list[Gateway] = []

    async def start(caption_types: str = "transcript,captions", **overrides: object) -> Gateway:
        params: dict[str, object] = {"ping_interval_seconds": 5.0, "ack_interval_seconds": 0.2, "drain_seconds": 2.0}
        params.update(overrides)
        settings = load(GatewaySettings, **params)
        gw = Gateway(redis_url, settings, caption_types)
        await gw.start("127.0.0.1", 0)
        started.append(gw)
        return gw

    try:
        yield start
    finally:
        leftovers: dict[int, list[str]] = {}
        for gw in started:
            try:
                if not gw.draining:
                    await gw.drain()
            finally:
                # Whatever a drain leaves running would only be cancelled when the test's event
                # loop closes (where a stuck one hangs the run): fail the test here instead.
                if gw.leftovers():
                    leftovers[gw.port] = gw.leftovers()
        assert not leftovers, f"gateway tasks still running after drain: {leftovers}"


def ws_url(gw: Gateway, query: str = "") -> str:
    return f"ws://127.0.0.1:{gw.port}/v1/captions{query}"


def serve_probes(gw: Gateway) -> int:
    """Serve the gateway's ``/metrics``, ``/readyz``, ``/livez`` on a metrics port of their own,
    as ``reachlive gateway`` does (shared.runtime); returns that port."""
    return probes.serve(gw.probe, free_port(), "127.0.0.1")
