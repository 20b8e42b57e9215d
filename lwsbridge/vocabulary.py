"""The words the context, its callbacks and the loops share (lws's public structs and enums).

Nothing here does anything: callback reasons and write kinds with lws's numbers, the
protocol and client-connect descriptions, the pollfd shape, and the two typing
protocols that connect a context with a loop: :class:`PollSink` (what a loop
implements to mirror the poll set) and :class:`Serviceable` (what a loop drives).
Loops are written against these, never against the context class itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any
from typing import Protocol as TypingProtocol

from lwsbridge.core.deflate import PerMessageDeflateFactory
from lwsbridge.tls import ClientTLS

if TYPE_CHECKING:
    from lwsbridge.connection import Connection

__all__ = [
    "CLOSE",
    "Callback",
    "ClientConnectInfo",
    "PollFd",
    "PollFdLike",
    "PollSink",
    "Protocol",
    "Reason",
    "Serviceable",
    "WriteKind",
]

#: return this (or any non-zero int) from a callback to close the connection
CLOSE = -1


class Reason(IntEnum):
    """Callback reasons, numbered as ``enum lws_callback_reasons`` in lws 4.1."""

    ESTABLISHED = 0  # LWS_CALLBACK_ESTABLISHED
    CLIENT_CONNECTION_ERROR = 1  # LWS_CALLBACK_CLIENT_CONNECTION_ERROR
    CLIENT_FILTER_PRE_ESTABLISH = 2  # LWS_CALLBACK_CLIENT_FILTER_PRE_ESTABLISH
    CLIENT_ESTABLISHED = 3  # LWS_CALLBACK_CLIENT_ESTABLISHED
    CLOSED = 4  # LWS_CALLBACK_CLOSED
    CLOSED_HTTP = 5  # LWS_CALLBACK_CLOSED_HTTP
    RECEIVE = 6  # LWS_CALLBACK_RECEIVE
    RECEIVE_PONG = 7  # LWS_CALLBACK_RECEIVE_PONG
    CLIENT_RECEIVE = 8  # LWS_CALLBACK_CLIENT_RECEIVE
    CLIENT_RECEIVE_PONG = 9  # LWS_CALLBACK_CLIENT_RECEIVE_PONG
    CLIENT_WRITEABLE = 10  # LWS_CALLBACK_CLIENT_WRITEABLE
    SERVER_WRITEABLE = 11  # LWS_CALLBACK_SERVER_WRITEABLE
    HTTP = 12  # LWS_CALLBACK_HTTP
    HTTP_BODY = 13  # LWS_CALLBACK_HTTP_BODY
    HTTP_BODY_COMPLETION = 14  # LWS_CALLBACK_HTTP_BODY_COMPLETION
    HTTP_FILE_COMPLETION = 15  # LWS_CALLBACK_HTTP_FILE_COMPLETION
    HTTP_WRITEABLE = 16  # LWS_CALLBACK_HTTP_WRITEABLE
    FILTER_NETWORK_CONNECTION = 17  # LWS_CALLBACK_FILTER_NETWORK_CONNECTION
    FILTER_HTTP_CONNECTION = 18  # LWS_CALLBACK_FILTER_HTTP_CONNECTION
    SERVER_NEW_CLIENT_INSTANTIATED = 19  # LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED
    FILTER_PROTOCOL_CONNECTION = 20  # LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION
    CLIENT_APPEND_HANDSHAKE_HEADER = 24  # LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER
    PROTOCOL_INIT = 27  # LWS_CALLBACK_PROTOCOL_INIT
    PROTOCOL_DESTROY = 28  # LWS_CALLBACK_PROTOCOL_DESTROY
    WSI_CREATE = 29  # LWS_CALLBACK_WSI_CREATE
    WSI_DESTROY = 30  # LWS_CALLBACK_WSI_DESTROY
    ADD_POLL_FD = 32  # LWS_CALLBACK_ADD_POLL_FD
    DEL_POLL_FD = 33  # LWS_CALLBACK_DEL_POLL_FD
    CHANGE_MODE_POLL_FD = 34  # LWS_CALLBACK_CHANGE_MODE_POLL_FD (not sent; see SET/CLEAR)
    LOCK_POLL = 35  # LWS_CALLBACK_LOCK_POLL
    UNLOCK_POLL = 36  # LWS_CALLBACK_UNLOCK_POLL
    WS_PEER_INITIATED_CLOSE = 38  # LWS_CALLBACK_WS_PEER_INITIATED_CLOSE
    EVENT_WAIT_CANCELLED = 71  # LWS_CALLBACK_EVENT_WAIT_CANCELLED
    TIMER = 73  # LWS_CALLBACK_TIMER
    SET_MODE_POLL_FD = 300  # lws 1.x LWS_CALLBACK_SET_MODE_POLL_FD
    CLEAR_MODE_POLL_FD = 301  # lws 1.x LWS_CALLBACK_CLEAR_MODE_POLL_FD


class WriteKind(IntEnum):
    """``enum lws_write_protocol``."""

    TEXT = 0  # LWS_WRITE_TEXT
    BINARY = 1  # LWS_WRITE_BINARY
    CONTINUATION = 2  # LWS_WRITE_CONTINUATION
    HTTP = 3  # LWS_WRITE_HTTP
    PING = 5  # LWS_WRITE_PING
    PONG = 6  # LWS_WRITE_PONG


#: ``callback(conn, reason, user, payload) -> int``: non-zero (CLOSE) closes ``conn``
Callback = Callable[["Connection | None", Reason, Any, Any], "int | None"]


@dataclass
class Protocol:
    """One entry of lws's protocols array.

    ``name`` is the subprotocol; ``callback(conn, reason, user, payload) -> int``;
    ``user_factory()`` makes the per-connection user object (lws per_session_data).
    Protocol 0 also gets the context-wide reasons and plain HTTP.
    """

    name: str
    callback: Callback
    user_factory: Callable[[], Any] | None = None
    #: largest message accepted on this protocol (None: the context's limit)
    max_message_size: int | None = None
    #: permessage-deflate (RFC 7692), off by default: True for the defaults, or a
    #: configured factory.  Negotiated only when the peer offers (server) or accepts
    #: (client) it; the message limit applies to the inflated size.
    deflate: PerMessageDeflateFactory | bool = False
    index: int = field(default=-1, init=False)

    def deflate_factory(self) -> PerMessageDeflateFactory | None:
        """The permessage-deflate factory to negotiate with, or None when off."""
        d = self.deflate
        if d is True:
            d = self.deflate = PerMessageDeflateFactory()
        return d or None


@dataclass
class ClientConnectInfo:
    """lws ``struct lws_client_connect_info``: where and how to connect.

    ``protocol`` names the local :class:`Protocol` that gets the callbacks and is the
    subprotocol asked for (lws does the same); ``subprotocols`` offers a different list.
    ``host`` is the Host header (default ``address[:port]``). ``timeout``: seconds until
    CLIENT_ESTABLISHED (default: the context's ``connect_timeout``, 5 s).
    """

    address: str
    port: int = 80
    path: str = "/"
    host: str | None = None
    origin: str | None = None
    protocol: str | None = None
    subprotocols: Sequence[str] | None = None
    headers: Sequence[tuple[str, str]] = ()
    ssl: bool | ClientTLS = False
    timeout: float | None = None
    user: Any = None


class PollSink(TypingProtocol):
    """What a loop implements to mirror the context's poll set (lws's external poll).

    Every call carries what the fd had before, so a loop keeps no shadow table:
    ``add_fd`` for a new fd, ``change_fd`` with the old and new masks, ``del_fd``
    with the mask it had, always before the fd is closed.  Masks are Linux
    ``struct pollfd`` bits (POLLIN, POLLOUT); a mask of 0 means "keep it, watch nothing".

    Optional: a class attribute ``add_is_final = True`` says that an ``add_fd`` that
    returns has the fd watched (a refusal raises), so the context reads a socket it
    has just accepted in the same pass instead of waiting for the loop to report it.
    """

    def add_fd(self, fd: int, events: int) -> None: ...
    def del_fd(self, fd: int, events: int) -> None: ...
    def change_fd(self, fd: int, old: int, new: int) -> None: ...


class PollFd:
    """A ``struct pollfd`` for hosts that keep their own array."""

    __slots__ = ("events", "fd", "revents")

    def __init__(self, fd: int, events: int = 0, revents: int = 0) -> None:
        self.fd = fd
        self.events = events
        self.revents = revents

    def __repr__(self) -> str:
        return f"PollFd(fd={self.fd}, events={self.events:#x}, revents={self.revents:#x})"


class PollFdLike(TypingProtocol):
    """Anything with ``fd`` and ``revents``: what ``service_fd`` takes."""

    fd: int
    revents: int


class Serviceable(TypingProtocol):
    """What a loop drives: the part of the context's API that adapters use.

    ``service_fd(fd, revents)`` returns the revents left over (0 when the fd was the
    context's); ``next_timeout()`` is milliseconds until ``service_pending()`` is due
    (0: now, None: no timer); ``cancel_service()`` is the only thread-safe call.
    """

    def set_poll_sink(self, sink: PollSink | None) -> None: ...
    def service_fd(self, pollfd: int, revents: int) -> int: ...
    def service_pending(self) -> None: ...
    def next_timeout(self) -> int | None: ...
    def cancel_service(self) -> None: ...
    @property
    def fds(self) -> list[tuple[int, int]]: ...
