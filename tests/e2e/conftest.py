"""Whole-pipeline fixtures and checks: what Kaltura's caption client received, judged against
the reference transcript of the speech sample."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from emulators.media import JFK_TEXT
from services.demo.stack import Stack


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


REFERENCE = words(JFK_TEXT)


def caption_words(responses: list[dict]) -> list[str]:
    """The text items of the responses, in the order received, normalised."""
    out: list[str] = []
    for r in responses:
        for alt in r["alternatives"][:1]:
            out += [w for i in alt["items"] if i["kind"] == "text" for w in words(i["value"])]
    return out


def assert_timings_non_decreasing(responses: list[dict]) -> None:
    last_end = 0.0
    for r in responses:
        assert r["start"] >= last_end - 1e-6, f"response at {r['start']} starts before the previous end {last_end}"
        items = r["alternatives"][0]["items"] if r["alternatives"] else []
        starts = [i["start"] for i in items]
        assert starts == sorted(starts)
        last_end = max(last_end, r["end"])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("e2e")
    # A small window margin so that moving an event's end to "now" ends its media at once.
    env = {"REACHLIVE_INGEST_WINDOW_MARGIN_SECONDS": "1"}
    with Stack(data_dir=base / "data", log_dir=base / "logs", env=env) as s:
        yield s


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.path):
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.timeout(300))
