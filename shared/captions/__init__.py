"""Kaltura caption responses built from KWIKmotion results: a pure library (no I/O, no clock).

Seeds: the Kaltura seed's "Websocket response - schema" and the sections after it (what we
send), and the KWIKmotion seed's ``AddTranscript`` / ``AddTranslation`` (what we get). Issue 5.

How the relay uses it::

    from shared.captions import CaptionBuilder, ChunkTimeBase, InvalidResult, parse_result, to_entry

    builder = CaptionBuilder(
        task_id=task.id, event_id=event.id,
        service_type="transcription",     # or "translation" for a LIVE_TRANSLATION task
        language_code=task.language_code,  # "en-US"; for a translation, the target's code
        max_chars=task.max_chars,          # reach profile maxCharactersPerCaptionLine
        profanity=task.profanity,          # reach profile enableProfanityRemoval
        types=settings.caption_types,      # "transcript,captions" (docs/design.md section 5)
    )
    builder.restore(saved_state)           # after a takeover (state() is JSON-safe)

    time_base = ChunkTimeBase()            # add(chunk) for every AudioChunk sent to KWIKmotion
    try:
        result = parse_result(message)     # Transcript | Translation, or InvalidResult(reason)
    except InvalidResult as exc:
        ...                                # log exc.reason, skip the message
    if builder.accepts(result):
        for built in builder.build(result, offset, time_base):
            redis.xadd(keys.captions(task), to_entry(built, created=now).fields(), ...)
        save(builder.state())
    ...
    for built in builder.end_of_stream(media_time, time_base):  # is_end_of_stream: true
        ...

- ``offset`` is the media time at which the current KWIKmotion session's audio starts (media time
  = offset + KWIKmotion time), so results of a reconnected session continue the event's timeline.
- ``time_base`` answers ``pts(media_time)`` and ``epoch(media_time)``: ``start_pts`` and
  ``start_epoch`` are carried from the audio that produced the result (``AnchoredTimeBase`` for one
  anchor, ``ChunkTimeBase`` for one anchor per audio chunk).
- ``Built`` has ``type`` ("transcript" | "captions"), ``id``, ``json`` (``{"response": {...}}``),
  ``is_end_of_stream``, ``start``, ``end``; ``Built.model()`` parses it back into ``Envelope``.
- Response ids are UUIDv5 of the task and a position derived from the input (type, the result's
  media start-end in ms, block index): see ``builder``. Rebuilding the same result gives the
  same ids; a result at or before the last one built returns ``[]`` (replays do not duplicate).
- ``Envelope`` / ``Response`` / ``Alternative`` / ``Item`` / ``Speaker`` are the strict pydantic
  models of the seed's schema, usable by any reader to check a response.
"""

from shared.captions.builder import (
    NAMESPACE,
    TYPES,
    Built,
    CaptionBuilder,
    response_id,
    speaker_id,
    to_entry,
)
from shared.captions.layout import MAX_SECONDS, MIN_SECONDS
from shared.captions.models import Alternative, Envelope, Item, Response, Speaker
from shared.captions.profanity import censor_text, mask
from shared.captions.results import InvalidResult, Transcript, Translation, parse_result
from shared.captions.timebase import AnchoredTimeBase, ChunkTimeBase, TimeBase

__all__ = [
    "MAX_SECONDS",
    "MIN_SECONDS",
    "NAMESPACE",
    "TYPES",
    "Alternative",
    "AnchoredTimeBase",
    "Built",
    "CaptionBuilder",
    "ChunkTimeBase",
    "Envelope",
    "InvalidResult",
    "Item",
    "Response",
    "Speaker",
    "TimeBase",
    "Transcript",
    "Translation",
    "censor_text",
    "mask",
    "parse_result",
    "response_id",
    "speaker_id",
    "to_entry",
]
