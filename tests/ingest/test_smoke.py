from shared import streams
from tests.ingest.conftest import audio_entries, best_correlation, ffmpeg_publish, make_event, pcm_of, source_pcm, wait_for


async def test_ffmpeg_fast_push(start_ingest, redis_client):
    make_event(redis_client)
    server = await start_ingest()
    code, err = await ffmpeg_publish(f"rtmp://127.0.0.1:{server.port}/live/key-1")
    assert code == 0, err[-2000:]
    await wait_for(lambda: any(isinstance(e, streams.EndOfStream) for e in audio_entries(redis_client)))
    entries = audio_entries(redis_client)
    pcm = pcm_of(entries)
    ref = source_pcm()
    print(len(pcm), len(ref), entries[-1])
    print(best_correlation(pcm, ref))
