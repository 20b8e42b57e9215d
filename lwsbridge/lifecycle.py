"""A connection's life as the context sees it: phases, their allowed transitions, timer kinds.

Theory of operation.  The core (:mod:`lwsbridge.core.state`) tracks the protocol:
what may be sent and received.  The context tracks one thing more, what the socket
is for right now, in a :class:`Phase`:

- a server connection starts in ``HTTP`` (reading a request head, answering plain
  HTTP, or waiting for the upgrade) and a client in ``CONNECTING`` (resolving the
  host name, then the non-blocking connect and the TLS handshake); a client enters
  ``HTTP`` once its upgrade request is written;
- ``WS`` once ESTABLISHED / CLIENT_ESTABLISHED has been delivered;
- ``CLOSING`` when the close handshake has begun, or the core is done and only
  queued output (a close frame, an HTTP response) is left to write, bounded by the
  close timeout;
- ``DEAD`` when the socket is closed and the last callback (CLOSED, CLOSED_HTTP or
  CLIENT_CONNECTION_ERROR) has been given.  Nothing leaves ``DEAD``.

Every allowed move is one entry of :data:`TRANSITIONS`; :meth:`Connection.enter`
refuses any other with :class:`~lwsbridge.core.errors.LocalProtocolError`, so a
missing entry is a bug found at once, never a silent state.
"""

from __future__ import annotations

from enum import Enum, IntEnum

__all__ = ["TRANSITIONS", "Phase", "TimerKind"]


class Phase(Enum):
    CONNECTING = "CONNECTING"
    HTTP = "HTTP"
    WS = "WS"
    CLOSING = "CLOSING"
    DEAD = "DEAD"

    # Hashed on every transition (dict lookups): the identity hash is C, Enum's is Python.
    __hash__ = object.__hash__


#: phase -> the phases it may move to
TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.CONNECTING: frozenset({Phase.HTTP, Phase.DEAD}),
    Phase.HTTP: frozenset({Phase.WS, Phase.CLOSING, Phase.DEAD}),
    Phase.WS: frozenset({Phase.CLOSING, Phase.DEAD}),
    Phase.CLOSING: frozenset({Phase.DEAD}),
    Phase.DEAD: frozenset(),
}


class TimerKind(IntEnum):
    """A connection's timers; each kind is armed at most once at a time."""

    #: the protocol timeout: connect, handshake, keep-alive idle, close handshake
    PROTOCOL = 0
    #: the user's ``set_timer`` (lws_set_timer_usecs): a TIMER callback
    USER = 1
    #: keepalive pings (``ping_interval``) and the pong deadline
    PING = 2
