"""The demo scenario and its variants, end to end: an order in (emulated) Kaltura becomes live
captions in (emulated) Kaltura's caption client, from real audio pushed over RTMP."""

from __future__ import annotations

import asyncio
import time

from emulators.caption_client import CaptionClient
from services.demo import scenario
from services.demo.scenario import EventRun
from services.demo.stack import Stack
from tests.e2e.conftest import REFERENCE, assert_timings_non_decreasing, caption_words, words
from tests.e2e.play import play


def describe(client: CaptionClient, kind: str) -> str:
    """What the client received, one line per response: enough to tell a repeat on resume
    (same id, a later connection) from a caption built twice (new id)."""
    lines = []
    for r in client.received:
        resp = r.response["response"]
        if resp["type"] == kind:
            lines.append(
                f"conn {r.connection} {resp['id'][:8]} {resp['start']:.2f}-{resp['end']:.2f} "
                f"{' '.join(caption_words([resp]))}"
            )
    return "\n".join(lines)


def resume_repeats(client: CaptionClient) -> list[str]:
    """The ids a resumed connection repeated, checked against what docs/design.md section 5 allows: after
    a gateway replica dies, the frames it wrote after its last pong come again, with the same
    ids, first on the next connection. A repeat anywhere else (a new id, the same connection,
    after a new frame) is a defect."""
    first_seen: dict[str, int] = {}
    repeated: list[str] = []
    fresh_on: set[int] = set()  # connections that already delivered a new frame
    for r in client.received:
        rid = r.response["response"]["id"]
        if rid not in first_seen:
            first_seen[rid] = r.connection
            fresh_on.add(r.connection)
            continue
        assert first_seen[rid] < r.connection, f"{rid} repeated on the same connection"
        assert r.connection not in fresh_on, f"{rid} repeated after new frames on connection {r.connection}"
        repeated.append(rid)
    return repeated


def check_complete(run: EventRun, task_id: str, kind: str = "captions", *, max_repeats: int = 0) -> None:
    """Every word of the reference once, in order, with non-decreasing timings, then the end of
    stream. ``max_repeats``: frames a resume may repeat (a gateway killed mid-event), dropped by
    id before the checks, as a client keyed on the response id would."""
    client = run.clients[task_id]
    assert client.errors == [], client.errors
    repeated = resume_repeats(client)
    assert len(repeated) <= max_repeats, describe(client, kind)
    seen: set[str] = set()
    responses = []
    for r in client.responses(kind):
        if r["id"] not in seen:
            seen.add(r["id"])
            responses.append(r)
    assert caption_words(responses) == REFERENCE, describe(client, kind)
    assert_timings_non_decreasing(responses)
    assert client.responses()[-1]["is_end_of_stream"]


async def test_demo_scenario_captions_and_translation(stack: Stack) -> None:
    run = await play(stack)
    caption_task, translation_task = run.task_ids
    check_complete(run, caption_task, "captions")
    check_complete(run, caption_task, "transcript")
    translated = run.clients[translation_task].responses("captions")
    assert translated and all(r["service_type"] == "translation" for r in translated)
    assert {r["language_code"][:2] for r in translated} == {"fr"}
    assert_timings_non_decreasing(translated)
    for r in run.clients[caption_task].responses():
        assert r["service_type"] == "transcription" and r["language_code"].startswith("en")
    assert run.statuses == {caption_task: scenario.READY, translation_task: scenario.READY}


async def test_two_events_at_once(stack: Stack) -> None:
    first, second = await asyncio.gather(play(stack, translations=()), play(stack, translations=("Spanish",)))
    check_complete(first, first.task_ids[0])
    check_complete(second, second.task_ids[0])
    assert set(first.statuses.values()) == set(second.statuses.values()) == {scenario.READY}


async def test_an_order_aborted_mid_event_stops_only_its_captions(stack: Stack) -> None:
    async def abort_translation(run: EventRun) -> None:
        await asyncio.sleep(5)
        await asyncio.to_thread(stack.kaltura.abort, run.task_ids[1])

    run = await play(stack, translations=("French",), during=abort_translation)
    caption_task, aborted = run.task_ids
    check_complete(run, caption_task)
    aborted_client = run.clients[aborted]
    assert not aborted_client.done.is_set(), "the aborted task got an end of stream"
    assert aborted_client.fatal, "the aborted task's connection was not refused"
    assert run.statuses[aborted] == scenario.ABORTED
    assert run.statuses[caption_task] == scenario.READY


async def test_an_event_whose_window_ends_while_media_flows(stack: Stack) -> None:
    async def end_window_now(run: EventRun) -> None:
        await asyncio.sleep(5)
        now = time.time()
        await asyncio.to_thread(stack.kaltura.move_window, run.event_id, now - 60, now)

    run = await play(stack, translations=(), during=end_window_now, end_event=False)
    task = run.task_ids[0]
    client = run.clients[task]
    assert client.errors == []
    got = caption_words(client.responses("captions"))
    assert 0 < len(got) < len(REFERENCE)
    assert got == REFERENCE[: len(got)], "captions before the window's end are not the reference prefix"
    assert client.responses()[-1]["is_end_of_stream"]
    assert run.statuses[task] == scenario.READY


def test_reference_words_are_the_sample_transcript() -> None:
    assert REFERENCE[:4] == ["and", "so", "my", "fellow"] and words("Country.") == ["country"]
