"""Seed, "Keepalive: 20-second ping interval, 30-second timeout": the emulator pings and drops a
peer that never answers. Observed on the wire with websockets' sans-I/O client, which lets the
test see ping frames and withhold the pongs."""

from __future__ import annotations

import asyncio
import time

from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from emulators.kwikmotion import KwikmotionEmulator
from tests.emulators.kwikmotion.support import TOKEN, eventually


async def test_emulator_pings_and_drops_a_peer_that_never_pongs() -> None:
    emu = KwikmotionEmulator(token=TOKEN, ping_interval=0.2, ping_timeout=0.5)
    async with emu:
        proto = ClientProtocol(parse_uri(emu.url))
        request = proto.connect()
        request.headers["Authorization"] = f"Bearer {TOKEN}"
        proto.send_request(request)
        reader, writer = await asyncio.open_connection(emu.host, emu.port)
        for data in proto.data_to_send():
            writer.write(data)  # the handshake only: pongs queued later are never written
        pings, close_code, response = 0, None, None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            data = await asyncio.wait_for(reader.read(65536), 10)
            if not data:
                break
            proto.receive_data(data)
            for event in proto.events_received():
                if isinstance(event, Response):
                    response = event
                elif event.opcode is Opcode.PING:
                    pings += 1
                elif event.opcode is Opcode.CLOSE:
                    close_code = proto.close_rcvd.code if proto.close_rcvd else None
        writer.close()
        assert response is not None and response.status_code == 101
        assert pings >= 1
        assert close_code == 1011  # websockets' "keepalive ping timeout"
        await eventually(lambda: emu.sessions and emu.sessions[-1].finished)
        assert emu.active == 0
