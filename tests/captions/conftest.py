"""Helpers shared by the caption tests."""

from __future__ import annotations

import json
from typing import Any

from shared.captions import AnchoredTimeBase, Built, CaptionBuilder, parse_result

# A time base as ingest would stamp it: media time 0 at source pts 100 s, received at this epoch.
TB = AnchoredTimeBase(media_time=0.0, pts_at=100.0, epoch_at=1_729_166_400.0)
JFK = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."


def transcript(text: str, start: float, end: float, chunk: int = 0, language: str = "en") -> Any:
    return parse_result(
        {
            "message": "AddTranscript",
            "metadata": {
                "transcript": text,
                "start_time": start,
                "end_time": end,
                "language": language,
                "chunk_index": chunk,
                "word_count": len(text.split()),
            },
        }
    )


def translation(text: str, start: float, end: float, target: str = "fr") -> Any:
    return parse_result(
        {
            "message": "AddTranslation",
            "metadata": {"translation": text, "target_language": target, "start_time": start, "end_time": end},
        }
    )


def builder(**kw: Any) -> CaptionBuilder:
    args: dict[str, Any] = {
        "task_id": "471386462",
        "event_id": "59073162",
        "service_type": "transcription",
        "language_code": "en-US",
        "max_chars": 26,
    }
    args.update(kw)
    return CaptionBuilder(**args)


def doc(b: Built) -> dict[str, Any]:
    return json.loads(b.json)["response"]


def alt(b: Built) -> dict[str, Any]:
    return doc(b)["alternatives"][0]
