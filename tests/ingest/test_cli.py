"""``reachlive ingest`` as a real child process: settings from the environment, a publish, and a
clean stop on SIGTERM."""

from __future__ import annotations

import asyncio

from shared.child import Service, free_port, wait_port
from tests.ingest.conftest import end_window, ffmpeg_publish, make_event


async def test_reachlive_ingest_process(redis_url, redis_client, tmp_path):
    make_event(redis_client)
    port = free_port()
    env = {
        "REACHLIVE_REDIS_URL": redis_url,
        "REACHLIVE_INGEST_LISTEN": f"127.0.0.1:{port}",
        "REACHLIVE_INGEST_GRACE_SECONDS": "1",
        "REACHLIVE_INGEST_WINDOW_MARGIN_SECONDS": "0",
    }
    with Service(["ingest"], env, tmp_path) as svc:
        await asyncio.to_thread(wait_port, port)
        code, err = await ffmpeg_publish(f"rtmp://127.0.0.1:{port}/live/key-1")
        assert code == 0, err[-2000:]
        await end_window(redis_client, 0.0)
        assert svc.alive()
        assert await asyncio.to_thread(svc.stop) == 0, svc.log()[-3000:]
    log = svc.log()
    assert "key-1" not in log  # the media key is a secret: never logged
    assert '"event_id": "ev1"' in log


def test_bad_setting_is_one_line(tmp_path):
    with Service(["ingest"], {"REACHLIVE_INGEST_LISTEN": "nonsense"}, tmp_path) as svc:
        assert svc.proc.wait(30) == 2
    assert "REACHLIVE_INGEST_LISTEN" in svc.log()
