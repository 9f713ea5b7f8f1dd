"""The client's JSON messages, in the seed's exact shapes ("Client → Server Messages")."""

from __future__ import annotations

import json
from collections.abc import Sequence

ENCODINGS = ("pcm_s16le", "pcm_f32le", "mulaw")  # seed: "Supported Encodings"
# Bytes per sample of each encoding (mono): used to turn audio bytes into seconds.
BYTES_PER_SAMPLE = {"pcm_s16le": 2, "pcm_f32le": 4, "mulaw": 1}


def start_recognition(
    language: str,
    targets: Sequence[str] = (),
    *,
    sample_rate: int = 16000,
    encoding: str = "pcm_s16le",
    audio_type: str = "raw",
) -> str:
    """StartRecognition JSON. ``translation_config`` is left out without targets: the seed marks
    it optional, and its troubleshooting asks for a non-empty ``target_languages``."""
    msg: dict[str, object] = {
        "message": "StartRecognition",
        "audio_format": {"type": audio_type, "encoding": encoding, "sample_rate": sample_rate},
        "transcription_config": {"language": language},
    }
    if targets:
        msg["translation_config"] = {"target_languages": list(targets)}
    return json.dumps(msg)


def end_of_stream(last_seq_no: int) -> str:
    """EndOfStream JSON; ``last_seq_no`` is the "Number of segments sent" (seed)."""
    return json.dumps({"message": "EndOfStream", "last_seq_no": last_seq_no})
