"""The echo protocol: every message goes back to its sender with the same opcode.

One callback and its per-connection state, shared by the echo server
(``lwsbridge.apps.echo_server``) and the Autobahn testee client
(``lwsbridge.apps.echo_client``).  It answers RECEIVE and CLIENT_RECEIVE alike, so the
same code echoes on either side of a connection, and an HTTP request gets a small page.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from lwsbridge.context import Connection, Reason, WriteKind

__all__ = ["EchoSession", "echo_callback"]

_HIGH_WATER = 16  # queued messages before reading pauses (rx flow control)
_LOW_WATER = 4


class EchoSession:
    """One connection's echo state: the fragments of the message being received and
    the whole messages waiting to be written back."""

    __slots__ = ("parts", "paused", "queue")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.queue: deque[tuple[bytes, bool]] = deque()
        self.paused = False  # reading stopped until the queue drains


# Looked up once: enum attribute access is not free on the per-message path.
_RECEIVES = (Reason.RECEIVE, Reason.CLIENT_RECEIVE)
_WRITEABLES = (Reason.SERVER_WRITEABLE, Reason.CLIENT_WRITEABLE)
_BINARY, _TEXT = WriteKind.BINARY, WriteKind.TEXT


def echo_callback(conn: Connection | None, reason: Reason, user: Any, payload: Any) -> int:
    if reason in _RECEIVES:
        assert conn is not None
        s: EchoSession = user
        if conn.is_final_fragment():
            if s.parts:
                s.parts.append(payload)
                msg = b"".join(s.parts)
                s.parts.clear()
            else:
                msg = payload
            s.queue.append((msg, conn.frame_is_binary()))
            if len(s.queue) >= _HIGH_WATER and not s.paused:
                s.paused = True
                conn.rx_flow_control(False)
            conn.callback_on_writable()
        else:
            s.parts.append(payload)
    elif reason in _WRITEABLES:
        assert conn is not None
        s = user
        if s.queue:
            msg, binary = s.queue.popleft()
            conn.write(msg, _BINARY if binary else _TEXT)
            if s.queue:
                conn.callback_on_writable()
            if s.paused and len(s.queue) <= _LOW_WATER:
                s.paused = False
                conn.rx_flow_control(True)
    elif reason is Reason.HTTP:
        assert conn is not None
        conn.http_response(200, "<h1>lwsbridge echo server</h1>\n")
    return 0
