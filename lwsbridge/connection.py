"""A connection (lws ``struct lws``, the "wsi"): what callbacks get, and its bookkeeping.

The methods are the lws per-connection API (``lws_write``, ``lws_callback_on_writable``,
``lws_rx_flow_control``, ...); each hands the work to the context, which owns the
sockets, except ``write`` and ``callback_on_writable``, which run once per message and
do theirs with the context's service directly (the context's methods of the same
names call them).  The attributes below the public ones are the state the context's parts
keep per connection; callbacks may read them but never change them.  The phase is
the connection's own: it moves only through :meth:`Connection.enter`, along the
table in :mod:`lwsbridge.lifecycle`.
"""

from __future__ import annotations

import socket
import threading
from collections import deque
from collections.abc import Sequence
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from lwsbridge import log as _log
from lwsbridge.core.connection import WSConnection
from lwsbridge.core.errors import LocalProtocolError
from lwsbridge.core.events import DataReceived, Headers
from lwsbridge.core.state import Role
from lwsbridge.fileserve import FileStream
from lwsbridge.lifecycle import TRANSITIONS, Phase
from lwsbridge.output import Output
from lwsbridge.tls_transport import TLSTransport
from lwsbridge.vocabulary import ClientConnectInfo, Protocol, WriteKind

if TYPE_CHECKING:
    from lwsbridge.context import Context
    from lwsbridge.service import Service

__all__ = ["Connection"]

_get_ident = threading.get_ident
_TEXT, _BINARY = WriteKind.TEXT, WriteKind.BINARY
_CLOSING = Phase.CLOSING
# Looked up once: an Enum class's attribute read goes through its metaclass's
# __getattr__ hook (~0.1 us), and these run for every connection.
_CONNECTING, _HTTP, _DEAD = Phase.CONNECTING, Phase.HTTP, Phase.DEAD

#: what a call from a thread other than the servicing one raises
WRONG_THREAD = (
    "lwsbridge contexts are single-threaded: call this from the thread that "
    "services the context; from other threads only cancel_service() is allowed"
)
_NOT_WRITEABLE = (
    "write() is only allowed inside this connection's WRITEABLE callback; "
    "call callback_on_writable() and write from there"
)


class Connection:
    """One connection.  Made by the context only."""

    __slots__ = (
        "__weakref__",
        "_phase",
        "_svc",
        "alive",
        "awaiting_pong",
        "client_info",
        "close_code",
        "close_reason_text",
        "context",
        "core",
        "established",
        "fd",
        "file",
        "handshake_headers",
        "head_next",
        "held",
        "http_method",
        "in_ready",
        "output",
        "peer",
        "protocol",
        "responded",
        "role",
        "rx_enabled",
        "rx_event",
        "sock",
        "timer_gens",
        "tls",
        "user",
        "want_writable",
        "wrote",
    )

    def __init__(
        self,
        context: Context,
        sock: socket.socket | None,
        peer: Any,
        core: WSConnection,
        client_info: ClientConnectInfo | None = None,
        *,
        service: Service,
    ) -> None:
        self.context = context
        # The context's service, for the per-message calls (write, callback_on_writable)
        # to do their work here rather than one call level further, in the context.
        self._svc = service
        self.sock = sock
        self.fd = sock.fileno() if sock is not None else -1
        self.peer = peer
        self.core = core
        self.protocol: Protocol = context.protocols[0]
        self.user: Any = None
        self.close_code: int | None = None
        self.close_reason_text = ""
        #: Role.SERVER for accepted connections, Role.CLIENT for client_connect()
        self.role: Role = core.role
        #: the client's connect info (None on the server side)
        self.client_info = client_info
        self._phase = _CONNECTING if client_info is not None else _HTTP
        #: False once closed (phase DEAD): nothing more happens on it
        self.alive = True
        #: ESTABLISHED / CLIENT_ESTABLISHED was delivered
        self.established = False
        self.output = Output()
        self.want_writable = False
        #: on the service's ready queue (forced service), so it is queued once
        self.in_ready = False
        self.rx_enabled = True
        #: events kept while reading is paused (rx_flow_control)
        self.held: deque[Any] = deque()
        #: the message piece being delivered in RECEIVE (fragment accessors read it)
        self.rx_event: DataReceived | None = None
        self.handshake_headers: Headers | None = None
        #: the method of the HTTP request being answered (None outside the HTTP callback)
        self.http_method: str | None = None
        self.wrote = False
        self.responded = False
        self.file: FileStream | None = None
        #: one generation per TimerKind (owned by lwsbridge.timers)
        self.timer_gens = [0, 0, 0]
        self.awaiting_pong = False
        self.tls: TLSTransport | None = None
        #: the last read ended a large frame gathered whole: the service reads the next
        #: frame's header alone (see Service._read)
        self.head_next = False

    def __repr__(self) -> str:
        return f"<Connection fd={self.fd} peer={self.peer!r} protocol={self.protocol.name!r}>"

    # -- the phase ------------------------------------------------------------------------

    if TYPE_CHECKING:

        @property
        def phase(self) -> Phase: ...

    else:
        # Read-only, with a C getter: read several times per message, no Python frame.
        phase = property(attrgetter("_phase"), doc="The connection's phase (see enter()).")

    def enter(self, phase: Phase) -> None:
        """Move to ``phase``; a move missing from lifecycle.TRANSITIONS is a bug."""
        if phase not in TRANSITIONS[self._phase]:
            raise LocalProtocolError(f"{self!r}: no transition {self._phase.name} -> {phase.name}")
        self._phase = phase
        if phase is _DEAD:
            self.alive = False

    @property
    def is_client(self) -> bool:
        return self.client_info is not None

    # -- lws_callback_on_writable / lws_write ------------------------------------------

    # Both run once per echoed message or so: their work is done here (Context's
    # methods of the same name call these), not one call level further.

    def callback_on_writable(self) -> None:
        """Ask for one WRITEABLE callback (lws ``lws_callback_on_writable``)."""
        svc = self._svc
        if _get_ident() != svc.owner:
            raise LocalProtocolError(WRONG_THREAD)
        if self.want_writable or not self.alive or self._phase is _CLOSING:
            return
        self.want_writable = True
        if svc.writing is self:
            return  # asked from its own WRITEABLE: the delivery loop picks it up
        if self.client_info is not None and not self.established:
            return  # kept for after CLIENT_ESTABLISHED
        out = self.output
        if out.writable and not out.chunks and self.context.writeable_same_pass:
            if not self.in_ready:  # svc.make_ready, in place: once per echoed message
                self.in_ready = True
                svc.ready.append(self)
        else:
            svc.update_interest(self)

    def write(self, data: bytes | str, kind: WriteKind = _TEXT, final: bool = True) -> int:
        """Write one frame (lws ``lws_write``); only inside a WRITEABLE callback, once.

        ``kind`` TEXT/BINARY starts a message, CONTINUATION continues one; ``final``
        False leaves the message open (lws ``LWS_WRITE_NO_FIN``).  Returns the bytes
        of payload accepted.  The frame is queued in full: a partial kernel write is
        finished before the next WRITEABLE.
        """
        svc = self._svc
        if svc.writing is not self or _get_ident() != svc.owner:
            raise LocalProtocolError(_NOT_WRITEABLE)
        if self.wrote:
            raise LocalProtocolError("only one write() per WRITEABLE callback (as lws)")
        self.wrote = True
        payload = data.encode("utf-8") if isinstance(data, str) else data
        if _log.frames:  # one attribute test when frame logging is off
            _log.tx_frame(self, kind, len(payload), final)
        core = self.core
        if (kind is _TEXT or kind is _BINARY) and not core.in_message_out:
            core.send_data(payload, binary=kind is _BINARY, final=final)  # the hot path
            svc.queue_output(self)
            return len(payload)
        if kind.__class__ is not WriteKind:
            kind = WriteKind(kind)  # a plain int, as C callers of lws_write pass
        if kind is WriteKind.HTTP:
            core.send_http_body(payload)
        elif kind is WriteKind.PING:
            core.send_ping(payload)
        elif kind is WriteKind.PONG:
            core.send_pong(payload)
        elif kind is WriteKind.CONTINUATION:
            if not core.in_message_out:
                raise LocalProtocolError("CONTINUATION write without a message begun")
            core.send_data(payload, binary=True, final=final)
        else:
            if core.in_message_out:
                raise LocalProtocolError("a fragmented message is in progress: write CONTINUATION")
            core.send_data(payload, binary=kind is WriteKind.BINARY, final=final)
        svc.queue_output(self)
        return len(payload)

    @property
    def buffered_bytes(self) -> int:
        """Bytes written but not yet taken by the kernel (lws_partial_buffered's count)."""
        return self.output.nbytes

    def send_pipe_choked(self) -> bool:
        """True while earlier output still waits for the socket (lws_send_pipe_choked)."""
        return self.output.choked()

    @property
    def serving_file(self) -> bool:
        """True while serve_file() is still streaming a file on this connection."""
        return self.file is not None

    def close_reason(self, code: int, reason: str | bytes = b"") -> None:
        """Set the close code/reason used when a callback returns -1 (lws_close_reason)."""
        self.close_code = code
        self.close_reason_text = reason.decode("utf-8") if isinstance(reason, bytes) else reason

    def rx_flow_control(self, enable: bool) -> None:
        """Stop (False) or resume (True) reading this connection (lws_rx_flow_control)."""
        self.context.rx_flow_control(self, enable)

    def set_timer(self, seconds: float | None) -> None:
        """One TIMER callback after ``seconds`` (lws_set_timer_usecs); None cancels."""
        self.context.set_timer(self, seconds)

    # -- fragment accessors, valid inside RECEIVE ----------------------------------------

    def _event(self) -> DataReceived:
        if self.rx_event is None:
            raise LocalProtocolError("fragment accessors are valid only inside RECEIVE")
        return self.rx_event

    def is_first_fragment(self) -> bool:
        cur = self.rx_event
        return (cur if cur is not None else self._event()).is_first

    def is_final_fragment(self) -> bool:
        cur = self.rx_event
        return (cur if cur is not None else self._event()).is_final

    def remaining_packet_payload(self) -> int:
        return self._event().remaining

    def frame_is_binary(self) -> bool:
        cur = self.rx_event
        return (cur if cur is not None else self._event()).is_binary

    # -- headers, valid until ESTABLISHED returns ----------------------------------------

    def header(self, name: str) -> str | None:
        """A request header (lws_hdr_copy); only until ESTABLISHED has returned."""
        headers = self.headers()
        value = headers.get(name)
        return None if value is None else value.decode("latin-1")

    def headers(self) -> Headers:
        if self.handshake_headers is None:
            raise LocalProtocolError(
                "handshake headers are dropped after ESTABLISHED; copy what you need "
                "in FILTER_PROTOCOL_CONNECTION or ESTABLISHED"
            )
        return self.handshake_headers

    # -- HTTP ----------------------------------------------------------------------------

    def http_response(
        self,
        status: int,
        body: bytes | str = b"",
        content_type: str = "text/html; charset=utf-8",
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Answer the current HTTP request in one go (lws_return_http_status style)."""
        self.context.http_response(self, status, body, content_type, headers)

    def serve_file(
        self,
        path: str,
        content_type: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> bool:
        """Answer the current request with a file under the resource root (lws_serve_http_file).

        ``path`` is the request path, relative to the root (a leading "/" is the root
        itself), percent-decoded here; ``..`` and symlinks leading out of the root are
        refused with 404 like a missing file.  ``content_type`` None: from the file
        name.  HEAD, 304, Range (206/416), 301 to a directory's slash and 405 for
        other methods are handled (see :mod:`lwsbridge.fileserve`).  The file is sent
        in chunks as the socket drains, never read whole.  Returns False when no file
        went out (404, 301, 405, 416).
        """
        return self.context.serve_file(self, path, content_type, headers)
