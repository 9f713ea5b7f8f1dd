"""The relay through Redis outages (issue 18), as a real process (``reachlive relay``) on a
dedicated redis-server with AOF (as production runs it) that the test stops and restarts with its
data, or freezes with SIGSTOP, in the middle of a live event, with the KWIKmotion emulator:

- the process does not exit, ends nothing, and keeps its one KWIKmotion session through the
  outage (the audio is sent once: results that came while Redis was down were held and committed
  when it returned, not re-transcribed);
- every word once, in order, then the end of stream; FINALIZE once per task, after Redis returned;
- ``/livez`` stays 200 while ``/readyz`` says 503, then 200 again;
- one log line when Redis is lost and one when it is back, no traceback, nothing at error level.

And a relay started while Redis is down: alive, not ready, no traceback loop, and it claims the
event once Redis is up. The feeder stands in for the ingest, which buffers its audio during an
outage: it writes the audio before the outage and the rest after it.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis

from emulators.media import JFK_TEXT
from emulators.registry import make_event
from shared import keys
from shared.child import Service, free_port
from tests.relay.helpers import (
    CHUNK_BYTES,
    check_audio,
    check_captions,
    feed_part,
    finalize_commands,
    jfk_pcm,
    open_session,
    relay_env,
    responses,
    session_acked,
)
from tests.support.outage import OutageRedis
from tests.support.polling import eventually as wait_for

pytestmark = pytest.mark.slow

OUTAGE_SECONDS = 5.0
REPLY_DELAY_SECONDS = 0.8  # KWIKmotion answers late: results arrive while Redis is down
HEALTH_LOGGER = "shared.redis_health"


@pytest.fixture
def outage_redis(tmp_path):
    server = OutageRedis(tmp_path)
    yield server
    server.stop()


def probe(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


async def aprobe(port: int, path: str) -> int:
    return await asyncio.to_thread(probe, port, path)


def start_relay(url: str, emu, tmp_path: Path) -> tuple[Service, int]:
    port = free_port()
    env = {**relay_env(url, emu.url, "ra"), "REACHLIVE_METRICS_PORT": str(port)}
    return Service(["relay"], env, tmp_path, name="relay"), port


def log_lines(relay: Service) -> list[dict]:
    out = []
    for line in relay.log().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            out.append({"level": "raw", "msg": line, "logger": ""})
    return out


def check_log(relay: Service, lost_line: str) -> None:
    """One line lost, one back (per process), no traceback, nothing at error level, no other
    warning line."""
    lines = log_lines(relay)
    health = [d["msg"] for d in lines if d.get("logger") == HEALTH_LOGGER and d["level"] in ("info", "warning")]
    assert [m.split(" (")[0].split(" after")[0] for m in health] == [lost_line, "redis back"], health
    assert not [d for d in lines if "exc" in d or "Traceback" in d["msg"]], "a traceback was logged"
    bad = [d["msg"] for d in lines if d["level"] in ("error", "critical", "raw")]
    assert not bad, bad
    warnings = [d["msg"] for d in lines if d["level"] == "warning" and d.get("logger") != HEALTH_LOGGER]
    assert not warnings, warnings


def word_figures(got: list[str], expected: list[str]) -> tuple[int, int]:
    """(words lost, words duplicated) of the captions against the reference."""
    lost = dup = 0
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=expected, b=got, autojunk=False).get_opcodes():
        if tag in ("delete", "replace"):
            lost += i2 - i1
        if tag in ("insert", "replace"):
            dup += j2 - j1
    return lost, dup


def caption_count(client: redis.Redis, ev) -> int:
    return sum(client.xlen(keys.captions(ev.id, t)) for t in ev.task_ids)


async def live_event_through_outage(outage_redis: OutageRedis, emu, tmp_path: Path, *, freeze: bool) -> dict:
    outage_redis.start()
    client = redis.Redis.from_url(outage_redis.url)
    pcm = jfk_pcm()
    split = 3 * CHUNK_BYTES  # three chunks before the outage, the rest after it
    ev = make_event(client, "700")
    emu.faults.update({"delay_seconds": REPLY_DELAY_SECONDS})
    relay, port = start_relay(outage_redis.url, emu, tmp_path)
    with relay:
        open_session(client, ev.id)
        feed_part(client, ev.id, pcm, 0, split)
        # Redis goes away while KWIKmotion still owes results: they arrive during the outage.
        await wait_for(lambda: emu.started_sessions() and len(emu.started_sessions()[0].chunks) >= 3, 30)
        await wait_for(lambda: caption_count(client, ev) > 0, 30)
        await wait_for(lambda: probe(port, "/readyz") == 200, 10)
        # Nothing can be written while Redis is away: any caption past these came after its return
        # (a frozen Redis may run a commit it had received on thaw; the retry finds it applied).
        before = caption_count(client, ev)
        client.close()
        (outage_redis.freeze if freeze else outage_redis.stop)()
        down_at = time.monotonic()
        await wait_for(lambda: probe(port, "/readyz") == 503, 15)
        while time.monotonic() - down_at < OUTAGE_SECONDS:
            assert relay.alive(), relay.log()[-3000:]
            assert await aprobe(port, "/livez") == 200  # an outage is not a wedged process
            assert await aprobe(port, "/readyz") == 503
            await asyncio.sleep(0.5)
        [rec] = emu.started_sessions()
        assert not rec.finished, "the KWIKmotion session ended during the outage"
        during = len(rec.chunks)

        (outage_redis.thaw if freeze else outage_redis.start)()
        back_at = time.monotonic()
        client = redis.Redis.from_url(outage_redis.url)
        await wait_for(lambda: caption_count(client, ev) > before, 30, 0.02)
        resumed = time.monotonic() - back_at
        assert finalize_commands(client) == []  # nothing finalised because of the outage
        # The ingest writes the audio it buffered, then the rest of the event, then its end.
        feed_part(client, ev.id, pcm, split, len(pcm), eos=True)
        await wait_for(lambda: session_acked(client) and len(finalize_commands(client)) >= len(ev.task_ids), 60)
        await wait_for(lambda: probe(port, "/readyz") == 200, 15)
        assert relay.alive()
        emu.faults.update({"delay_seconds": 0.0})

        sessions = emu.started_sessions()
        assert len(sessions) == 1, "the KWIKmotion session was not kept through the outage"
        assert sessions[0].audio == pcm, "audio sent twice or lost (results of the outage re-transcribed?)"
        check_audio(sessions, pcm)
        duration = len(pcm) / 32000
        caption_resp = responses(client, ev.id, ev.caption_task)
        got = " ".join(r["alternatives"][0]["transcript"] for r in caption_resp if r["type"] == "transcript").split()
        lost, dup = word_figures(got, JFK_TEXT.split())
        check_captions(caption_resp, duration, JFK_TEXT.split())
        check_captions(responses(client, ev.id, ev.translation_tasks["fr"]), duration)
        assert sorted(finalize_commands(client)) == sorted([t, "ready", ""] for t in ev.task_ids)
        client.close()
    check_log(relay, "redis lost")
    held = [d for d in log_lines(relay) if d["msg"] == "captions held during the redis outage committed"]
    assert held, "no result arrived during the outage: the test did not exercise the held commits"
    return {"resumed": resumed, "lost": lost, "dup": dup, "chunks_before_back": during}


async def test_redis_restart_mid_event(outage_redis, emu, tmp_path) -> None:
    f = await live_event_through_outage(outage_redis, emu, tmp_path, freeze=False)
    print(
        f"restart {OUTAGE_SECONDS:.0f} s: captions flowing {f['resumed']:.2f} s after Redis was back, "
        f"words lost {f['lost']}, duplicated {f['dup']}"
    )


async def test_redis_frozen_mid_event(outage_redis, emu, tmp_path) -> None:
    f = await live_event_through_outage(outage_redis, emu, tmp_path, freeze=True)
    print(
        f"freeze {OUTAGE_SECONDS:.0f} s: captions flowing {f['resumed']:.2f} s after the thaw, "
        f"words lost {f['lost']}, duplicated {f['dup']}"
    )


async def test_start_with_redis_down(outage_redis, emu, tmp_path) -> None:
    relay, port = start_relay(outage_redis.url, emu, tmp_path)  # nothing listens on the port yet
    with relay:
        await wait_for(lambda: probe(port, "/livez") == 200, 20)
        down_since = time.monotonic()
        while time.monotonic() - down_since < OUTAGE_SECONDS:
            assert relay.alive(), relay.log()[-3000:]
            assert await aprobe(port, "/livez") == 200
            assert await aprobe(port, "/readyz") == 503
            await asyncio.sleep(0.5)
        outage_redis.start()
        up_at = time.monotonic()
        await wait_for(lambda: probe(port, "/readyz") == 200, 20)
        ready = time.monotonic() - up_at
        client = redis.Redis.from_url(outage_redis.url)
        pcm = jfk_pcm()
        ev = make_event(client, "701")
        open_session(client, ev.id)
        feed_part(client, ev.id, pcm, 0, len(pcm), eos=True)
        await wait_for(lambda: session_acked(client) and len(finalize_commands(client)) >= len(ev.task_ids), 60)
        assert relay.alive()
        check_captions(responses(client, ev.id, ev.caption_task), len(pcm) / 32000, JFK_TEXT.split())
        assert sorted(finalize_commands(client)) == sorted([t, "ready", ""] for t in ev.task_ids)
        client.close()
    lines = log_lines(relay)
    health = [d["msg"] for d in lines if d.get("logger") == HEALTH_LOGGER and d["level"] in ("info", "warning")]
    assert [m.split(" (")[0].split(" after")[0] for m in health] == ["redis unreachable at start", "redis back"], health
    assert not [d for d in lines if "exc" in d or d["level"] in ("error", "critical", "raw")]
    print(f"start-up with Redis down {OUTAGE_SECONDS:.0f} s: ready {ready:.2f} s after Redis came up")


async def test_commands_wait_for_the_broker(outage_redis) -> None:
    """``commands.deliver`` (FINALIZE, PROCESSING): with Redis stopped it keeps retrying (no
    exception, nothing lost), and the command is enqueued once when Redis is back; with Redis
    frozen, one ``send`` fails within its socket deadlines instead of hanging its thread."""
    from shared import commands
    from shared.redis_health import RedisHealth

    outage_redis.start()
    url = outage_redis.url
    await commands.send_async(url, commands.FINALIZE, "T0", "ready", "")  # the sender's connection exists
    outage_redis.stop()
    health = RedisHealth("relay-commands-test")
    task = asyncio.create_task(commands.deliver(url, commands.FINALIZE, "T1", "ready", "", health=health))
    await asyncio.sleep(4)
    assert not task.done() and health.down
    outage_redis.start()
    await asyncio.wait_for(task, 30)
    client = redis.Redis.from_url(url)
    assert sorted(c[0] for c in finalize_commands(client)) == ["T0", "T1"]  # T1 once
    assert health.up

    outage_redis.freeze()
    started = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017 - kombu's or redis-py's error, within the deadlines
        await commands.send_async(url, commands.FINALIZE, "T2", "ready", "")
    took = time.monotonic() - started
    outage_redis.thaw()
    client.close()
    print(f"a send to a frozen Redis failed after {took:.1f} s")
