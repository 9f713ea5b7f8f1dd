"""Play one event through a running stack, as Kaltura would, and return what happened: order,
restream the sample to every feature, end the event's window once the media is over (the end of
stream and READY follow the window, never the media's silence), collect what the clients read."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

from emulators.media import JFK_FLAC
from services.demo import scenario
from services.demo.scenario import EventRun
from services.demo.stack import Stack


async def play(
    stack: Stack,
    *,
    translations: tuple[str, ...] = ("French",),
    during: Callable[[EventRun], Awaitable[None]] | None = None,
    duration: float = 600,
    timeout: float = 90,
    expect_final: bool = True,
    end_event: bool = True,
    **restream_options: object,
) -> EventRun:
    admin = stack.kaltura
    run = await asyncio.to_thread(scenario.order, admin, translations=translations, duration=duration)
    await asyncio.to_thread(scenario.wait_scheduled, admin, run, 60)
    stop = threading.Event()
    clients = scenario.start_clients(run, gateway_urls=stack.gateway_urls(), ping_interval=1.0)
    try:
        await asyncio.sleep(0.3)
        threads = scenario.start_restreams(run, JFK_FLAC, stop, **restream_options)
        if during is not None:
            await during(run)
        for t in threads:
            await asyncio.to_thread(t.join, 60)
        if end_event:
            # The media is over and Kaltura's admin ends the event: its window closes now. The
            # publishers going away alone only paused it (docs/design.md section 3).
            await asyncio.to_thread(admin.end_window, run.event_id)
        await scenario.wait_clients(run, timeout)
    finally:
        stop.set()
        for c in clients:
            c.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
    if expect_final:
        await asyncio.to_thread(scenario.wait_final, admin, run, 60)
    return run
