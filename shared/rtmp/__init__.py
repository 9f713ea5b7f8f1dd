"""The RTMP protocol as a sans-I/O state machine (docs/design.md section 3): fed bytes, returns events
and bytes to send. ``services.ingest`` is the asyncio driver."""

from shared.rtmp.chunks import ChunkReader, ChunkWriter, Limits, Message
from shared.rtmp.errors import ProtocolError
from shared.rtmp.server import (
    Connected,
    Event,
    MediaMessage,
    Metadata,
    PingResponse,
    PublishRequested,
    ServerConnection,
    Unpublished,
)

__all__ = [
    "ChunkReader",
    "ChunkWriter",
    "Connected",
    "Event",
    "Limits",
    "MediaMessage",
    "Message",
    "Metadata",
    "PingResponse",
    "ProtocolError",
    "PublishRequested",
    "ServerConnection",
    "Unpublished",
]
