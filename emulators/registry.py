"""What the poller's provision writes for a live event, for the tests and benches that run the
relay (or the gateway) without a poller: an event record that is live, a caption task and one
translation task per target language, in the registry's own format (shared.registry)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from shared.registry import LIVE_CAPTION, LIVE_TRANSLATION, EventRecord, TaskRecord, write_event, write_task


@dataclass
class Event:
    id: str
    caption_task: str
    translation_tasks: dict[str, str]  # language → task id

    @property
    def task_ids(self) -> list[str]:
        return [self.caption_task, *self.translation_tasks.values()]


def make_event(client: redis.Redis, event_id: str, source: str = "en", targets: tuple[str, ...] = ("fr",)) -> Event:
    now = time.time()
    write_event(
        client,
        EventRecord(
            id=event_id,
            start=now - 60,
            end=now + 3600,
            source_language=source,
            source_language_code=f"{source}-US",
            status="live",
            session="1",
        ),
    )
    cap = f"{event_id}1"
    write_task(
        client,
        TaskRecord(
            id=cap,
            event=event_id,
            feature=LIVE_CAPTION,
            kind="caption",
            language=source,
            language_code=f"{source}-US",
            max_chars=32,
            status=3,
            start=now - 60,
            end=now + 3600,
        ),
    )
    trans = {}
    for i, lang in enumerate(targets):
        tid = f"{event_id}{i + 2}"
        write_task(
            client,
            TaskRecord(
                id=tid,
                event=event_id,
                feature=LIVE_TRANSLATION,
                kind="translation",
                language=lang,
                language_code=lang,
                max_chars=32,
                status=3,
                start=now - 60,
                end=now + 3600,
            ),
        )
        trans[lang] = tid
    return Event(event_id, cap, trans)
