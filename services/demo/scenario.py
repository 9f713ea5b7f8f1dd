"""One live event played from Kaltura's side: order captions (and translations) in the Kaltura
emulator, wait for reachlive to provision them, restream the media to every feature's
``<mediaUrl>/<mediaKey>`` in real time, read every task's ``captionUrl`` with its token, and
collect what Kaltura's client received and the tasks' final statuses."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulators.caption_client import CaptionClient, Received
from emulators.kaltura_admin import KalturaAdmin
from emulators.restreamer import RestreamStats, publish_url, restream

PENDING, READY, ERROR, ABORTED, SCHEDULED, PROCESSING = 1, 2, 6, 7, 9, 3
FINAL = {READY, ERROR, ABORTED, 5}


@dataclass
class EventRun:
    event_id: str
    task_ids: list[str]
    features: dict[str, dict[str, Any]] = field(default_factory=dict)
    clients: dict[str, CaptionClient] = field(default_factory=dict)
    restreams: list[RestreamStats] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    scheduled_after: float = 0.0  # seconds from the order to every task SCHEDULED


def order(
    admin: KalturaAdmin,
    *,
    translations: tuple[str, ...] = ("French",),
    source: str = "English",
    duration: float = 600,
    profanity: bool = False,
    max_chars: int = 26,
    start_in: float = 0,
) -> EventRun:
    now = time.time()
    tasks = [{"feature": 8, "source_language": source}]
    tasks += [{"feature": 11, "source_language": source, "target_language": t} for t in translations]
    created = admin.create_event(
        summary="reachlive demo townhall",
        start=int(now + start_in),
        end=int(now + start_in + duration),
        tasks=tasks,
        reach_profile={"maxCharactersPerCaptionLine": max_chars, "enableProfanityRemoval": profanity},
    )
    return EventRun(event_id=str(created["event_id"]), task_ids=[str(t) for t in created["task_ids"]])


def wait_scheduled(admin: KalturaAdmin, run: EventRun, timeout: float = 60) -> None:
    started = time.monotonic()
    run.statuses = admin.wait_status(run.task_ids, {SCHEDULED, *FINAL}, timeout)
    run.scheduled_after = time.monotonic() - started
    bad = {t: s for t, s in run.statuses.items() if s != SCHEDULED}
    if bad:
        raise RuntimeError(f"tasks not SCHEDULED after {timeout}s: {bad}")
    run.features = admin.features(run.event_id)


def start_clients(
    run: EventRun,
    on_response: Callable[[str, Received], None] | None = None,
    gateway_urls: list[str] | None = None,
    **options: Any,
) -> list[asyncio.Task[None]]:
    tasks = []
    for task_id in run.task_ids:
        feature = run.features[task_id]
        client = CaptionClient(
            url=feature["captionUrl"],
            token=feature["captionToken"],
            on_response=(lambda r, t=task_id: on_response(t, r)) if on_response else None,
            fallback_urls=list(gateway_urls or []),
            **options,
        )
        run.clients[task_id] = client
        tasks.append(asyncio.create_task(client.run(), name=f"caption-client-{task_id}"))
    return tasks


def start_restreams(
    run: EventRun, source: Path, stop: threading.Event, *, standby: bool = True, **options: Any
) -> list[threading.Thread]:
    """Kaltura restreams to every feature's endpoint; the first is the primary, the rest are hot
    standbys (DESIGN section 2). ``standby=False`` publishes to the first feature only."""
    threads = []
    for task_id in run.task_ids[: None if standby else 1]:
        feature = run.features[task_id]
        url = publish_url(feature["mediaUrl"], feature["mediaKey"])

        def work(url: str = url) -> None:
            run.restreams.append(restream(source, url, stop=stop, **options))

        thread = threading.Thread(target=work, name=f"restream-{task_id}", daemon=True)
        thread.start()
        threads.append(thread)
    return threads


async def wait_clients(run: EventRun, timeout: float) -> bool:
    """Wait until every client has finished (end of stream, or refused for good); True if all did."""
    waits = [asyncio.create_task(c.finished.wait()) for c in run.clients.values()]
    _done, pending = await asyncio.wait(waits, timeout=timeout)
    for w in pending:
        w.cancel()
    return not pending


def wait_final(admin: KalturaAdmin, run: EventRun, timeout: float = 60) -> dict[str, int]:
    run.statuses = admin.wait_status(run.task_ids, FINAL, timeout)
    return run.statuses
