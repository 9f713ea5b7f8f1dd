"""The operator's page with a real event: ordered in the Kaltura emulator, published over RTMP,
read by Kaltura's caption client. In a real headless Chromium (Debian's ``chromium``, driven by
playwright through ``executable_path``) the event shows on the status page and its captions
appear on the task's live page as they are committed; a screenshot of each page is kept for a
person (``.reachlive/screenshots/``). Over plain HTTP (no browser) the task's live view carries
exactly the captions Kaltura's client read, then the end of stream, and resumes from
``Last-Event-ID``. Without a Chromium (or playwright) the browser test reports a skip saying so."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from emulators.media import JFK_FLAC
from services.demo import scenario
from services.demo.scenario import EventRun
from services.demo.stack import Stack
from shared import keys
from shared.streams import CaptionEntry
from tests.console.conftest import CONSOLE_TOKEN
from tests.support.polling import wait_for

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / ".reachlive" / "screenshots"


def chromium() -> str | None:
    """Debian's chromium (``apt-get install chromium``; .ci/run installs it), or CHROMIUM_PATH."""
    given = os.environ.get("CHROMIUM_PATH", "")
    if given:
        return given if os.access(given, os.X_OK) else None
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)


# --- the plain-HTTP reader of a task's live view -----------------------------------------------
@dataclass
class Feed:
    """Server-Sent Events of ``/console/task/<id>/captions``, read on a thread until ``end``."""

    port: int
    task_id: str
    last_id: str = ""
    via_query: bool = False  # ?from= (the page's reopen) instead of Last-Event-ID (EventSource's)
    events: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # (name, id, data)
    error: BaseException | None = None

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name=f"sse-{self.task_id}", daemon=True)
        thread.start()
        return thread

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {CONSOLE_TOKEN}"}
        path = f"/console/task/{self.task_id}/captions"
        if self.last_id and self.via_query:
            path += f"?from={self.last_id}"
        elif self.last_id:
            headers["Last-Event-ID"] = self.last_id
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            assert resp.status == 200, resp.status
            assert resp.getheader("Content-Type", "").startswith("text/event-stream")
            name, entry_id, data = "message", "", ""
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                line = resp.readline()
                if not line:
                    return
                line = line.decode().rstrip("\n")
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("id: "):
                    entry_id = line[4:]
                elif line.startswith("data: "):
                    data = line[6:]
                elif line == "" and data:
                    self.events.append((name, entry_id, json.loads(data)))
                    if name == "end":
                        return
                    name, entry_id, data = "message", "", ""
        except BaseException as exc:
            self.error = exc
        finally:
            conn.close()

    def captions(self, kind: str = "captions") -> list[dict[str, Any]]:
        return [d for n, _, d in self.events if n == "caption" and d["type"] == kind]


# --- one live event for the module ------------------------------------------------------------
@dataclass
class Live:
    run: EventRun
    port: int
    feed: Feed
    feed_thread: threading.Thread
    clients_thread: threading.Thread
    stop: threading.Event
    publishers: list[threading.Thread]
    ended: bool = False

    def end(self, stack: Stack) -> None:
        """The media is over and Kaltura's admin ends the event (once): the end of stream follows."""
        if self.ended:
            return
        self.ended = True
        self.stop.set()
        for t in self.publishers:
            t.join(60)
        stack.kaltura.end_window(self.run.event_id)


def _clients(run: EventRun, stack: Stack, started: threading.Event) -> None:
    """Kaltura's caption clients, on a loop of their own (the browser test is synchronous)."""

    async def main() -> None:
        tasks = scenario.start_clients(run, gateway_urls=stack.gateway_urls(), ping_interval=1.0)
        started.set()
        try:
            await scenario.wait_clients(run, 240)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


@pytest.fixture(scope="module")
def live(stack: Stack) -> Iterator[Live]:
    admin = stack.kaltura
    port = stack.gateway_metrics_ports[0]
    run = scenario.order(admin, translations=("French",), duration=600)
    scenario.wait_scheduled(admin, run, 60)
    started = threading.Event()
    clients = threading.Thread(target=_clients, args=(run, stack, started), name="caption-clients", daemon=True)
    clients.start()
    assert started.wait(30)
    # The live view opened before any caption exists: it shows them as they come.
    feed = Feed(port, run.task_ids[0])
    wait_for(lambda: _answers(port), 60, 0.2, "the gateway's metrics port")
    feed_thread = feed.start()
    stop = threading.Event()
    # The sample twice over (about 22 s): live long enough for the browser to look at it.
    publishers = scenario.start_restreams(run, JFK_FLAC, stop, loops=2)
    live = Live(run, port, feed, feed_thread, clients, stop, publishers)
    try:
        yield live
    finally:
        live.end(stack)
        feed_thread.join(120)
        clients.join(120)


def _answers(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/console/")
        ok = conn.getresponse().status == 401  # the page is registered once the gateway runs
        conn.close()
        return ok
    except OSError:
        return False


def _screenshot(page: Any, tmp_path: Path, name: str) -> Path:
    """Into the test's tmp dir, copied to .reachlive/screenshots/ (a stable path to look at)."""
    shot = tmp_path / f"{name}.png"
    page.screenshot(path=str(shot), full_page=True)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    kept = SCREENSHOTS / shot.name
    shutil.copyfile(shot, kept)
    print(f"screenshot of the console's {name} page: {kept}")
    return kept


def test_the_live_event_and_its_captions_in_chromium(
    stack: Stack, live: Live, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = chromium()
    if path is None:
        given = os.environ.get("CHROMIUM_PATH", "")
        where = f"CHROMIUM_PATH={given} is not executable" if given else "no chromium on PATH"
        pytest.skip(f"no Chromium ({where}): `apt-get install chromium` (Debian's package; .ci/run installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install -e '.[dev]'")
    run = live.run
    caption_task, translation_task = run.task_ids
    base = f"http://127.0.0.1:{live.port}/console"
    # A caption whose text is markup: the page must show it as text, never run it (docs:
    # everything inserted with textContent). Its own stream, out of the way of the real event.
    hostile = '<img src=x onerror="window.pwned=1">alert(1)</script>'
    _hostile_task(stack, hostile)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            # The token once in the link: the page, and the URL without it.
            page.goto(f"{base}/?token={CONSOLE_TOKEN}")
            assert CONSOLE_TOKEN not in page.url
            event = page.locator(f'[data-event="{run.event_id}"]')
            event.wait_for(timeout=60_000)
            assert page.locator(f'[data-task-link="{caption_task}"]').count() == 1
            assert page.locator(f'[data-task-link="{translation_task}"]').count() == 1
            # The page refreshes itself: the relay's session and a publisher appear without a reload.
            page.wait_for_function(
                """id => {
                    const e = document.querySelector(`[data-event="${id}"]`);
                    return e && /relay relay-\\d/.test(e.textContent) && e.querySelector('[data-publisher]');
                }""",
                arg=run.event_id,
                timeout=90_000,
            )

            # The task's live captions: opened from the status page's link.
            task_page = context.new_page()
            task_page.on("pageerror", lambda exc: errors.append(str(exc)))
            task_page.goto(f"{base}/task/{caption_task}")
            task_page.locator("#captions li").first.wait_for(timeout=90_000)
            first = task_page.locator("#captions li").count()
            # ... and more arrive while it is open (pushed, no reload).
            task_page.wait_for_function(
                "n => document.querySelectorAll('#captions li').length > n",
                arg=first,
                timeout=90_000,
            )
            task_page.wait_for_function(
                "() => document.getElementById('captions').textContent.toLowerCase().includes('country')",
                timeout=90_000,
            )
            assert f"event {run.event_id}" in task_page.locator("#about").inner_text()

            status_shot = _screenshot(page, tmp_path, "status")
            task_shot = _screenshot(task_page, tmp_path, "task")

            # Markup in a caption is text.
            xss = context.new_page()
            xss.goto(f"{base}/task/{HOSTILE_TASK}")
            xss.locator("#captions li").first.wait_for(timeout=30_000)
            assert xss.locator("#captions li .text").first.inner_text() == hostile
            assert xss.locator("#captions img").count() == 0
            assert xss.evaluate("window.pwned") is None
            assert errors == [], errors
        finally:
            browser.close()
    with capsys.disabled():
        print(f"\nconsole screenshots: {status_shot} {task_shot}")
    assert status_shot.stat().st_size > 0 and task_shot.stat().st_size > 0


HOSTILE_TASK = "9990001"
HOSTILE_EVENT = "9990000"


def _hostile_task(stack: Stack, caption: str) -> None:
    client = redis.Redis.from_url(stack.redis_url)
    try:
        client.set(keys.task_event(HOSTILE_TASK), HOSTILE_EVENT, ex=600)
        client.hset(keys.task(HOSTILE_EVENT, HOSTILE_TASK), mapping={"kind": "caption", "language": "en"})
        client.expire(keys.task(HOSTILE_EVENT, HOSTILE_TASK), 600)
        response = {
            "response": {
                "id": "hostile",
                "type": "captions",
                "language_code": "<b>en</b>",
                "start": 0.0,
                "end": 1.0,
                "is_final": True,
                "alternatives": [{"transcript": caption}],
            }
        }
        key = keys.captions(HOSTILE_EVENT, HOSTILE_TASK)
        client.xadd(key, CaptionEntry(json.dumps(response), "captions", False, time.time()).fields())
        client.expire(key, 600)
    finally:
        client.close()


def test_the_live_view_carries_what_kalturas_client_reads(stack: Stack, live: Live) -> None:
    """Over plain HTTP: every captions response Kaltura's client read for the task, in order,
    once, then the end of stream; and a reconnect with Last-Event-ID resumes after it."""
    run = live.run
    feed = live.feed
    # Live: the view carries captions as they are committed (on its own when the browser test skipped).
    wait_for(lambda: "country" in " ".join(d["text"] for d in feed.captions()).lower(), 90, 0.2, "captions live")
    live.end(stack)
    live.feed_thread.join(180)
    live.clients_thread.join(180)
    assert feed.error is None, feed.error
    names = [n for n, _, _ in feed.events]
    assert names[0] == "task" and names[-1] == "end", names
    assert feed.events[0][2]["event"] == run.event_id

    client = run.clients[run.task_ids[0]]
    read: list[str] = []
    for r in client.received:
        rid = r.response["response"]["id"]
        if rid not in read:  # a resumed connection may repeat a frame (docs/design.md section 5)
            read.append(rid)
    streamed = [d["id"] for n, _, d in feed.events if n == "caption"]
    assert streamed == read
    words = " ".join(d["text"] for d in feed.captions()).lower()
    assert "country" in words
    ids = [i for n, i, _ in feed.events if n == "caption"]
    assert len(ids) == len(set(ids)) and all(ids)

    # The browser's reconnect (Last-Event-ID) and the page's reopen (?from=): only what came after.
    middle = len(ids) // 2
    for via_query in (False, True):
        again = Feed(live.port, run.task_ids[0], last_id=ids[middle], via_query=via_query)
        again.start().join(60)
        assert again.error is None, again.error
        assert [i for n, i, _ in again.events if n == "caption"] == ids[middle + 1 :]
        assert again.events[-1][0] == "end"
