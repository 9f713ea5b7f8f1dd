"""``reachlive check kwikmotion``: an operator's pre-flight against the speech service (issue 17).

Connects to ``REACHLIVE_KWIKMOTION_URL`` (or ``--url``) with ``Authorization: Bearer`` and the
token of ``REACHLIVE_KWIKMOTION_TOKEN`` (never taken on the command line, never printed), starts a
session with a target language, sends the bundled speech sample (decoded with PyAV to 16 kHz mono
s16le, as the ingest does) in ``REACHLIVE_RELAY_CHUNK_SECONDS`` chunks followed by silence, in
real time or as fast as acknowledged (``--fast``), ends the stream, and prints what the server
did and whether the relay handles it (``services/check/probe.py``). Exit 0 only when it does.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
import time
from collections.abc import Callable

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from emulators.media import JFK_FLAC
from services.check.probe import Observations, Probe, report, verdict
from shared.kwikmotion import is_supported_language
from shared.kwikmotion.messages import end_of_stream, start_recognition
from shared.settings import KwikmotionSettings, RelaySettings, load

RATE = 16000
WIDTH = 2  # pcm_s16le
SILENT_CHUNKS = 2  # silence after the speech: do empty transcripts get translations?

DESCRIPTION = """\
Pre-flight check of the KWIKmotion speech service, to run before the first real event.

Connects to REACHLIVE_KWIKMOTION_URL (or --url) with the header "Authorization: Bearer <token>",
the token read from REACHLIVE_KWIKMOTION_TOKEN (it is never printed). Starts a session (source
--language, target --target), sends the bundled 11 s speech sample (emulators/media/jfk.flac) in
REACHLIVE_RELAY_CHUNK_SECONDS chunks (or --chunk-seconds), then two chunks of silence, in real
time (about 16 s at 2 s chunks) or as fast as the server acknowledges them (--fast), ends the
stream and prints what the server did:

  authentication    accepted, or refused with the server's error code, type and reason
  languages         accepted, or refused (4004 invalid_model)
  transcript        the words of the sample as the server heard them
  time base         whether start_time/end_time count from the session or from each chunk
  word boundaries   whether a transcript claims audio before its chunk (1 s buffering)
  empty chunks      whether silent chunks still get an (empty) AddTranslation
  result order      whether results came in chunk order
  optional fields   AddTranscript messages without word_count or language
  unknown messages  message types the API document does not list
  latency           p50/p95 from sending a chunk to receiving its AddTranscript
  verdict           HANDLED when the relay handles all of it; otherwise NOT HANDLED, each
                    behaviour outside the API document's readings on a "not handled:" line

Exit status: 0 when handled, 1 when not (or refused, or unreachable), 2 on a usage or
settings error.
"""


@functools.cache
def speech_pcm() -> bytes:
    """The bundled sample as the ingest makes it: PyAV, 16 kHz mono s16le."""
    import av

    out = bytearray()
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    with av.open(str(JFK_FLAC)) as container:
        for frame in container.decode(audio=0):
            for piece in resampler.resample(frame):
                out += bytes(piece.planes[0])[: piece.samples * WIDTH]
    for piece in resampler.resample(None):
        out += bytes(piece.planes[0])[: piece.samples * WIDTH]
    return bytes(out)


def plan_chunks(chunk_seconds: float, silent_chunks: int = SILENT_CHUNKS) -> list[tuple[bytes, bool]]:
    """(pcm, silent) per chunk: the sample, its last chunk padded with silence, then silence."""
    size = round(chunk_seconds * RATE) * WIDTH
    pcm = speech_pcm()
    pcm += b"\x00" * (-len(pcm) % size)
    speech = [(pcm[i : i + size], False) for i in range(0, len(pcm), size)]
    return speech + [(b"\x00" * size, True)] * silent_chunks


async def probe_server(
    url: str,
    token: str,
    language: str,
    targets: list[str],
    chunk_seconds: float,
    *,
    fast: bool = False,
    start_timeout: float = 10.0,
    end_timeout: float = 30.0,
    clock: Callable[[], float] = time.monotonic,
) -> Observations:
    probe = Probe(language, targets, chunk_seconds)
    try:
        ws = await connect(
            url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=start_timeout, max_size=None
        )
    except InvalidStatus as exc:
        probe.refused_at_handshake(exc.response.status_code, exc.response.body.decode("utf-8", "replace")[:2000])
        return probe.observations()
    except InvalidURI:
        probe.unreachable(f"not a WebSocket URL: {url}")
        return probe.observations()
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        probe.unreachable(f"{type(exc).__name__}: {exc}"[:300])
        return probe.observations()
    changed = asyncio.Event()
    async with ws, asyncio.TaskGroup() as tasks:
        tasks.create_task(_read(ws, probe, changed, clock))
        await _converse(ws, probe, changed, plan_chunks(chunk_seconds), chunk_seconds, fast, start_timeout,
                        end_timeout, clock)  # fmt: skip
        await ws.close()
    return probe.observations()


async def _read(ws: ClientConnection, probe: Probe, changed: asyncio.Event, clock: Callable[[], float]) -> None:
    try:
        async for message in ws:
            probe.received(message, clock())
            changed.set()
    except ConnectionClosed:
        pass
    rcvd = ws.protocol.close_rcvd
    probe.closed(rcvd.code if rcvd else 1006, rcvd.reason if rcvd else "")
    changed.set()


async def _until(changed: asyncio.Event, done: Callable[[], bool], deadline: float, clock: Callable[[], float]) -> bool:
    while not done():
        remaining = deadline - clock()
        if remaining <= 0:
            return False
        changed.clear()
        try:
            await asyncio.wait_for(changed.wait(), remaining)
        except TimeoutError:
            return done()
    return True


async def _converse(
    ws: ClientConnection,
    probe: Probe,
    changed: asyncio.Event,
    plan: list[tuple[bytes, bool]],
    chunk_seconds: float,
    fast: bool,
    start_timeout: float,
    end_timeout: float,
    clock: Callable[[], float],
) -> None:
    try:
        await ws.send(start_recognition(probe.language, probe.targets))
        if not await _until(changed, lambda: probe.started or probe.failed, clock() + start_timeout, clock):
            probe.closed(1006, f"no RecognitionStarted within {start_timeout:g} s")
        if probe.failed:
            return
        began, offset = clock(), 0.0
        for i, (pcm, silent) in enumerate(plan):
            if fast:  # the next chunk once the previous one is acknowledged, as the relay paces
                await _until(changed, lambda i=i: probe.acked >= i or probe.failed, clock() + end_timeout, clock)
            else:
                await asyncio.sleep(max(0.0, began + i * chunk_seconds - clock()))
            if probe.failed:
                return
            await ws.send(pcm)
            duration = len(pcm) / WIDTH / RATE
            probe.sent(offset, duration, silent, clock())
            offset += duration
        await ws.send(end_of_stream(len(plan)))
        if not await _until(changed, lambda: probe.ended or probe.failed, clock() + end_timeout, clock):
            probe.closed(1006, f"no EndOfTranscript within {end_timeout:g} s")
    except ConnectionClosed:
        await _until(changed, lambda: probe.failed or probe.ended, clock() + 2.0, clock)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="reachlive check kwikmotion",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", help="the WebSocket URL (default: $REACHLIVE_KWIKMOTION_URL)")
    parser.add_argument("--language", default="en", help="source language, ISO 639-1 (default: en, the sample's)")
    parser.add_argument(
        "--target",
        action="append",
        help="target language, ISO 639-1; repeat for several (default: fr); --target '' for none",
    )
    parser.add_argument(
        "--chunk-seconds", type=float, help="seconds of audio per chunk (default: $REACHLIVE_RELAY_CHUNK_SECONDS)"
    )
    parser.add_argument("--fast", action="store_true", help="send each chunk once the previous one is acknowledged")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = _parse(argv)
    settings = load(KwikmotionSettings, **({"url": args.url} if args.url else {}))
    relay = load(RelaySettings, **({"chunk_seconds": args.chunk_seconds} if args.chunk_seconds else {}))
    token = settings.token.get_secret_value()
    if not token:
        print("reachlive check kwikmotion: REACHLIVE_KWIKMOTION_TOKEN is not set", file=sys.stderr)
        return 2
    targets = [t.strip() for arg in (args.target or ["fr"]) for t in arg.split(",") if t.strip()]
    unknown = [code for code in [args.language, *targets] if not is_supported_language(code)]
    if unknown:
        # Sent anyway: the server's answer is what the check is for; say what the seed expects.
        print(f"note: {', '.join(unknown)} not in the API document's language list", flush=True)
    obs = asyncio.run(
        probe_server(
            settings.url,
            token,
            args.language,
            targets,
            relay.chunk_seconds,
            fast=args.fast,
            start_timeout=settings.start_timeout_seconds,
            end_timeout=settings.end_timeout_seconds,
        )
    )
    for line in report(obs, settings.url, args.fast):
        print(line.replace(token, "***") if len(token) >= 4 else line, flush=True)
    return 0 if verdict(obs).handled else 1
