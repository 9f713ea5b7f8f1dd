"""The demo scenario and its variants, end to end: an order in (emulated) Kaltura becomes live
captions in (emulated) Kaltura's caption client, from real audio pushed over RTMP."""

from __future__ import annotations

import asyncio
import time

from services.demo import scenario
from services.demo.scenario import EventRun
from services.demo.stack import Stack
from tests.e2e.conftest import REFERENCE, assert_timings_non_decreasing, caption_words, words
from tests.e2e.play import play


def check_complete(run: EventRun, task_id: str, kind: str = "captions") -> None:
    client = run.clients[task_id]
    assert client.errors == [], client.errors
    responses = client.responses(kind)
    assert caption_words(responses) == REFERENCE
    assert_timings_non_decreasing(responses)
    assert len({r["id"] for r in responses}) == len(responses), "a response arrived twice"
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

    run = await play(stack, translations=(), during=end_window_now)
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
