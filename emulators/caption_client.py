"""The Kaltura live side, caption half: the client Kaltura runs against a vendor's captionUrl.

It does what the seed says Kaltura's client does: connects with the captionToken, pings (at
least every 10 minutes; 60 s by default, like the known vendor client of facts.md), reconnects
with exponential backoff whenever the connection drops before the final response, and stops
at the ``is_end_of_stream`` response or a non-retryable close. Every response is checked
against the seed's schema and recorded with its arrival time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import websockets
from websockets.asyncio.client import ClientConnection, connect

from emulators.caption_schema import validate_response

log = logging.getLogger(__name__)

# Closes after which reconnecting cannot help: bad/revoked token, policy.
NON_RETRYABLE = frozenset({1008, 4001, 4003, 4401, 4403})


@dataclass
class Received:
    response: dict[str, Any]
    at: float  # epoch seconds when it arrived
    connection: int  # which connection (1-based) delivered it


@dataclass
class CaptionClient:
    url: str
    token: str
    transport: str = "header"  # header | query | message
    types: str = ""  # optional `types` query parameter
    ping_interval: float = 60.0
    backoff_initial: float = 0.2
    backoff_max: float = 5.0
    on_response: Callable[[Received], None] | None = None
    fallback_urls: list[str] = field(default_factory=list)  # other replicas, tried when url fails
    received: list[Received] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    closes: list[tuple[int | None, str]] = field(default_factory=list)
    connections: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)  # the end-of-stream response arrived
    finished: asyncio.Event = field(default_factory=asyncio.Event)  # run() returned (done, fatal or stopped)
    fatal: str = ""

    def responses(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [r.response["response"] for r in self.received if kind is None or r.response["response"]["type"] == kind]

    def _target(self, attempt: int) -> tuple[str, dict[str, str]]:
        urls = [self.url, *self.fallback_urls]
        base = urls[attempt % len(urls)]
        query: dict[str, str] = {}
        headers: dict[str, str] = {}
        if self.types:
            query["types"] = self.types
        if self.transport == "query":
            query["token"] = self.token
        elif self.transport == "header":
            headers["Authorization"] = f"Bearer {self.token}"
        sep = "&" if "?" in base else "?"
        return (f"{base}{sep}{urlencode(query)}" if query else base), headers

    async def run(self, stop: asyncio.Event | None = None) -> None:
        try:
            await self._run(stop or asyncio.Event())
        finally:
            self.finished.set()

    async def _run(self, stop: asyncio.Event) -> None:
        delay = self.backoff_initial
        failures = 0  # consecutive connection failures: rotate through the fallback URLs
        while not self.done.is_set() and not stop.is_set() and not self.fatal:
            url, headers = self._target(failures)
            try:
                async with connect(url, additional_headers=headers, ping_interval=None, open_timeout=10) as ws:
                    self.connections += 1
                    delay = self.backoff_initial
                    failures = 0
                    if self.transport == "message":
                        await ws.send(json.dumps({"token": self.token}))
                    await self._session(ws, stop)
            except websockets.ConnectionClosed as exc:
                self._closed(exc.rcvd.code if exc.rcvd else None, exc.rcvd.reason if exc.rcvd else "dropped")
            except (OSError, websockets.InvalidHandshake, TimeoutError) as exc:
                self.closes.append((None, f"connect failed: {exc}"))
                failures += 1
            if self.done.is_set() or stop.is_set() or self.fatal:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay * (0.5 + random.random()))
            delay = min(delay * 2, self.backoff_max)

    def _closed(self, code: int | None, reason: str) -> None:
        self.closes.append((code, reason))
        if code in NON_RETRYABLE:
            self.fatal = f"closed {code}: {reason}"

    async def _session(self, ws: ClientConnection, stop: asyncio.Event) -> None:
        pinger = asyncio.create_task(self._ping(ws), name="caption-client-ping")
        stopper = asyncio.create_task(stop.wait(), name="caption-client-stop")
        try:
            while True:
                recv = asyncio.create_task(ws.recv(), name="caption-client-recv")
                finished, _ = await asyncio.wait({recv, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if recv not in finished:
                    recv.cancel()
                    await ws.close()
                    return
                self._handle(recv.result())
                if self.done.is_set():
                    # The seed: the server closes after the final response; wait for its close.
                    with contextlib.suppress(TimeoutError, websockets.ConnectionClosed):
                        await asyncio.wait_for(ws.wait_closed(), 5)
                    self.closes.append((ws.close_code, ws.close_reason or ""))
                    return
        finally:
            for task in (pinger, stopper):
                task.cancel()
            await asyncio.gather(pinger, stopper, return_exceptions=True)

    async def _ping(self, ws: ClientConnection) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                await asyncio.sleep(self.ping_interval)
                await ws.ping()

    def _handle(self, message: str | bytes) -> None:
        if isinstance(message, bytes) or message == "pong":
            return
        try:
            doc = json.loads(message)
        except ValueError:
            self.errors.append(f"not JSON: {message[:80]!r}")
            return
        problems = validate_response(doc)
        if problems:
            self.errors.extend(problems)
            return
        item = Received(response=doc, at=time.time(), connection=self.connections)
        self.received.append(item)
        if self.on_response:
            self.on_response(item)
        if doc["response"]["is_end_of_stream"]:
            self.done.set()
