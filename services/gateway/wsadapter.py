"""Every websockets internal the gateway uses, in one place (issue 21).

The gateway serves ~10⁴ mostly idle caption connections per replica without a task per
connection reading or writing, and proves delivery with its own pings. websockets' public API
cannot do that: ``recv`` needs a reader task, ``send`` is a coroutine, ``ping`` keeps its
own bookkeeping. So the gateway reaches below it, and only through this module:

- ``CaptionServerConnection`` overrides ``process_event`` to receive frames as callbacks, and
  extends ``data_received`` to cap what websockets writes on its own (pongs);
- ``Wire`` wraps one ``ServerConnection`` for synchronous writes and connection-level facts;
- ``handler_tasks`` / ``close_task`` read the ``Server``'s bookkeeping for the drain.

``INTERNALS`` lists each member with why it is needed and the websockets releases that have it;
``missing_internals`` checks a live connection and server for them, and
tests/gateway/test_wsadapter.py fails on an installed websockets lacking one (this is why
pyproject.toml allows ``websockets>=17.0,<18``: ``Server.handler_tasks`` appeared in 17.0,
``send_in_progress`` in 16.0; an 18 must be checked before the upper bound moves).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from websockets.asyncio.server import Server, ServerConnection
from websockets.datastructures import Headers
from websockets.frames import DATA_OPCODES, Frame, Opcode
from websockets.protocol import Event, State

# "owner.member": (why the gateway needs it, websockets releases that have it — checked by
# unpacking the wheels of 13.0, 14.0, 14.2, 15.0, 15.0.1, 16.0, 16.1, 17.0 and 17.4).
INTERNALS: dict[str, tuple[str, str]] = {
    "ServerConnection.process_event": (
        "overridden: data frames and pongs reach callbacks instead of recv's queue / pending_pings",
        "13.0+",
    ),
    "ServerConnection.protocol": ("the sans-I/O protocol object the direct writes below go through", "13.0+"),
    "ServerConnection.send_data": ("flushes what the protocol wrote to the transport, synchronously", "13.0+"),
    "ServerConnection.send_in_progress": (
        "a fragmented send is under way: a direct frame would land inside it (15.x: fragmented_send_waiter)",
        "16.0+",
    ),
    "ServerConnection.transport": (
        "get_write_buffer_size(): direct writes only while the socket keeps up; abort() past the cap",
        "13.0+",
    ),
    "ServerConnection.data_received": (
        "extended: after websockets wrote its automatic answers (pongs), the write buffer is checked",
        "13.0+",
    ),
    "ServerConnection.connection_lost_waiter": ("done when the TCP connection is lost (no reader task)", "13.0+"),
    "Protocol.send_ping": ("our pings carry a 4-byte sequence number; their pongs prove delivery", "13.0+"),
    "Protocol.send_text": ("writes a frame without awaiting (shared reader, text 'pong' answers)", "13.0+"),
    "Protocol.close_sent": ("the close we sent: 1009 means websockets refused an oversized message", "13.0+"),
    "Protocol.close_rcvd_then_sent": ("False: the client answered our close, so it read every frame before", "13.0+"),
    "Server.handler_tasks": ("the drain cancels and awaits handlers that outlived it (16.x: handlers)", "17.0+"),
    "Server.close_task": ("the drain reports a server close still running", "13.0+"),
}


CONTROL_OPCODES = (Opcode.PING, Opcode.PONG)
DEFAULT_WRITE_BUFFER_LIMIT = 2**16


class CaptionServerConnection(ServerConnection):
    """A ``ServerConnection`` that hands data frames to a callback once authenticated, instead
    of queueing them for ``recv``: the gateway never needs a reader task per connection.

    Every connection, from its first byte, has its unsent output capped: websockets answers each
    PING with a PONG written at once, without backpressure, so a client that floods pings and
    reads nothing grew the gateway by ~20 MiB/s (issue 19). Past ``write_buffer_limit`` bytes plus
    twice the largest caption frame written on the connection, the TCP connection is aborted
    (``on_overflow`` is told). The frames' share is what a slow reader legitimately holds: our
    writes wait for the socket past websockets' 32 KiB write limit, but a frame goes out whole
    first, and a direct write's frame may still be there when the task's ``send`` writes the next
    one (then waits). ``connection_class`` sets the limit and the callback per server.
    """

    write_buffer_limit: int = DEFAULT_WRITE_BUFFER_LIMIT
    frame_allowance = 0  # the largest frame written (``Wire.allow_frame``)
    on_overflow: Callable[[], None] | None = None  # class-wide: counts aborts (a metric)
    on_frame: Callable[[Frame], None] | None = None
    on_pong: Callable[[bytes], None] | None = None  # our pings are ours: not in ``pending_pings``
    on_control: Callable[[Frame], None] | None = None  # every ping and pong (the inbound rate limit)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self.check_write_buffer()

    def check_write_buffer(self) -> bool:
        """Abort the connection if its unsent output passed the cap; False if it did."""
        transport = self.transport
        if transport.get_write_buffer_size() <= self.write_buffer_limit + 2 * self.frame_allowance:
            return True
        if not transport.is_closing():
            transport.abort()
            if self.on_overflow is not None:
                self.on_overflow()
        return False

    def process_event(self, event: Event) -> None:
        if isinstance(event, Frame):
            if self.on_frame is not None and event.opcode in DATA_OPCODES:
                self.on_frame(event)
                return
            if self.on_control is not None and event.opcode in CONTROL_OPCODES:
                self.on_control(event)
            if self.on_pong is not None and event.opcode is Opcode.PONG:
                self.on_pong(bytes(event.data))
        super().process_event(event)


def connection_class(write_buffer_limit: int, on_overflow: Callable[[], None]) -> type[CaptionServerConnection]:
    """A ``CaptionServerConnection`` class with this cap, for ``serve(create_connection=...)``."""
    return type(
        "CaptionServerConnection",
        (CaptionServerConnection,),
        {"write_buffer_limit": write_buffer_limit, "on_overflow": staticmethod(on_overflow)},
    )


class Wire:
    """One caption connection's socket, as the gateway drives it below websockets' public API.
    Public API (``recv``, ``send``, ``close``, ``request``) is used on ``ws`` directly."""

    __slots__ = ("ws",)

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws

    # --- callbacks (process_event) ------------------------------------------------------------
    def take_frames(self, on_frame: Callable[[Frame], None]) -> None:
        """Data frames go to ``on_frame`` from now on (what ``recv`` had queued stays queued)."""
        if isinstance(self.ws, CaptionServerConnection):
            self.ws.on_frame = on_frame

    def take_control(self, on_control: Callable[[Frame], None]) -> None:
        """Every ping and pong the client sends is shown to ``on_control`` (websockets still
        answers the pings): control frames count in the inbound rate limit."""
        if isinstance(self.ws, CaptionServerConnection):
            self.ws.on_control = on_control

    def take_pongs(self, on_pong: Callable[[bytes], None]) -> None:
        """Pongs' payloads go to ``on_pong`` (websockets still matches its own pings, if any)."""
        if isinstance(self.ws, CaptionServerConnection):
            self.ws.on_pong = on_pong

    def on_lost(self, callback: Callable[[object], None]) -> None:
        """Call ``callback`` once the TCP connection is lost (connection_lost_waiter)."""
        self.ws.connection_lost_waiter.add_done_callback(callback)

    def forget_lost(self, callback: Callable[[object], None]) -> None:
        self.ws.connection_lost_waiter.remove_done_callback(callback)

    # --- synchronous writes --------------------------------------------------------------------
    @property
    def open(self) -> bool:
        return self.ws.protocol.state is State.OPEN

    def writable(self, buffer_limit: int) -> bool:
        """A frame written now goes out whole and in order: open, no fragmented send under way,
        and the socket's write buffer at most ``buffer_limit`` bytes (else: backpressure)."""
        ws = self.ws
        return (
            ws.protocol.state is State.OPEN
            and ws.send_in_progress is None
            and ws.transport.get_write_buffer_size() <= buffer_limit
        )

    def ping(self, data: bytes) -> None:
        """Write a ping now, after whatever is buffered (a few bytes: never blocks)."""
        self.ws.protocol.send_ping(data)
        self._flush()

    def text(self, data: bytes) -> None:
        """Write a text frame (UTF-8 ``data``) now, after whatever is buffered."""
        self.allow_frame(len(data))
        self.ws.protocol.send_text(data)
        self._flush()

    def allow_frame(self, size: int) -> None:
        """A frame of ``size`` bytes is being written: the write cap leaves room for it."""
        ws = self.ws
        if isinstance(ws, CaptionServerConnection) and size > ws.frame_allowance:
            ws.frame_allowance = size

    def _flush(self) -> None:
        self.ws.send_data()
        # A direct write does not wait for the socket: it is held to the connection's cap too.
        if isinstance(self.ws, CaptionServerConnection):
            self.ws.check_write_buffer()

    def abort(self) -> None:
        """Drop the TCP connection now, without a closing handshake (a flooding client)."""
        self.ws.transport.abort()

    # --- facts after a close ---------------------------------------------------------------------
    @property
    def close_answered(self) -> bool:
        """We closed first and the client answered with its close frame (it read what came before)."""
        return self.ws.protocol.close_rcvd_then_sent is False

    @property
    def close_sent_code(self) -> int | None:
        sent = self.ws.protocol.close_sent
        return None if sent is None else sent.code

    def drop_handshake_headers(self) -> None:
        """The handshake is over: free the parsed headers (a few KiB per idle connection)."""
        if self.ws.request is not None:
            self.ws.request.headers = Headers()
        if self.ws.response is not None:
            self.ws.response.headers = Headers()


def handler_tasks(server: Server) -> set[asyncio.Task[None]]:
    """The connection handlers still tracked by the server."""
    return server.handler_tasks


def close_task(server: Server) -> asyncio.Task[None] | None:
    """The server's own close task, once ``close()`` was called."""
    return server.close_task


def missing_internals(ws: ServerConnection, server: Server) -> list[str]:
    """The members of ``INTERNALS`` absent from this (live) connection and server."""
    owners = {"ServerConnection": ws, "Protocol": getattr(ws, "protocol", None), "Server": server}
    return [name for name in INTERNALS if not hasattr(owners[name.split(".")[0]], name.split(".")[1])]
