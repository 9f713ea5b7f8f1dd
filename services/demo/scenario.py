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
from emulators.restreamer import RestreamStats, late_restream, publish_url, restream, restream_with_gap

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
    standbys (docs/design.md section 2). ``standby=False`` publishes to the first feature only."""
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


# ---------------------------------------------------------------------------------------------- what real events bring
# (issue 16) New helpers only: the ones above keep their behaviour.


def order_late(
    admin: KalturaAdmin, run: EventRun, target: str | None = "German", *, source: str = "English", **order: Any
) -> str:
    """The customer orders one more task for the (live) event: a translation into ``target``, or
    captions when ``target`` is None. The task joins ``run.task_ids``; its feature appears in
    ``run.features`` once ``wait_scheduled`` (or ``admin.features``) is read again."""
    feature = 11 if target else 8
    task_id = admin.add_task(run.event_id, feature=feature, source_language=source, target_language=target, **order)
    run.task_ids.append(task_id)
    return task_id


def start_late_clients(
    run: EventRun,
    task_ids: list[str],
    on_response: Callable[[str, Received], None] | None = None,
    gateway_urls: list[str] | None = None,
    **options: Any,
) -> list[asyncio.Task[None]]:
    """``start_clients`` for some tasks only (a late order's), once ``run.features`` has them."""
    view = EventRun(event_id=run.event_id, task_ids=list(task_ids), features=run.features)
    tasks = start_clients(view, on_response, gateway_urls, **options)
    run.clients.update(view.clients)
    return tasks


def _restream_threads(
    run: EventRun, task_ids: list[str], work: Callable[[str], list[RestreamStats]], name: str
) -> list[threading.Thread]:
    threads = []
    for task_id in task_ids:
        feature = run.features[task_id]
        url = publish_url(feature["mediaUrl"], feature["mediaKey"])

        def target(url: str = url) -> None:
            run.restreams.extend(work(url))

        thread = threading.Thread(target=target, name=f"{name}-{task_id}", daemon=True)
        thread.start()
        threads.append(thread)
    return threads


def start_restreams_with_gap(
    run: EventRun,
    source: Path,
    stop: threading.Event,
    *,
    pause_at: float,
    pause_for: float,
    standby: bool = True,
    **options: Any,
) -> list[threading.Thread]:
    """The broadcaster's encoder restarts mid-event: as ``start_restreams``, but every feature's
    restream publishes the source up to ``pause_at`` (source seconds), closes its RTMP
    connection, waits ``pause_for`` seconds and publishes the rest on a new connection to the
    same endpoint, timestamps from 0 again (Kaltura's restream reconnecting). Both parts' stats
    go to ``run.restreams``. ``options`` as ``restream_with_gap`` (``start_offset``, ``realtime``, ...)."""
    task_ids = run.task_ids[: None if standby else 1]
    return _restream_threads(
        run,
        task_ids,
        lambda url: restream_with_gap(source, url, pause_at, pause_for, stop=stop, **options),
        "restream-gap",
    )


def start_late_restreams(
    run: EventRun,
    source: Path,
    stop: threading.Event,
    task_ids: list[str],
    *,
    after: float = 0.0,
    start_offset: float = 0.0,
    **options: Any,
) -> list[threading.Thread]:
    """Kaltura restreams to a late order's feature too: after ``after`` seconds, publish to each
    of ``task_ids``' features (``run.features`` must have them) from source second
    ``start_offset``, the live media of that moment, e.g. the seconds since the other
    restreams started. Stats go to ``run.restreams``."""

    def work(url: str) -> list[RestreamStats]:
        stats = late_restream(source, url, after, start_offset=start_offset, stop=stop, **options)
        return [stats] if stats is not None else []

    return _restream_threads(run, list(task_ids), work, "restream-late")
