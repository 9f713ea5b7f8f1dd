"""A tiny RTMP server for the restreamer's tests: accepts every publish (our own sans-I/O RTMP
core, ``shared.rtmp.server``) and writes one JSON line per connection when it ends: when it was
opened, accepted and closed (wall clock), the stream key, the unpublish commands, and every audio
message's arrival time and RTMP timestamp. Run as a process (PyAV holds the GIL while it blocks
on its socket, which would stall a server in the publisher's process):

    python -m tests.emulators.rtmp_sink PORT OUTFILE
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from shared.rtmp.chunks import AUDIO
from shared.rtmp.server import MediaMessage, PublishRequested, ServerConnection, Unpublished


async def _serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, out: Path) -> None:
    record: dict[str, Any] = {"opened": time.time(), "key": None, "accepted": None, "closed": None,
                              "unpublished": [], "audio": [], "video": 0}  # fmt: skip
    conn = ServerConnection()
    try:
        while not conn.closed:
            data = await reader.read(65536)
            if not data:
                break
            events = conn.receive_data(data)
            while events:
                more = []
                for event in events:
                    now = time.time()
                    if isinstance(event, PublishRequested):
                        record["key"], record["accepted"] = event.name, now
                        conn.accept_publish(event.stream_id)
                        more += conn.receive_data(b"")
                    elif isinstance(event, MediaMessage):
                        if event.type_id == AUDIO:
                            record["audio"].append([now, event.timestamp])
                        else:
                            record["video"] += 1
                    elif isinstance(event, Unpublished):
                        record["unpublished"].append(event.command)
                events = more
            writer.write(conn.data_to_send())
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        record["closed"] = time.time()
        writer.close()
        with out.open("a") as fh:
            fh.write(json.dumps(record) + "\n")


async def main(port: int, out: Path) -> None:
    server = await asyncio.start_server(lambda r, w: _serve_one(r, w, out), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), Path(sys.argv[2])))
