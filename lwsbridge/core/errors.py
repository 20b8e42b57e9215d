"""Exceptions of the sans-IO core: whose fault it was, and what to tell the peer."""

from __future__ import annotations

__all__ = ["LocalProtocolError", "ProtocolError", "RemoteProtocolError"]


class ProtocolError(Exception):
    """Base class of every error the core raises."""


class LocalProtocolError(ProtocolError):
    """The caller misused the API: sent in the wrong state, bad arguments.

    This is a bug in the program using lwsbridge; the connection state is unchanged.
    """


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol.

    ``receive_data()`` never raises this: it is used inside the core to carry the
    close code (RFC 6455 §7.4.1) or HTTP status the peer should get, and surfaces only
    from stand-alone helpers such as :func:`lwsbridge.core.http11.parse_request_head`.
    """

    def __init__(self, reason: str, *, code: int = 1002, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        #: WebSocket close code to send (1002 protocol error, 1007 bad data, 1009 too big)
        self.code = code
        #: HTTP status to answer with during the handshake (400, 426, 431, ...)
        self.status = status
