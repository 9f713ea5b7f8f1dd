"""``reachlive check kwikmotion`` as a child process against the KWIKmotion emulator: every
reading of the seed is reported and handled (exit 0), refusals are readable (exit 1)."""

from __future__ import annotations

import pytest

from emulators.kwikmotion import VARIANTS, KwikmotionEmulator
from emulators.media import JFK_TEXT
from tests.check.support import clean_env, run_check

TOKEN = "check-token-0123456789"


def kwik_env(emu: KwikmotionEmulator, **extra: str) -> dict[str, str]:
    return clean_env(REACHLIVE_KWIKMOTION_URL=emu.url, REACHLIVE_KWIKMOTION_TOKEN=TOKEN, **extra)


@pytest.mark.parametrize("name", list(VARIANTS))
async def test_each_reading_is_reported_and_handled(name: str) -> None:
    variant = VARIANTS[name]
    async with KwikmotionEmulator(token=TOKEN, variant=name) as emu:
        run = await run_check(["kwikmotion", "--fast"], kwik_env(emu))
        [session] = emu.started_sessions()
    assert run.code == 0, run.out + run.err
    assert TOKEN not in run.out + run.err
    assert run.out.splitlines()[-1] == "verdict: HANDLED: the relay handles everything this server did"
    assert "not handled" not in run.out
    assert run.row("authentication").startswith("accepted")
    assert run.row("languages") == "accepted: en → fr"
    assert run.row("transcript") == JFK_TEXT
    assert run.row("audio sent") == "8 chunks of 2 s (6 speech, 2 silence), as fast as acknowledged"
    # What the check sent is what the relay sends: the bundled sample at 16 kHz, then silence.
    assert session.language == "en" and session.targets == ["fr"] and len(session.chunks) == 8
    assert {len(c) for c in session.chunks} == {64000} and session.chunks[-1] == b"\x00" * 64000
    assert run.row("time base").startswith(variant.times)
    assert run.row("result order") == ("reordered" if variant.reorder else "in order")
    empty = "no translation for an empty transcript" if variant.empty_translations == "omit" else (
        "translations come for empty transcripts")  # fmt: skip
    assert run.row("empty chunks") == empty
    fields = run.row("optional fields")
    if variant.sparse:
        assert fields == "language missing in 4 of 8, word_count missing in 4 of 8"
    else:
        assert fields == "word_count and language always present"
    boundary = run.row("word boundaries")
    assert boundary == ("transcripts start up to 1 s before their chunk (word-boundary buffering)"
                        if variant.boundary else "transcripts stay within their chunk")  # fmt: skip
    unknown = run.row("unknown messages")
    assert unknown == ("AddPartialTranscript ×8, Info ×1 (ignored)" if variant.extra_messages else "none")
    assert run.row("latency").startswith("p50 ") and "p95 " in run.row("latency")
    assert run.row("end") == "EndOfTranscript (no_more_audio)"


async def test_real_time_pacing_and_settings() -> None:
    """Real time (the default) at REACHLIVE_RELAY_CHUNK_SECONDS, two targets, the reorder reading."""
    async with KwikmotionEmulator(token=TOKEN, reorder=True, times="chunk") as emu:
        env = kwik_env(emu, REACHLIVE_RELAY_CHUNK_SECONDS="4")
        run = await run_check(["kwikmotion", "--target", "fr,de", "--language", "en"], env)
        [session] = emu.started_sessions()
    assert run.code == 0, run.out + run.err
    assert run.row("languages") == "accepted: en → fr, de"
    assert run.row("audio sent") == "5 chunks of 4 s (3 speech, 2 silence), in real time"
    assert run.row("time base").startswith("chunk") and run.row("result order") == "reordered"
    assert {len(c) for c in session.chunks} == {128000}


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (401, "401 authentication_error: token_expired"),
        (403, "403 authentication_error: Insufficient permissions for ailivecaptioning service "
              "(subscription_required)"),
    ],
)  # fmt: skip
async def test_refusals_exit_1_with_the_servers_reason(code: int, expected: str) -> None:
    async with KwikmotionEmulator(token=TOKEN) as emu:
        emu.faults.update({"refuse_auth": code})
        run = await run_check(["kwikmotion", "--fast"], kwik_env(emu))
    assert run.code == 1, run.out + run.err
    assert TOKEN not in run.out + run.err
    assert run.row("authentication") == f"refused: {expected} (check REACHLIVE_KWIKMOTION_TOKEN and the subscription)"
    assert run.out.splitlines()[-1] == f"verdict: NOT HANDLED: authentication refused: {expected}"
    assert run.err == ""  # a readable report, no traceback


async def test_unknown_token_and_refused_language() -> None:
    async with KwikmotionEmulator(token="another-token-0000") as emu:
        run = await run_check(["kwikmotion", "--fast"], kwik_env(emu))
    assert run.code == 1 and "401 authentication_error: token_expired" in run.row("authentication")
    async with KwikmotionEmulator(token=TOKEN) as emu:
        emu.faults.update({"refuse_language": "de"})
        run = await run_check(["kwikmotion", "--fast", "--target", "de"], kwik_env(emu))
    assert run.code == 1
    assert run.row("languages") == "refused: 4004 invalid_model: Unsupported language: de (asked en → de)"


async def test_unreachable_and_settings_errors() -> None:
    env = clean_env(REACHLIVE_KWIKMOTION_URL="ws://127.0.0.1:1/", REACHLIVE_KWIKMOTION_TOKEN=TOKEN)
    run = await run_check(["kwikmotion"], env)
    assert run.code == 1 and run.row("authentication").startswith("unreachable: ")
    run = await run_check(["kwikmotion"], clean_env())
    assert run.code == 2 and "REACHLIVE_KWIKMOTION_TOKEN is not set" in run.err
    run = await run_check(["kwikmotion", "--url", "http://x/"], clean_env(REACHLIVE_KWIKMOTION_TOKEN=TOKEN))
    assert run.code == 2 and "REACHLIVE_KWIKMOTION_URL" in run.err


async def test_help_is_plain_text() -> None:
    run = await run_check(["--help"], clean_env())
    assert run.code == 0 and "kwikmotion" in run.out and "kaltura" in run.out and "exit status" in run.out
    run = await run_check(["kwikmotion", "--help"], clean_env())
    assert run.code == 0
    for word in ("--url", "--target", "--chunk-seconds", "--fast", "time base", "empty chunks", "verdict"):
        assert word in run.out, word
    assert (await run_check([], clean_env())).code == 2
    assert (await run_check(["nothing"], clean_env())).code == 2
