"""The one exception the RTMP core raises on bad input (docs/design.md section 3).

Anything a peer can send either parses or raises ``ProtocolError``; the driver closes that one
connection and counts ``kind`` in its metrics. ``kind`` is a short fixed word (a metric label),
the message says what was wrong without echoing peer data at length.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """The peer broke the RTMP protocol or one of our limits; the connection must be closed."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
