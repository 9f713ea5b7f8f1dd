"""The ingest service: RTMP(S) publishers in, 16 kHz PCM chunks on Redis Streams out."""
