"""What the relay leaves behind an event (issue 20): the captions streams and its state kept
REACHLIVE_RETENTION_DAYS after the end (the audio an hour), and per task the usage counters
(words of its captions, KWIKmotion session seconds) committed with the captions, so a session
that dropped and replayed audio counts every word once."""

from __future__ import annotations

import time

import pytest
import redis

from emulators.kwikmotion import KwikmotionEmulator
from emulators.registry import make_event
from services.relay.outputs import parse_usage
from shared import keys, registry
from tests.relay.conftest import RelayRunner
from tests.relay.helpers import config, feed, finalize_commands, jfk_pcm, open_session, responses, session_acked
from tests.support.polling import eventually as wait_for

DAYS = 2


def _words(redis_client: redis.Redis, event_id: str, task_id: str) -> int:
    """Text items of the task's captions responses, as stored."""
    return sum(
        1
        for r in responses(redis_client, event_id, task_id)
        if r["type"] == "captions"
        for i in r["alternatives"][0]["items"]
        if i["kind"] == "text"
    )


@pytest.mark.parametrize("fault", [{}, {"drop_after_chunks": 2}], ids=["clean", "drop"])
async def test_retention_and_usage_counters(
    redis_client: redis.Redis,
    emu: KwikmotionEmulator,
    relays: RelayRunner,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    fault: dict[str, int],
) -> None:
    monkeypatch.setenv("REACHLIVE_RETENTION_DAYS", str(DAYS))
    emu.faults.update(fault)
    pcm = jfk_pcm()
    ev = make_event(redis_client, "300", targets=("fr",))
    feed(redis_client, ev.id, pcm)
    relays.start(config(redis_url, emu.url))
    open_session(redis_client, ev.id)
    await wait_for(lambda: session_acked(redis_client) and len(finalize_commands(redis_client)) == 2)
    assert len(emu.started_sessions()) == (2 if fault else 1)

    event = registry.read_event_sync(redis_client, ev.id)
    assert event is not None
    kept = DAYS * 86400
    for task_id in ev.task_ids:
        until = event.end + event.post_end + kept - time.time()
        assert abs(redis_client.ttl(keys.captions(ev.id, task_id)) - until) <= 5
        counters = redis_client.hget(keys.relay_state(ev.id), keys.relay_usage_field(task_id))
        words, seconds = parse_usage(counters.decode())
        assert words == _words(redis_client, ev.id, task_id) > 0
        # KWIKmotion sessions open (the emulator answers at once: the stored audio goes as fast
        # as the unanswered-chunk bound lets it).
        assert 0 < seconds < 60
    assert kept - 5 <= redis_client.ttl(keys.relay_state(ev.id)) <= kept
    assert 0 < redis_client.ttl(keys.audio(ev.id)) <= keys.AUDIO_RETENTION_AFTER_END_SECONDS
