"""Admin over HTTP on the emulator's port, the background-thread helper, and the real CLI process."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from websockets.sync.client import connect as sync_connect

from emulators.kwikmotion import BANNER, KwikmotionEmulator
from emulators.media import JFK_FLAC
from shared.child import Service
from shared.kwikmotion import AudioAdded, KwikSession, TranscriptResult
from tests.emulators.kwikmotion.support import TOKEN, eventually, open_ws, start

CHUNK = b"\x02\x00" * 16000


def http(url: str, method: str = "GET") -> tuple[int, str, str]:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


def base(emu: KwikmotionEmulator) -> str:
    return emu.url.replace("ws://", "http://").rstrip("/")


async def test_admin_http(emu: KwikmotionEmulator) -> None:
    root = base(emu)
    status, _, body = await asyncio.to_thread(http, f"{root}/healthz")
    assert status == 200 and BANNER in body

    status, ctype, body = await asyncio.to_thread(http, f"{root}/admin/faults?drop_after_chunks=1&count=1", "POST")
    assert (status, ctype) == (200, "application/json") and json.loads(body)["drop_after_chunks"] == 1
    async with open_ws(emu) as ws:
        session = await start(ws)
        await ws.send(session.send_audio(CHUNK, 0))
        await asyncio.wait_for(ws.wait_closed(), 5)  # dropped after the first chunk
    await eventually(lambda: emu.sessions[-1].finished)

    status, _, body = await asyncio.to_thread(http, f"{root}/admin/sessions")
    doc = json.loads(body)
    assert status == 200 and doc["emulator"] == BANNER
    [summary] = doc["sessions"]
    assert summary["audio_bytes"] == len(CHUNK) and summary["chunks"] == 1
    assert summary["audio_sha256"] == hashlib.sha256(CHUNK).hexdigest()
    assert (summary["faults"], summary["closed_code"], summary["auth"]) == (["drop"], 1006, "ok")
    assert TOKEN not in body  # never the token

    for query in ("nonsense=1", "drop_after_chunks=x", "delay_seconds=-1", "refuse_capacity=maybe"):
        status, _, body = await asyncio.to_thread(http, f"{root}/admin/faults?{query}", "POST")
        assert status == 400, query
    status, _, body = await asyncio.to_thread(
        http, f"{root}/admin/faults?silent_after_chunks=3&delay_seconds=0.5&persistent=true", "POST"
    )
    faults = json.loads(body)
    assert (faults["silent_after_chunks"], faults["delay_seconds"], faults["persistent"]) == (3, 0.5, True)
    assert json.loads((await asyncio.to_thread(http, f"{root}/admin/faults"))[2]) == faults

    status, _, body = await asyncio.to_thread(http, f"{root}/admin/reset", "POST")
    assert status == 200 and emu.sessions == [] and emu.faults.silent_after_chunks is None
    assert emu.faults.delay_seconds == 0.0
    assert (await asyncio.to_thread(http, f"{root}/admin/nothing"))[0] == 404


def test_running_in_thread_with_a_sync_client() -> None:
    emu = KwikmotionEmulator(token=TOKEN, ping_interval=0.2, ping_timeout=1.0)
    with emu.running_in_thread():
        session = KwikSession("fr", ["en"])
        with sync_connect(emu.url, additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
            ws.send(session.start(0))
            session.receive(ws.recv(5), 0)
            ws.send(session.send_audio(CHUNK, 0))
            events = [e for _ in range(3) for e in session.receive(ws.recv(5), 0)]
            time.sleep(0.6)  # a few server pings pass: the sync client answers them
            ws.send(session.end_of_stream(0))
            events += session.receive(ws.recv(5), 0)
        assert isinstance(events[0], AudioAdded) and isinstance(events[1], TranscriptResult)
        assert session.state == "done"
        assert emu.audio(0) == CHUNK
    assert emu._server is None  # stopped when the block ended


def _emulator_url(service: Service, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(r"KWIKMOTION_EMULATOR_URL=(ws://\S+)", service.log())
        if found:
            return found.group(1)
        if not service.alive():
            break
        time.sleep(0.05)
    raise AssertionError(f"no URL printed:\n{service.log()}")


def test_cli_process(tmp_path: Path) -> None:
    ref = tmp_path / "ref.txt"
    ref.write_text("one two three four\n")
    args = ["emulate", "kwikmotion", "--listen", "127.0.0.1:0", "--token", "cli-token"]
    args += ["--forbidden-token", "nope", "--reference-file", str(ref), "--reference-seconds", "4"]
    with Service(args, env={}, log_dir=tmp_path, name="kwik-emulator") as service:
        url = _emulator_url(service)
        session = KwikSession("en")
        with sync_connect(url, additional_headers={"Authorization": "Bearer cli-token"}) as ws:
            ws.send(session.start(0))
            session.receive(ws.recv(5), 0)
            ws.send(session.send_audio(b"\x00\x00" * 16000 * 4, 0))
            events = [e for _ in range(2) for e in session.receive(ws.recv(5), 0)]
        assert events[1].transcript == "one two three four"
        with sync_connect(url, additional_headers={"Authorization": "Bearer nope"}) as ws:
            assert json.loads(ws.recv(5))["code"] == 403
        assert service.stop() == 0
    log = service.log()
    assert BANNER in log and "cli-token" not in log


def test_cli_reference_audio_and_align(tmp_path: Path, pcm: bytes) -> None:
    """``--reference-audio`` with its own transcript: the words heard where the audio matches, so
    a session sent the second half of the recording gets the second word only."""
    ref = tmp_path / "ref.txt"
    ref.write_text("first second\n")
    args = ["emulate", "kwikmotion", "--listen", "127.0.0.1:0", "--token", "cli-token", "--reference-file", str(ref)]
    args += ["--reference-audio", str(JFK_FLAC), "--align", "audio"]
    with Service(args, env={}, log_dir=tmp_path, name="kwik-emulator-audio") as service:
        url = _emulator_url(service)
        session = KwikSession("en")
        with sync_connect(url, additional_headers={"Authorization": "Bearer cli-token"}) as ws:
            ws.send(session.start(0))
            session.receive(ws.recv(5), 0)
            half = pcm[len(pcm) // 2 :]  # 5.5 s: "second" starts at its first sample
            for i in range(0, len(half), 64000):
                ws.send(session.send_audio(half[i : i + 64000], 0))
            events = [e for _ in range(0, len(half), 64000) for _ in range(2) for e in session.receive(ws.recv(5), 0)]
        assert [e.transcript for e in events if isinstance(e, TranscriptResult)] == ["second", "", ""]
        assert service.stop() == 0


def test_cli_needs_a_token(tmp_path: Path) -> None:
    from emulators.kwikmotion.main import main

    assert main(["--listen", "127.0.0.1:0", "--token", ""]) == 2
    assert main(["--listen", "nowhere", "--token", "x"]) == 2
    ref = tmp_path / "ref.txt"
    ref.write_text("not the sample's words\n")
    # Words of another recording cannot be found in the JFK sample: audio alignment needs its audio.
    assert main(["--listen", "127.0.0.1:0", "--token", "x", "--reference-file", str(ref), "--align", "audio"]) == 2


@pytest.mark.parametrize("argv", [["emulate"], ["emulate", "nothing"]])
def test_emulate_dispatch_usage(argv: list[str]) -> None:
    from emulators.main import main

    assert main(argv[1:]) == 2


async def test_wss_with_a_self_signed_certificate(tmp_path: Path) -> None:
    import shutil
    import ssl
    import subprocess

    from websockets.asyncio.client import connect

    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    await asyncio.to_thread(
        subprocess.run,
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    emu = KwikmotionEmulator(token=TOKEN, ssl_context=server_ctx)
    async with emu:
        assert emu.url.startswith("wss://127.0.0.1:")
        client_ctx = ssl.create_default_context(cafile=str(cert))
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with connect(emu.url, ssl=client_ctx, additional_headers=headers) as ws:
            session = await start(ws)
            await ws.send(session.send_audio(CHUNK, 0))
            assert isinstance(session.receive(await ws.recv(), 0)[0], AudioAdded)
