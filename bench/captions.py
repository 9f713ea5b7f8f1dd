"""Responses built per second on one core for a typical transcript (issue 5: target > 20,000/s).

A typical live result: a 6 s KWIKmotion chunk (the seed's recommended size) of ~17 words of
English, built into one transcript response and its captions blocks (26 characters a line, the
seed's reach profile), JSON included. Also a translation task for the same results. Run:
``.venv/bin/python bench/captions.py [seconds]``. Rates are per CPU second (``time.process_time``), so other
processes on a shared machine do not deflate them.
"""

from __future__ import annotations

import sys
import time

from shared.captions import AnchoredTimeBase, CaptionBuilder, parse_result

SENTENCES = [
    "And so, my fellow Americans, ask not what your country can do for you;",
    "ask what you can do for your country. My fellow citizens of the world,",
    "ask not what America will do for you, but what together we can do for the freedom of man.",
]


def _results(n: int, kind: str) -> list:
    out = []
    for i in range(n):
        text = SENTENCES[i % len(SENTENCES)]
        meta = {"start_time": 6.0 * i, "end_time": 6.0 * i + 6.0}
        if kind == "transcript":
            msg = {
                "message": "AddTranscript",
                "metadata": {
                    **meta,
                    "transcript": text,
                    "language": "en",
                    "chunk_index": i,
                    "word_count": len(text.split()),
                },
            }
        else:
            msg = {"message": "AddTranslation", "metadata": {**meta, "translation": text, "target_language": "fr"}}
        out.append(parse_result(msg))
    return out


def run(service_type: str, seconds: float, profanity: bool = False) -> tuple[int, int, float]:
    kind = "transcript" if service_type == "transcription" else "translation"
    results = _results(500, kind)
    tb = AnchoredTimeBase(0.0, 0.0, 1_700_000_000.0)
    responses = built = 0
    t0 = time.process_time()
    while time.process_time() - t0 < seconds:
        b = CaptionBuilder(
            task_id="bench",
            event_id="e",
            service_type=service_type,
            language_code="en-US" if kind == "transcript" else "fr-FR",
            max_chars=26,
            profanity=profanity,
        )
        for r in results:
            responses += len(b.build(r, 0.0, tb))
            built += 1
    return responses, built, time.process_time() - t0


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    for service_type, profanity in (("transcription", False), ("translation", False), ("transcription", True)):
        responses, results, elapsed = run(service_type, seconds, profanity)
        label = service_type + (" + profanity masking" if profanity else "")
        print(
            f"{label}: {responses / elapsed:,.0f} responses/s "
            f"({results / elapsed:,.0f} results/s, {responses / results:.2f} responses per result, one core)"
        )


if __name__ == "__main__":
    main()
