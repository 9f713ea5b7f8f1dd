"""``reachlive demo``: the main job end to end on one machine.

A Kaltura customer orders live captions (English) and a live translation (French) for a
scheduled event; reachlive provisions them; "Kaltura" restreams the speech sample over RTMP in
real time; captions and translations arrive live on Kaltura's caption WebSocket client; at the
end the tasks are READY in Kaltura. Embedded Redis and the emulators by default; real
Kaltura/KWIKmotion when their REACHLIVE_* settings are given (see docs/services.md, "Demo on real
accounts").
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import threading
import time
from pathlib import Path

from emulators.caption_client import Received
from emulators.media import JFK_FLAC, JFK_TEXT
from services.demo import real_kaltura, scenario
from services.demo.stack import Stack
from shared.cli import plain
from shared.logs import setup_logging

STATUS = {1: "PENDING", 2: "READY", 3: "PROCESSING", 6: "ERROR", 7: "ABORTED", 9: "SCHEDULED"}


def _say(text: str) -> None:
    print(text, flush=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="reachlive demo", description=plain(__doc__))
    parser.add_argument("--media", type=Path, default=JFK_FLAC, help="media file to restream (default: JFK sample)")
    parser.add_argument("--translate", default="French", help="comma list of translation languages (Kaltura names)")
    parser.add_argument("--timeout", type=float, default=120, help="give up after this many seconds")
    parser.add_argument("--keep-logs", action="store_true", help="keep the services' logs directory")
    args = parser.parse_args(argv)
    setup_logging("text", "WARNING")
    logs = Path(tempfile.mkdtemp(prefix="reachlive-demo-logs-"))
    with Stack(data_dir=Path(".reachlive"), log_dir=logs) as stack:
        ok = asyncio.run(_play(stack, args))
        if not ok:
            _say(f"\nThe demo did not complete; service logs are in {logs}")
            return 1
    _say(f"(service logs: {logs})" if args.keep_logs else "")
    return 0


async def _play(stack: Stack, args: argparse.Namespace) -> bool:
    how = {
        "audio": "words of its reference recording, found in the audio it hears",
        "time": "its reference transcript replayed in step with the audio",
    }
    engine = (
        "a real KWIKmotion account"
        if stack.real_kwik
        else f"the KWIKmotion EMULATOR ({how[stack.kwik_emulator.align]})"
    )
    side = "a real Kaltura partner" if stack.real_kaltura else "the Kaltura EMULATOR"
    _say(f"reachlive demo: {side} + {engine}")
    _say(f"  redis {stack.redis_url}   ingest {stack.ingest_url}   gateway {stack.gateway_urls()[0]}\n")
    t0 = time.monotonic()
    if stack.real_kaltura:
        _say(
            "Waiting for a live caption order on your Kaltura partner to be SCHEDULED by reachlive "
            "(order it in KMC / REACH for a scheduled event) ..."
        )
        run = await asyncio.to_thread(real_kaltura.wait_for_order, args.timeout)
        if run is None:
            _say("  no SCHEDULED live caption task appeared")
            return False
    else:
        admin = stack.kaltura
        translations = tuple(t.strip() for t in args.translate.split(",") if t.strip())
        run = await asyncio.to_thread(scenario.order, admin, translations=translations)
        _say(
            f"Kaltura: scheduled event {run.event_id} ordered with tasks "
            + ", ".join(
                f"{t} ({'captions English' if i == 0 else 'translation ' + translations[i - 1]})"
                for i, t in enumerate(run.task_ids)
            )
        )
        try:
            await asyncio.to_thread(scenario.wait_scheduled, admin, run, 60)
        except RuntimeError as exc:
            _say(f"  {exc}")
            return False
    _say(f"reachlive: all tasks SCHEDULED after {time.monotonic() - t0:.1f}s; endpoints sent to Kaltura:")
    for task_id in run.task_ids:
        f = run.features[task_id]
        _say(f"  task {task_id}: mediaUrl {f['mediaUrl']}  captionUrl {f['captionUrl']}  (key/token hidden)")
    _say(f"\nKaltura: restreaming {args.media.name} in real time to each feature; its caption client reads:\n")
    started = time.monotonic()

    def show(task_id: str, item: Received) -> None:
        r = item.response["response"]
        if r["type"] != "captions" and not r["is_end_of_stream"]:
            return
        label = "captions   " if r["service_type"] == "transcription" else "translation"
        text = r["alternatives"][0]["transcript"].replace("\n", " / ") if r["alternatives"] else ""
        if r["is_end_of_stream"]:
            text = "(end of stream)"
        _say(
            f"  [+{time.monotonic() - started:5.1f}s] {label} {r['language_code']:<6} "
            f"{r['start']:6.2f}–{r['end']:6.2f}s  {text}"
        )

    stop = threading.Event()
    clients = scenario.start_clients(run, show, ping_interval=20)
    await asyncio.sleep(0.5)
    threads = scenario.start_restreams(run, args.media, stop)
    if not stack.real_kaltura:
        for thread in threads:
            await asyncio.to_thread(thread.join, args.timeout)
        # The media is over: the organiser ends the event, so its window closes now. A publisher
        # that goes away alone only pauses an event; its end follows the window (docs/design.md section 3).
        _say("\nKaltura: the media is over; the event's organiser ends it now")
        await asyncio.to_thread(stack.kaltura.end_window, run.event_id)
    done = await scenario.wait_clients(run, args.timeout)
    stop.set()
    for task in clients:
        task.cancel()
    await asyncio.gather(*clients, return_exceptions=True)
    if not done:
        _say("  timed out waiting for the end-of-stream responses")
        return False
    if stack.real_kaltura:
        statuses = await asyncio.to_thread(real_kaltura.wait_final, stack.redis_url, run, 60)
    else:
        statuses = await asyncio.to_thread(scenario.wait_final, stack.kaltura, run, 60)
    _say("\nKaltura: final task statuses: " + ", ".join(f"{t} {STATUS.get(s, s)}" for t, s in statuses.items()))
    words = " ".join(
        r["alternatives"][0]["transcript"].replace("\n", " ")
        for r in run.clients[run.task_ids[0]].responses("captions")
    )
    _say(f"\nReference transcript: {JFK_TEXT}\nCaptions received:    {words}")
    bad = [e for c in run.clients.values() for e in c.errors]
    if bad:
        _say(f"schema violations: {bad[:5]}")
    return all(s == scenario.READY for s in statuses.values()) and not bad


if __name__ == "__main__":
    logging.basicConfig()
    sys.exit(main(sys.argv[1:]))
