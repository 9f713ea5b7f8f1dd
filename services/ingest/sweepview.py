"""What the end-of-stream sweep knows of each open event, re-read only when it may matter.

The sweep runs several times a second over every open event (``IngestServer.sweep_once``);
reading every event's record and last publisher time on each run cost four commands per event
per second, the ingest's largest share after its audio writes (issue 22). A record is re-read
when it is ``REFRESH_SECONDS`` old; when the window index (``keys.EVENTS_BY_CLOSE``, written with
every window: one ``ZMSCORE`` per run for all the events) says its window moved; and on *every*
run while it says the event may be over (its window closed, cancelled, ended by an operator,
gone). So the sweep never acts on a stale record, a window moved earlier is seen at the next run
(Kaltura's event ending early, the common case), and a cancellation or ``reachlive admin
end-media`` at most ``REFRESH_SECONDS`` later. The publishers' own re-check of their event runs at
that period too (``VALIDATE_SECONDS``).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from services.ingest.coordinator import Coordinator
from shared import keys, registry
from shared.registry import EventRecord

REFRESH_SECONDS = 5.0


@dataclass(slots=True)
class _Known:
    read_at: float
    record: EventRecord | None
    alive: float  # epoch of the event's last publisher activity (0: never)


class SweepView:
    def __init__(self, client: aioredis.Redis, coord: Coordinator, margin_seconds: float) -> None:
        self.client = client
        self.coord = coord
        self.margin = margin_seconds
        self._known: dict[str, _Known] = {}

    def _stale(self, event_id: str, now: float, indexed_close: float | None) -> bool:
        known = self._known.get(event_id)
        if known is None or now - known.read_at >= REFRESH_SECONDS:
            return True
        record = known.record
        if record is None or record.status in ("cancelled", "ended") or now > record.window(self.margin)[1]:
            return True
        # The index holds the window's close without the margin (end + postEndTime).
        return indexed_close is not None and abs(indexed_close - record.window()[1]) > 1e-3

    async def read(self, active: list[str], now: float) -> list[tuple[EventRecord | None, float]]:
        """(record, last alive) of each of ``active``, in order: one ZMSCORE, then the stale
        ones read in two round trips for all of them."""
        wanted = set(active)
        self._known = {e: k for e, k in self._known.items() if e in wanted}
        closes = await self.client.zmscore(keys.EVENTS_BY_CLOSE, active) if active else []
        stale = [e for e, close in zip(active, closes, strict=True) if self._stale(e, now, close)]
        if stale:
            records = await registry.read_events(self.client, stale)
            alive = await self.coord.last_alive(stale)
            for event_id, record, seen in zip(stale, records, alive, strict=True):
                self._known[event_id] = _Known(now, record, seen)
        return [(self._known[e].record, self._known[e].alive) for e in active]
