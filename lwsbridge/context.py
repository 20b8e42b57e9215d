"""The context (lws ``lws_context``): owns the sockets, reports poll changes, runs callbacks.

It never blocks.  What it wants watched is reported as poll events (ADD_POLL_FD,
DEL_POLL_FD, SET_MODE_POLL_FD, CLEAR_MODE_POLL_FD) to protocol 0's callback and to an
optional sink (the adapters); the host calls :meth:`Context.service_fd` for fds that
are ready and :meth:`Context.service_pending` when :meth:`Context.next_timeout` says so.
:meth:`Context.service` is a complete built-in loop (the epoll, poll or select adapter)
for simple programs.

It is single-threaded like lws: every method must be called from the thread that
services it, except :meth:`Context.cancel_service`.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import ipaddress
import os
import posixpath
import resource
import socket
import ssl
import stat
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, overload

from lwsbridge.core.connection import WSConnection
from lwsbridge.core.errors import LocalProtocolError
from lwsbridge.core.events import (
    Closed,
    CloseReceived,
    ConnectionFailed,
    DataReceived,
    Established,
    HandshakeFailed,
    Headers,
    HTTPBody,
    HTTPRequest,
    Pong,
    RequestRejected,
    UpgradeRequest,
)
from lwsbridge.core.pollset import (
    POLLERR,
    POLLHUP,
    POLLIN,
    POLLNVAL,
    POLLOUT,
    PollArgs,
)
from lwsbridge.core.state import Role, State
from lwsbridge.log import NOTICE, logger
from lwsbridge.loops import best_array_loop
from lwsbridge.loops import load as load_loop
from lwsbridge.pollreport import PollReporter
from lwsbridge.tls import ClientTLS, ServerTLS, describe_ssl_error, is_self_signed
from lwsbridge.vocabulary import (
    CLOSE,
    ClientConnectInfo,
    PollFd,
    PollFdLike,
    PollSink,
    Protocol,
    Reason,
    Serviceable,
    WriteKind,
)

if TYPE_CHECKING:
    from lwsbridge.adapters._array import ArrayLoop

__all__ = [
    "CLOSE",
    "ClientConnectInfo",
    "Connection",
    "Context",
    "PollFd",
    "PollSink",
    "Protocol",
    "Reason",
    "Serviceable",
    "WriteKind",
]

_TEXT, _BINARY = WriteKind.TEXT, WriteKind.BINARY
_RECEIVE, _CLIENT_RECEIVE = Reason.RECEIVE, Reason.CLIENT_RECEIVE


def _count_open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # less the listing's own fd
    except OSError:
        return 3  # stdin, stdout, stderr


# How a connection's life is going, for the context's bookkeeping.
_HTTP, _WS, _CLOSING, _DEAD, _CONNECTING = range(5)
# A connection's timers: protocol timeouts, the user's set_timer, keepalive pings.
_T_PROTO, _T_USER, _T_PING = range(3)

_CORK = 64 * 1024  # bytes written in one service pass before a flush
_MAX_WRITEABLE_PER_PASS = 64
_READ_SIZE = 256 * 1024


class Connection:
    """One connection (lws ``struct lws``, the "wsi").  Made by the context only."""

    __slots__ = (
        "__weakref__",
        "_awaiting_pong",
        "_client_info",
        "_cur",
        "_established",
        "_file",
        "_gens",
        "_headers",
        "_known_writable",
        "_out",
        "_out_bytes",
        "_pending",
        "_phase",
        "_responded",
        "_rx_enabled",
        "_tls",
        "_tls_hs",
        "_tls_in",
        "_tls_out",
        "_tls_selfsigned",
        "_want_writable",
        "_wrote",
        "close_code",
        "close_reason_text",
        "context",
        "core",
        "fd",
        "peer",
        "protocol",
        "sock",
        "user",
    )

    def __init__(
        self, context: Context, sock: socket.socket | None, peer: Any, core: WSConnection
    ) -> None:
        self.context = context
        self.sock = sock
        self.fd = sock.fileno() if sock is not None else -1
        self.peer = peer
        self.core = core
        self.protocol: Protocol = context.protocols[0]
        self.user: Any = None
        self._phase = _HTTP
        self._established = False
        self._out: list[bytes | memoryview] = []
        self._out_bytes = 0
        self._want_writable = False
        self._known_writable = True
        self._rx_enabled = True
        self._pending: deque[Any] = deque()
        self._cur: DataReceived | None = None
        self._headers: Headers | None = None
        self._wrote = False
        self._responded = False
        self._file: Any = None
        # one generation per timer kind (_T_*): a heap entry is live while it matches
        self._gens = [0, 0, 0]
        self._awaiting_pong = False
        self._client_info: ClientConnectInfo | None = None
        self._tls: ssl.SSLObject | None = None
        self._tls_in: ssl.MemoryBIO | None = None
        self._tls_out: ssl.MemoryBIO | None = None
        self._tls_hs = False  # TLS handshake in progress
        self._tls_selfsigned = False  # accept only a self-signed peer certificate
        self.close_code: int | None = None
        self.close_reason_text = ""

    def __repr__(self) -> str:
        return f"<Connection fd={self.fd} peer={self.peer!r} protocol={self.protocol.name!r}>"

    # -- lws_callback_on_writable / lws_write ------------------------------------------

    def callback_on_writable(self) -> None:
        """Ask for one WRITEABLE callback (lws ``lws_callback_on_writable``)."""
        ctx = self.context
        if ctx._writing is self:
            # Asked from its own WRITEABLE (so from the service thread): the delivery
            # loop sees the flag; nothing else to do.
            self._want_writable = True
            return
        ctx.callback_on_writable(self)

    def write(self, data: bytes | str, kind: WriteKind = WriteKind.TEXT, final: bool = True) -> int:
        """Write one frame (lws ``lws_write``); only inside a WRITEABLE callback, once.

        ``kind`` TEXT/BINARY starts a message, CONTINUATION continues one; ``final``
        False leaves the message open (lws ``LWS_WRITE_NO_FIN``).  Returns the bytes
        of payload accepted.  The frame is queued in full: a partial kernel write is
        finished before the next WRITEABLE.
        """
        ctx = self.context
        if ctx._writing is not self:
            raise LocalProtocolError(
                "write() is only allowed inside this connection's WRITEABLE callback; "
                "call callback_on_writable() and write from there"
            )
        if self._wrote:
            raise LocalProtocolError("only one write() per WRITEABLE callback (as lws)")
        self._wrote = True
        payload = data.encode("utf-8") if isinstance(data, str) else data
        core = self.core
        if (kind is _TEXT or kind is _BINARY) and not core._out_in_message:
            core.send_data(payload, binary=kind is _BINARY, final=final)  # the hot path
            ctx._queue_output(self)
            return len(payload)
        if kind.__class__ is not WriteKind:
            kind = WriteKind(kind)  # a plain int, as C callers of lws_write pass
        if kind is WriteKind.HTTP:
            core.send_http_body(payload)
        elif kind is WriteKind.PING:
            core.send_ping(payload)
        elif kind is WriteKind.PONG:
            core.send_pong(payload)
        else:
            in_message = core._out_in_message
            if kind is WriteKind.CONTINUATION:
                if not in_message:
                    raise LocalProtocolError("CONTINUATION write without a message begun")
                core.send_data(payload, binary=True, final=final)
            else:
                if in_message:
                    raise LocalProtocolError(
                        "a fragmented message is in progress: write CONTINUATION"
                    )
                core.send_data(payload, binary=kind is WriteKind.BINARY, final=final)
        ctx._queue_output(self)
        return len(payload)

    @property
    def buffered_bytes(self) -> int:
        """Bytes written but not yet taken by the kernel (lws_partial_buffered's count)."""
        return self._out_bytes

    def send_pipe_choked(self) -> bool:
        """True while earlier output still waits for the socket (lws_send_pipe_choked)."""
        return bool(self._out) and not self._known_writable

    @property
    def serving_file(self) -> bool:
        """True while serve_file() is still streaming a file on this connection."""
        return self._file is not None

    def close_reason(self, code: int, reason: str | bytes = b"") -> None:
        """Set the close code/reason used when a callback returns -1 (lws_close_reason)."""
        self.close_code = code
        self.close_reason_text = reason.decode("utf-8") if isinstance(reason, bytes) else reason

    def rx_flow_control(self, enable: bool) -> None:
        """Stop (False) or resume (True) reading this connection (lws_rx_flow_control)."""
        self.context._rx_flow(self, enable)

    def set_timer(self, seconds: float | None) -> None:
        """One TIMER callback after ``seconds`` (lws_set_timer_usecs); None cancels."""
        self.context._set_conn_timer(self, seconds)

    # -- fragment accessors, valid inside RECEIVE ----------------------------------------

    def _event(self) -> DataReceived:
        if self._cur is None:
            raise LocalProtocolError("fragment accessors are valid only inside RECEIVE")
        return self._cur

    def is_first_fragment(self) -> bool:
        cur = self._cur
        return (cur if cur is not None else self._event()).is_first

    def is_final_fragment(self) -> bool:
        cur = self._cur
        return (cur if cur is not None else self._event()).is_final

    def remaining_packet_payload(self) -> int:
        return self._event().remaining

    def frame_is_binary(self) -> bool:
        cur = self._cur
        return (cur if cur is not None else self._event()).is_binary

    # -- headers, valid until ESTABLISHED returns ----------------------------------------

    def header(self, name: str) -> str | None:
        """A request header (lws_hdr_copy); only until ESTABLISHED has returned."""
        headers = self.headers()
        value = headers.get(name)
        return None if value is None else value.decode("latin-1")

    def headers(self) -> Headers:
        if self._headers is None:
            raise LocalProtocolError(
                "handshake headers are dropped after ESTABLISHED; copy what you need "
                "in FILTER_PROTOCOL_CONNECTION or ESTABLISHED"
            )
        return self._headers

    # -- HTTP ----------------------------------------------------------------------------

    def http_response(
        self,
        status: int,
        body: bytes | str = b"",
        content_type: str = "text/html; charset=utf-8",
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Answer the current HTTP request in one go (lws_return_http_status style)."""
        data = body.encode("utf-8") if isinstance(body, str) else body
        self._responded = True
        self.core.send_http_response(status, [("Content-Type", content_type), *headers], data)
        self.context._queue_output(self)

    def serve_file(
        self,
        path: str,
        content_type: str = "application/octet-stream",
        headers: Sequence[tuple[str, str]] = (),
    ) -> bool:
        """Stream a file under the context's resource root (lws_serve_http_file).

        ``path`` is relative to the root (a leading "/" is the root itself); ``..``,
        and symlinks leading out of the root, are refused with 404 like a missing
        file.  The file is sent in chunks as the socket drains, never read whole.
        Returns False when a 404 was sent.
        """
        return self.context._serve_file(self, path, content_type, headers)


class Context:
    """lws ``lws_context`` + one vhost: a listening socket (``port``; None for none).

    ``interface`` is the address to bind (lws ``iface``; default all, like lws).
    ``max_message_size`` (default 1 MiB) bounds a received message; ``max_head_size``
    an HTTP head.  ``any_subprotocol``: accept a subprotocol nobody declared, on
    protocol 0 (for echo servers).  ``resource_root``: where serve_file looks.
    Timeouts (seconds): ``handshake_timeout`` (default 5) from accept until the request
    head -- and the WebSocket handshake -- is complete, which also ends slowloris
    clients; ``keepalive_timeout`` (5) for an idle HTTP keep-alive connection;
    ``close_timeout`` (5) for a close handshake the peer never answers;
    ``connect_timeout`` (5) for a client until CLIENT_ESTABLISHED; ``ping_interval``
    (None: off) sends pings and ``pong_timeout`` (default the interval) drops a peer
    that does not answer.  ``ka_time`` / ``ka_probes`` / ``ka_interval``: TCP
    keepalive on every socket (lws's names; 0 = off).  ``max_connections`` lowers the
    limit lws-style derived from RLIMIT_NOFILE; beyond it, connections get a 503 and
    are closed.
    ``writeable_same_pass``: a WRITEABLE asked for while the socket is known to be
    writable is delivered in the same service pass, saving a poll round and two
    SET/CLEAR_MODE changes (benchmarks/README.md has the measurement).
    """

    def __init__(
        self,
        protocols: Sequence[Protocol],
        *,
        port: int | None = 7681,
        interface: str | None = None,
        poll_sink: PollSink | None = None,
        max_message_size: int = 1 << 20,
        max_head_size: int = 8192,
        handshake_timeout: float = 5.0,
        close_timeout: float = 5.0,
        keepalive_timeout: float = 5.0,
        any_subprotocol: bool = False,
        resource_root: str | None = None,
        max_connections: int | None = None,
        listen_backlog: int = 511,
        connect_timeout: float = 5.0,
        writeable_same_pass: bool = True,
        ping_interval: float | None = None,
        pong_timeout: float | None = None,
        ka_time: int = 0,
        ka_probes: int = 0,
        ka_interval: int = 0,
        tls: ServerTLS | None = None,
        client_tls: ClientTLS | None = None,
    ) -> None:
        if not protocols:
            raise ValueError("at least one protocol is needed (protocol 0 handles HTTP)")
        self.protocols: list[Protocol] = list(protocols)
        for i, p in enumerate(self.protocols):
            p.index = i
        self._by_name = {p.name: p for p in self.protocols}
        self._owner = threading.get_ident()
        self._builtin: ArrayLoop | None = None
        self.max_message_size = max_message_size
        self.max_head_size = max_head_size
        self.handshake_timeout = handshake_timeout
        self.close_timeout = close_timeout
        self.keepalive_timeout = keepalive_timeout
        self.connect_timeout = connect_timeout
        self.any_subprotocol = any_subprotocol
        #: deliver WRITEABLE in the same service pass when the socket is known to be
        #: writable (False: wait for POLLOUT from the loop, as lws does)
        self.writeable_same_pass = writeable_same_pass
        #: seconds between keepalive pings on idle-or-not WebSockets; None: no pings
        self.ping_interval = ping_interval
        #: seconds a pong may take before the peer is dropped (default: ping_interval)
        self.pong_timeout = pong_timeout if pong_timeout is not None else ping_interval
        #: TCP keepalive (lws ka_time / ka_probes / ka_interval); 0 = off
        self.ka_time, self.ka_probes, self.ka_interval = ka_time, ka_probes, ka_interval
        self._ka_warned = False
        self._refused_burst = 0
        #: TLS for accepted connections (every one, as an lws vhost with SSL)
        self._server_tls = tls.build() if tls is not None else None
        self._client_tls_default = client_tls
        self._client_tls_cache: dict[int, ssl.SSLContext] = {}
        self.resource_root = os.path.realpath(resource_root) if resource_root else None
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        # lws sizes its fd table from RLIMIT_NOFILE, less the fds already open (and a
        # few for the host and for the context's own pipe, listener and spare fd).
        in_use = _count_open_fds()
        limit = (soft if soft != resource.RLIM_INFINITY else 1 << 20) - in_use - 8
        if limit < 1:
            raise ValueError(
                f"RLIMIT_NOFILE soft limit {soft} leaves no room for connections "
                f"({in_use} fds already open); raise it with 'ulimit -n'"
            )
        self.max_connections = min(max_connections or limit, limit)
        logger.log(
            NOTICE,
            "connection limit %d (RLIMIT_NOFILE %s, %d fds in use%s)",
            self.max_connections,
            soft,
            in_use,
            ", lowered by max_connections" if self.max_connections < limit else "",
        )
        self._poll = PollReporter(self._notify_protocol0, poll_sink)
        self._conns: dict[int, Connection] = {}
        self._ready: deque[Connection] = deque()
        self._timers: list[tuple[float, int, int, int, Connection]] = []
        self._resolving: set[Connection] = set()
        self._resolved: deque[tuple[Connection, Any]] = deque()
        self._timer_seq = 0
        self._writing: Connection | None = None
        self._rbuf = bytearray(_READ_SIZE)
        self._rview = memoryview(self._rbuf)
        self._destroyed = False
        # cancel_service wakeup: a pipe in the poll set.
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._spare_fd: int | None = os.open(os.devnull, os.O_RDONLY)
        self._listen: socket.socket | None = None
        self.port: int | None = None
        if port is not None:
            self._listen = self._make_listener(interface, port, listen_backlog)
            self.port = self._listen.getsockname()[1]
        for p in self.protocols:
            self._call(None, p, Reason.PROTOCOL_INIT, None)
        self._poll.add(self._wake_r, POLLIN)
        if self._listen is not None:
            self._poll.add(self._listen.fileno(), POLLIN)

    # ------------------------------------------------------------------ setup

    @staticmethod
    def _make_listener(interface: str | None, port: int, backlog: int) -> socket.socket:
        host = interface or ""
        family = socket.AF_INET6 if host and ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(backlog)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    def _check_thread(self) -> None:
        if threading.get_ident() != self._owner:
            raise LocalProtocolError(
                "lwsbridge contexts are single-threaded: call this from the thread that "
                "services the context; from other threads only cancel_service() is allowed"
            )

    def adopt_thread(self) -> None:
        """Make the calling thread the one that services this context (before servicing)."""
        self._owner = threading.get_ident()

    def set_poll_sink(self, sink: PollSink | None) -> None:
        """Attach an adapter; it is told about every fd already in the poll set."""
        self._check_thread()
        self._poll.attach(sink)

    @property
    def poll_sink(self) -> PollSink | None:
        """The attached adapter, if any."""
        return self._poll.sink

    def _notify_protocol0(self, reason: Reason, args: PollArgs) -> None:
        self._call(None, self.protocols[0], reason, args)

    def _update_interest(self, conn: Connection) -> None:
        if conn._phase == _DEAD or conn._phase == _CONNECTING:
            return  # a client still connecting watches POLLOUT for the connect itself
        # No reading while events or inflated data wait: input stays in the kernel.
        events = POLLIN if conn._rx_enabled and not conn._pending and not conn.core.pending() else 0
        if (
            conn._out
            or conn._file is not None
            or (
                conn._want_writable
                and (conn._established or not conn._client_info)
                and not (conn._known_writable and self.writeable_same_pass)
            )
        ):
            events |= POLLOUT
        self._poll.want(conn.fd, events)

    # ------------------------------------------------------------------ callbacks

    def _call(
        self, conn: Connection | None, protocol: Protocol, reason: Reason, payload: Any
    ) -> int:
        try:
            r = protocol.callback(conn, reason, conn.user if conn is not None else None, payload)
        except Exception:
            logger.exception(
                "callback %s raised in %s for %r; closing that connection",
                protocol.name,
                reason.name,
                conn,
            )
            return CLOSE
        return r or 0

    # ------------------------------------------------------------------ public servicing

    @overload
    def service_fd(self, pollfd: PollFdLike) -> bool: ...
    @overload
    def service_fd(self, pollfd: int, revents: int) -> int: ...

    def service_fd(self, pollfd: PollFdLike | int, revents: int | None = None) -> bool | int:
        """Service one ready fd (lws ``lws_service_fd``).

        With a pollfd object: if the fd is the context's it is serviced, its
        ``revents`` set to 0, and the result says whether a connection was closed;
        a foreign fd is left untouched (False).  With ``(fd, revents)`` ints: returns
        the revents left over -- 0 when handled, ``revents`` unchanged when foreign.
        """
        self._check_thread()
        if isinstance(pollfd, int):
            if revents is None:
                raise TypeError("service_fd(fd, revents) needs revents")
            fd, rev = pollfd, revents
            if fd not in self._poll:
                return rev
            self._service_guarded(fd, rev)
            return 0
        fd = pollfd.fd
        if fd not in self._poll:
            return False
        rev = pollfd.revents
        pollfd.revents = 0
        return self._service_guarded(fd, rev)

    def _service_guarded(self, fd: int, revents: int) -> bool:
        """A bug of ours must not reach the host's loop: it costs one connection only."""
        try:
            return self._service(fd, revents)
        except Exception:
            self._internal_error(self._conns.get(fd), f"servicing fd {fd}")
            return True

    def next_timeout(self) -> int | None:
        """Milliseconds until the context needs :meth:`service_pending`; 0 = now; None = never.

        0 means forced service: some connection has work without any fd event.
        """
        if self._ready:
            return 0
        timers = self._timers
        while timers:
            deadline, _seq, kind, gen, conn = timers[0]
            if gen != conn._gens[kind] or conn._phase == _DEAD:
                heapq.heappop(timers)
                continue
            return max(0, int((deadline - time.monotonic()) * 1000.0 + 0.999))
        return None

    def service_pending(self) -> None:
        """Run expired timers and forced service (lws: the part of lws_service with no fd)."""
        self._check_thread()
        now = time.monotonic()
        timers = self._timers
        while timers and timers[0][0] <= now:
            _deadline, _seq, kind, gen, conn = heapq.heappop(timers)
            if gen == conn._gens[kind] and conn._phase != _DEAD:
                conn._gens[kind] += 1
                try:
                    self._timer_fired(conn, kind)
                except Exception:
                    self._internal_error(conn, "a timer")
        try:
            self._run_ready()
        except Exception:
            self._internal_error(None, "forced service")

    def _internal_error(self, conn: Connection | None, where: str) -> None:
        logger.exception("lwsbridge internal error in %s; closing %r", where, conn)
        if conn is not None:
            with contextlib.suppress(Exception):
                self._kill(conn, "internal error")

    def service(self, timeout_ms: int | None = 1000) -> None:
        """One round of the built-in loop (lws ``lws_service``).

        It is the array adapter of ``lwsbridge.adapters`` on the best kernel interface
        there is: epoll, else poll, else select.
        """
        self._check_thread()
        if self._builtin is None:
            if self._poll.sink is not None:
                raise LocalProtocolError("this context is driven by an adapter, not service()")
            self._builtin = load_loop(best_array_loop())(self)  # attaches itself as the sink
        self._builtin.run_once(timeout_ms)

    def cancel_service(self) -> None:
        """Wake the servicing thread; every protocol gets EVENT_WAIT_CANCELLED. Thread-safe."""
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"u")

    def callback_on_writable(self, conn: Connection) -> None:
        """lws_callback_on_writable: one WRITEABLE callback for ``conn`` soon."""
        self._check_thread()
        if conn._phase in (_DEAD, _CLOSING) or conn._want_writable:
            return
        conn._want_writable = True
        if self._writing is conn:
            return  # asked from its own WRITEABLE: the delivery loop picks it up
        if conn._client_info is not None and not conn._established:
            return  # kept for after CLIENT_ESTABLISHED
        if conn._known_writable and not conn._out and self.writeable_same_pass:
            self._ready.append(conn)
        else:
            self._update_interest(conn)

    def callback_on_writable_all_protocol(self, protocol: Protocol | str) -> None:
        """lws_callback_on_writable_all_protocol."""
        self._check_thread()
        p = self._by_name[protocol] if isinstance(protocol, str) else protocol
        for conn in list(self._conns.values()):
            if conn._established and conn.protocol is p:
                self.callback_on_writable(conn)

    def connections(self, protocol: Protocol | str | None = None) -> list[Connection]:
        self._check_thread()
        p = self._by_name[protocol] if isinstance(protocol, str) else protocol
        return [
            c for c in self._conns.values() if c._established and (p is None or c.protocol is p)
        ]

    def all_connections(self) -> list[Connection]:
        """Every live connection, in any phase (handshaking, open, closing, connecting)."""
        self._check_thread()
        return [*self._conns.values(), *(c for c in self._resolving if c.fd < 0)]

    @property
    def connection_count(self) -> int:
        """How many connections are alive (what :meth:`all_connections` would list)."""
        return len(self._conns) + sum(1 for c in self._resolving if c.fd < 0)

    @property
    def listen_fd(self) -> int | None:
        """The listening socket's fd (None without a listener or after destroy)."""
        return None if self._listen is None or self._destroyed else self._listen.fileno()

    @property
    def wakeup_fd(self) -> int | None:
        """The read end of the cancel_service wakeup (in the poll set; None after destroy)."""
        return None if self._destroyed else self._wake_r

    @property
    def service_thread(self) -> int:
        """The ident of the thread allowed to service this context."""
        return self._owner

    def close(self, conn: Connection, code: int = 1000, reason: str = "") -> None:
        """Close ``conn`` from outside a callback (a close frame when open)."""
        self._check_thread()
        conn.close_reason(code, reason)
        self._close_gracefully(conn)

    def destroy(self) -> None:
        """lws_context_destroy: close every connection and the listener."""
        self._check_thread()
        if self._destroyed:
            return
        self._destroyed = True
        for conn in [*self._conns.values(), *self._resolving]:
            self._kill(conn, "context destroyed")
        if self._listen is not None:
            self._poll.discard(self._listen.fileno())
            self._listen.close()
        self._poll.discard(self._wake_r)
        os.close(self._wake_r)
        os.close(self._wake_w)
        if self._spare_fd is not None:
            os.close(self._spare_fd)
        for p in self.protocols:
            self._call(None, p, Reason.PROTOCOL_DESTROY, None)
        if self._builtin is not None:
            self._builtin.close()

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    @property
    def fds(self) -> list[tuple[int, int]]:
        """Every fd the context wants watched, with its events (a snapshot)."""
        return self._poll.items()

    # ------------------------------------------------------------------ servicing internals

    def _service(self, fd: int, revents: int) -> bool:
        conn = self._conns.get(fd)
        if conn is None:
            if fd == self._wake_r:
                self._drain_wakeup()
            elif self._listen is not None and fd == self._listen.fileno():
                self._accept()
            self._run_ready()
            return False
        if conn._phase == _CONNECTING and conn._tls is None:
            self._client_connected(conn)
            self._run_ready()
            return conn._phase == _DEAD
        if revents & POLLNVAL or (revents & POLLERR and not conn._rx_enabled):
            self._kill(conn, "socket error")
            self._run_ready()
            return True
        if revents & POLLOUT and conn._phase != _DEAD:
            conn._known_writable = True
            self._flush(conn)
            if conn._phase != _DEAD and not conn._out:
                if conn._file is not None:
                    self._file_more(conn)
                elif conn._want_writable:
                    self._writeable(conn)
        # POLLERR is read like POLLIN: what the peer sent before a reset (a 101, a close
        # frame) is still delivered; then recv() reports the error and the socket closes.
        if revents & (POLLIN | POLLHUP | POLLERR) and conn._phase != _DEAD and conn._rx_enabled:
            self._read(conn)
        if conn._phase != _DEAD:
            self._update_interest(conn)
        self._run_ready()
        return conn._phase == _DEAD

    def _drain_wakeup(self) -> None:
        data = b""
        with contextlib.suppress(BlockingIOError, OSError):
            while chunk := os.read(self._wake_r, 4096):
                data += chunk
        # b"r": a host name was resolved off-thread; b"u": the user's cancel_service.
        while self._resolved:
            conn, result = self._resolved.popleft()
            self._client_resolved(conn, result)
        if b"u" in data:
            for p in self.protocols:
                self._call(None, p, Reason.EVENT_WAIT_CANCELLED, None)

    def _accept(self) -> None:
        assert self._listen is not None
        for _ in range(64):
            try:
                sock, peer = self._listen.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE) and self._spare_fd is not None:
                    # Out of fds: free the spare, take the connection off the backlog
                    # and refuse it, so the listener does not spin (libev's trick).
                    os.close(self._spare_fd)
                    self._spare_fd = None
                    with contextlib.suppress(OSError):
                        s, p = self._listen.accept()
                        s.close()
                        logger.log(NOTICE, "refused connection from %s: out of file descriptors", p)
                    with contextlib.suppress(OSError):
                        self._spare_fd = os.open(os.devnull, os.O_RDONLY)
                    return
                logger.warning("accept failed: %s", exc)
                return
            if len(self._conns) >= self.max_connections:
                self._refuse_over_limit(sock, peer)
                continue
            if self._refused_burst:
                logger.log(NOTICE, "accepting again after refusing %d", self._refused_burst)
                self._refused_burst = 0
            self._keepalive(sock)
            if self._call(None, self.protocols[0], Reason.FILTER_NETWORK_CONNECTION, peer):
                logger.info("connection from %s refused by FILTER_NETWORK_CONNECTION", peer)
                sock.close()
                continue
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            core = WSConnection(
                Role.SERVER,
                max_message_size=self.max_message_size,
                max_head_size=self.max_head_size,
            )
            conn = Connection(self, sock, peer, core)
            if self._server_tls is not None:
                self._tls_start(conn, self._server_tls, server_side=True, hostname=None)
            self._conns[conn.fd] = conn
            try:
                self._poll.add(conn.fd, POLLIN)
            except Exception:
                # The host's loop refused the fd (e.g. select() and fd >= 1024).
                logger.exception("poll sink refused fd %d; dropping %r", conn.fd, conn)
                self._conns.pop(conn.fd, None)
                self._poll.forget(conn.fd)
                conn._phase = _DEAD
                sock.close()
                continue
            if self._call(conn, self.protocols[0], Reason.WSI_CREATE, None) or self._call(
                conn, self.protocols[0], Reason.SERVER_NEW_CLIENT_INSTANTIATED, None
            ):
                self._kill(conn, "refused at creation")
                continue
            self._arm(conn, self.handshake_timeout)

    _BUSY_BODY = b"server at its connection limit\n"
    _BUSY = (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nConnection: close\r\n"
        b"Retry-After: 1\r\nContent-Length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
    )

    def _refuse_over_limit(self, sock: socket.socket, peer: Any) -> None:
        """At the connection limit: say 503 if the socket takes it at once, and close."""
        with contextlib.suppress(OSError):
            sock.setblocking(False)
            sock.send(self._BUSY)
        sock.close()
        if not self._refused_burst:
            logger.log(
                NOTICE,
                "at the limit of %d connections: refusing new ones (first: %s)",
                self.max_connections,
                peer,
            )
        self._refused_burst += 1

    def _keepalive(self, sock: socket.socket) -> None:
        """TCP keepalive as lws sets it (SO_KEEPALIVE + idle / interval / probes)."""
        if not self.ka_time:
            return
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        opts = [
            ("TCP_KEEPIDLE", self.ka_time),
            ("TCP_KEEPINTVL", self.ka_interval),
            ("TCP_KEEPCNT", self.ka_probes),
        ]
        for name, value in opts:
            const = getattr(socket, name, None)
            if const is None:
                # As lws on BSD: only SO_KEEPALIVE, the system's timings apply.
                if not self._ka_warned:
                    self._ka_warned = True
                    logger.log(NOTICE, "TCP keepalive: %s not available here; system timing", name)
                continue
            if value:
                sock.setsockopt(socket.IPPROTO_TCP, const, value)

    def _read(self, conn: Connection) -> None:
        sock = conn.sock
        assert sock is not None  # only connections in the poll set are read
        try:
            n = sock.recv_into(self._rbuf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._kill(conn, f"read error: {exc.strerror or exc}")
            return
        core = conn.core
        if conn._tls is not None and n:
            assert conn._tls_in is not None
            conn._tls_in.write(self._rview[:n])
            self._tls_read(conn)
            return
        if n == 0:
            if core.closed or conn._tls_hs:
                # The peer's FIN after the close handshake (RFC 6455 §7.1.1).
                self._kill(conn, None if core.closed else "closed during the TLS handshake")
                return
            core.receive_eof()
        else:
            core.receive_data(self._rview[:n])
        self._drain_events(conn)

    # ------------------------------------------------------------------ TLS

    def _tls_start(
        self, conn: Connection, ctx: ssl.SSLContext, server_side: bool, hostname: str | None
    ) -> None:
        conn._tls_in = ssl.MemoryBIO()
        conn._tls_out = ssl.MemoryBIO()
        conn._tls = ctx.wrap_bio(
            conn._tls_in, conn._tls_out, server_side=server_side, server_hostname=hostname
        )
        conn._tls_hs = True

    def _tls_handshake(self, conn: Connection) -> bool:
        """Advance the TLS handshake; True once it is complete."""
        tls = conn._tls
        assert tls is not None
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            self._tls_pump(conn)
            return False
        except (ssl.SSLError, ssl.CertificateError, OSError) as exc:
            self._tls_pump(conn)
            why = f"TLS handshake failed: {describe_ssl_error(exc)}"
            if conn.core.role is Role.SERVER:
                logger.log(NOTICE, "%r: %s", conn, why)
            self._kill(conn, why)
            return False
        self._tls_pump(conn)
        conn._tls_hs = False
        if conn._tls_selfsigned:
            der = tls.getpeercert(binary_form=True)
            if not der or not is_self_signed(der):
                self._kill(
                    conn,
                    "TLS handshake failed: certificate verify failed: "
                    "unable to get local issuer certificate (and it is not self-signed)",
                )
                return False
        if conn.core.role is Role.CLIENT and conn._phase == _CONNECTING:
            self._client_send_request(conn)
        return True

    def _tls_read(self, conn: Connection) -> None:
        """Decrypt what arrived and feed the plaintext to the core."""
        tls = conn._tls
        assert tls is not None
        if conn._tls_hs and not self._tls_handshake(conn):
            return
        core = conn.core
        budget = _READ_SIZE * 4
        eof = False
        while budget > 0 and conn._phase != _DEAD:
            try:
                data = tls.read(_READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                eof = True
                break
            except ssl.SSLError as exc:
                self._kill(conn, f"TLS error: {describe_ssl_error(exc)}")
                return
            if not data:
                eof = True
                break
            budget -= len(data)
            core.receive_data(data)
        if eof:
            if core.closed:
                self._kill(conn, None)
                return
            core.receive_eof()
        self._drain_events(conn)
        if conn._phase != _DEAD and self._tls_has_input(conn):
            # Plaintext decrypted or records received but not yet read: forced service,
            # no poll event will come for bytes already off the socket.
            self._ready.append(conn)
        if conn._tls_out is not None and conn._tls_out.pending:
            self._tls_pump(conn)

    @staticmethod
    def _tls_has_input(conn: Connection) -> bool:
        tls, bio = conn._tls, conn._tls_in
        return tls is not None and bio is not None and (tls.pending() > 0 or bio.pending > 0)

    def _tls_pump(self, conn: Connection) -> None:
        """Move TLS records from the outgoing BIO to the socket."""
        bio = conn._tls_out
        if bio is not None and bio.pending:
            data = bio.read()
            conn._out.append(data)
            conn._out_bytes += len(data)
            self._flush(conn)

    def _drain_events(self, conn: Connection) -> None:
        """Deliver every event the core has, including ones that callbacks cause."""
        core = conn.core
        events = core.events()
        while events and conn._phase != _DEAD:
            self._dispatch(conn, events)
            if conn._pending:
                break
            events = core.events()
        if conn._phase != _DEAD:
            self._queue_output(conn)
            if core.pending() and conn._rx_enabled:
                # An extension holds inflated data back: forced service delivers it.
                self._ready.append(conn)

    def _dispatch(self, conn: Connection, events: Iterable[Any]) -> None:
        """Turn core events into callbacks, in order; stop if the connection dies."""
        it = iter(events)
        for ev in it:
            if conn._phase == _DEAD:
                return
            if not conn._rx_enabled and isinstance(ev, DataReceived):
                # rx flow control: keep the rest for when reading resumes.
                conn._pending.append(ev)
                conn._pending.extend(it)
                return
            self._handle(conn, ev)

    def _handle(self, conn: Connection, ev: Any) -> None:
        t = type(ev)
        if t is DataReceived:
            conn._cur = ev
            reason = _RECEIVE if conn._client_info is None else _CLIENT_RECEIVE
            r = self._call(conn, conn.protocol, reason, ev.data)
            conn._cur = None
            if r:
                self._close_gracefully(conn)
        elif t is Pong:
            if conn._awaiting_pong:
                conn._awaiting_pong = False
                self._schedule(conn, _T_PING, self.ping_interval)
            reason = (
                Reason.RECEIVE_PONG if conn.core.role is Role.SERVER else Reason.CLIENT_RECEIVE_PONG
            )
            if self._call(conn, conn.protocol, reason, ev.payload):
                self._close_gracefully(conn)
        elif t is UpgradeRequest:
            self._upgrade(conn, ev)
        elif t is HTTPRequest:
            self._http_request(conn, ev)
        elif t is HTTPBody:
            r = self._call(conn, conn.protocol, Reason.HTTP_BODY, ev.data)
            if not r and ev.final:
                r = self._call(conn, conn.protocol, Reason.HTTP_BODY_COMPLETION, None)
            if r:
                self._kill(conn, "closed by HTTP_BODY callback")
        elif t is CloseReceived:
            # Not for the peer's answer to our own close (lws: LRS_AWAITING_CLOSE_ACK).
            if conn._established and conn._phase == _WS:
                self._call(conn, conn.protocol, Reason.WS_PEER_INITIATED_CLOSE, ev)
        elif t is ConnectionFailed:
            logger.log(NOTICE, "%r failed: %s (close code %d)", conn, ev.reason, ev.code)
        elif t is RequestRejected:
            logger.log(NOTICE, "%r: bad request: HTTP %d %s", conn, ev.status, ev.reason)
        elif t is Closed:
            self._core_closed(conn)
        elif t is Established:
            if conn.core.role is Role.CLIENT:
                self._client_established(conn, ev)
        elif t is HandshakeFailed:
            self._kill(conn, ev.reason)

    def _upgrade(self, conn: Connection, ev: UpgradeRequest) -> None:
        chosen: Protocol | None = None
        subprotocol: str | None = None
        for name in ev.subprotocols:
            if name in self._by_name:
                chosen, subprotocol = self._by_name[name], name
                break
        if chosen is None:
            if ev.subprotocols and not self.any_subprotocol:
                # Browsers fail a connection without the subprotocol they asked for;
                # say so now rather than let them.
                logger.log(NOTICE, "%r: no supported subprotocol in %s", conn, ev.subprotocols)
                conn.core.reject(400, f"unsupported subprotocol(s): {', '.join(ev.subprotocols)}")
                self._queue_output(conn)
                return
            chosen = self.protocols[0]
            subprotocol = ev.subprotocols[0] if ev.subprotocols else None
        conn.protocol = chosen
        conn._headers = ev.headers
        if chosen.user_factory is not None:
            conn.user = chosen.user_factory()
        if self._call(conn, chosen, Reason.FILTER_PROTOCOL_CONNECTION, ev.target):
            conn.core.reject(403, "refused by the server")
            self._queue_output(conn)
            return
        limit = chosen.max_message_size
        if limit is not None:
            conn.core.max_message_size = limit
        factory = chosen.deflate_factory()
        ext = factory.accept(ev.extensions) if factory is not None else None
        self._disarm(conn)
        conn._phase = _WS
        conn._established = True
        # accept() may parse frames already received; hold their events until
        # ESTABLISHED has been delivered.
        conn.core.accept(subprotocol, [ext] if ext is not None else ())
        self._queue_output(conn)
        r = self._call(conn, chosen, Reason.ESTABLISHED, None)
        conn._headers = None
        if r:
            self._close_gracefully(conn)
        elif self.ping_interval and conn._phase == _WS:
            self._schedule(conn, _T_PING, self.ping_interval)

    def _http_request(self, conn: Connection, ev: HTTPRequest) -> None:
        self._disarm(conn)
        conn._headers = ev.headers
        conn._responded = False
        p0 = self.protocols[0]
        if self._call(conn, p0, Reason.FILTER_HTTP_CONNECTION, ev.target):
            conn.http_response(403, "<h1>403 Forbidden</h1>")
        else:
            r = self._call(conn, p0, Reason.HTTP, ev.target)
            if r:
                self._kill(conn, "closed by HTTP callback")
                return
            if not conn._responded and conn._phase != _DEAD:
                conn.http_response(404, "<h1>404 Not Found</h1>")
        conn._headers = None
        if conn._phase != _DEAD and conn.core.state is State.HTTP_HEAD:
            self._arm(conn, self.keepalive_timeout)

    def _core_closed(self, conn: Connection) -> None:
        """The core is done; flush what it queued (close frame, EOF) then close."""
        if conn._phase == _DEAD:
            return
        conn._phase = _CLOSING
        conn._want_writable = False
        conn._file = None
        self._queue_output(conn)
        if conn._phase != _DEAD:
            # The client role waits for the server's FIN (RFC 6455 §7.1.1); so does a
            # server whose close frame has not gone out yet.
            self._arm(conn, self.close_timeout)

    def _close_gracefully(self, conn: Connection) -> None:
        """A callback said close: close frame when open, else just close."""
        if conn._phase == _DEAD:
            return
        core = conn.core
        if core.state is State.OPEN:
            code = conn.close_code or 1000
            try:
                core.send_close(code, conn.close_reason_text)
            except LocalProtocolError:
                core.send_close(1000)
            conn._phase = _CLOSING
            conn._want_writable = False
            self._queue_output(conn)
            self._arm(conn, self.close_timeout)
        elif core.state is State.LOCAL_CLOSING:
            return
        else:
            core.abort("closed by callback")
            self._queue_output(conn)
            if conn._phase != _DEAD:
                self._kill(conn, "closed by callback")

    # ------------------------------------------------------------------ client

    def client_connect(self, info: ClientConnectInfo) -> Connection:
        """Start a client connection (lws ``lws_client_connect_via_info``); never blocks.

        The connection is usable only after CLIENT_ESTABLISHED; anything that goes wrong
        before that gives exactly one CLIENT_CONNECTION_ERROR with a readable reason.
        A host name is resolved on a helper thread and handed back through the
        context's wakeup; a numeric address connects at once.
        """
        self._check_thread()
        if self._destroyed:
            raise LocalProtocolError("the context is destroyed")
        if info.protocol is None:
            protocol = self.protocols[0]
        elif info.protocol in self._by_name:
            protocol = self._by_name[info.protocol]
        else:
            raise LocalProtocolError(f"no protocol named {info.protocol!r} in this context")
        limit = protocol.max_message_size
        core = WSConnection(
            Role.CLIENT,
            max_message_size=self.max_message_size if limit is None else limit,
            max_head_size=self.max_head_size,
        )
        conn = Connection(self, None, (info.address, info.port), core)
        conn.protocol = protocol
        conn._client_info = info
        conn._phase = _CONNECTING
        if info.user is not None:
            conn.user = info.user
        elif protocol.user_factory is not None:
            conn.user = protocol.user_factory()
        self._resolving.add(conn)
        self._arm(conn, info.timeout if info.timeout is not None else self.connect_timeout)
        try:
            ip = ipaddress.ip_address(info.address)
        except ValueError:
            threading.Thread(
                target=self._resolve_host, args=(conn, info.address, info.port), daemon=True
            ).start()
        else:
            family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
            self._client_resolved(conn, [(family, (info.address, info.port))])
        return conn

    def _resolve_host(self, conn: Connection, host: str, port: int) -> None:
        """Runs on a helper thread: getaddrinfo, then wake the service thread."""
        result: Any
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            result = [(fam, addr) for fam, _t, _p, _c, addr in infos]
        except OSError as exc:
            result = exc
        self._resolved.append((conn, result))
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"r")

    def _client_resolved(self, conn: Connection, result: Any) -> None:
        if conn not in self._resolving or conn._phase == _DEAD:
            return  # timed out or destroyed meanwhile
        self._resolving.discard(conn)
        if isinstance(result, OSError) or not result:
            self._kill(conn, f"cannot resolve {conn.peer[0]}: {result}")
            return
        family, addr = result[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._keepalive(sock)
        err = sock.connect_ex(addr)
        conn.sock = sock
        conn.fd = sock.fileno()
        self._conns[conn.fd] = conn
        if err not in (0, errno.EINPROGRESS, errno.EAGAIN):
            self._kill(conn, f"connect to {addr[0]} port {addr[1]} failed: {os.strerror(err)}")
            return
        # Writable means connected (or failed: SO_ERROR says which).
        self._poll.add(conn.fd, POLLOUT)

    def _client_connected(self, conn: Connection) -> None:
        assert conn.sock is not None and conn._client_info is not None
        err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            addr = conn.peer
            self._kill(conn, f"connect to {addr[0]} port {addr[1]} failed: {os.strerror(err)}")
            return
        info = conn._client_info
        if info.ssl:
            settings = info.ssl if isinstance(info.ssl, ClientTLS) else self._client_tls_default
            settings = settings or ClientTLS()
            key = id(settings)
            ctx = self._client_tls_cache.get(key)
            if ctx is None:
                ctx = self._client_tls_cache[key] = settings.build()
            conn._tls_selfsigned = settings.allow_self_signed and not settings.insecure
            self._tls_start(conn, ctx, server_side=False, hostname=info.host or info.address)
            self._poll.want(conn.fd, POLLIN)
            self._tls_handshake(conn)
            return
        self._client_send_request(conn)

    def _client_send_request(self, conn: Connection) -> None:
        info = conn._client_info
        assert info is not None
        extra: list[tuple[str, str]] = list(info.headers)
        if self._call(conn, conn.protocol, Reason.CLIENT_APPEND_HANDSHAKE_HEADER, extra):
            self._kill(conn, "refused by CLIENT_APPEND_HANDSHAKE_HEADER")
            return
        if info.subprotocols is not None:
            offered = list(info.subprotocols)
        else:
            offered = [info.protocol] if info.protocol else []
        host = info.host
        if host is None:
            h = f"[{info.address}]" if ":" in info.address else info.address
            host = h if info.port in (80, 443) else f"{h}:{info.port}"
        try:
            factory = conn.protocol.deflate_factory()
            exts = [factory] if factory is not None else []
            conn.core.initiate(host, info.path, offered, exts, info.origin, extra)
        except LocalProtocolError as exc:
            self._kill(conn, f"bad request: {exc}")
            return
        conn._phase = _HTTP
        self._queue_output(conn)
        self._update_interest(conn)

    def _client_established(self, conn: Connection, ev: Established) -> None:
        conn._headers = ev.headers
        if self._call(conn, conn.protocol, Reason.CLIENT_FILTER_PRE_ESTABLISH, ev):
            conn._headers = None
            self._kill(conn, "refused by CLIENT_FILTER_PRE_ESTABLISH")
            return
        self._disarm(conn)
        conn._phase = _WS
        conn._established = True
        r = self._call(conn, conn.protocol, Reason.CLIENT_ESTABLISHED, ev.subprotocol)
        conn._headers = None
        if r:
            self._close_gracefully(conn)
            return
        if conn._want_writable:
            self._ready.append(conn)  # asked for before the connection was established
        if self.ping_interval and conn._phase == _WS:
            self._schedule(conn, _T_PING, self.ping_interval)

    # ------------------------------------------------------------------ writing

    def _queue_output(self, conn: Connection) -> None:
        """Move the core's output to the connection and write what the kernel takes."""
        chunks = conn.core.data_to_send()
        if chunks:
            if conn._tls is not None:
                chunks = self._tls_encrypt(conn, chunks)
            for c in chunks:
                conn._out.append(c)
                conn._out_bytes += len(c)
            if self._writing is not conn or conn._out_bytes >= _CORK or not chunks[-1]:
                self._flush(conn)
        elif conn._out and self._writing is not conn:
            self._flush(conn)

    def _tls_encrypt(self, conn: Connection, chunks: list[bytes]) -> list[bytes]:
        """Plaintext chunks (b"" = end) to TLS records; close_notify before the end."""
        tls, bio = conn._tls, conn._tls_out
        assert tls is not None and bio is not None
        out: list[bytes] = []
        for c in chunks:
            if c:
                try:
                    tls.write(c)
                except ssl.SSLError:
                    continue  # the connection is failing; the end marker follows
            else:
                with contextlib.suppress(ssl.SSLError, OSError):
                    tls.unwrap()  # queues close_notify; the peer's answer is not awaited
                if bio.pending:
                    out.append(bio.read())
                out.append(b"")
                return out
        if bio.pending:
            out.append(bio.read())
        return out

    def _flush(self, conn: Connection) -> None:
        out = conn._out
        sock = conn.sock
        assert sock is not None  # output exists only once connected
        while out:
            first = out[0]
            if not first:  # b"" marks end of stream: everything before it is out
                self._kill(conn, None)
                return
            try:
                if len(out) == 1 or not out[1]:
                    n = sock.send(first)
                else:
                    end = 1
                    while end < len(out) and end < 64 and out[end]:
                        end += 1
                    n = sock.sendmsg(out[:end])
            except (BlockingIOError, InterruptedError):
                conn._known_writable = False
                break
            except OSError as exc:
                self._kill(conn, f"write error: {exc.strerror or exc}")
                return
            conn._out_bytes -= n
            while n:
                c = out[0]
                if n >= len(c):
                    n -= len(c)
                    out.pop(0)
                else:
                    out[0] = memoryview(c)[n:]
                    n = 0
                    conn._known_writable = False
            if not conn._known_writable:
                break
        if conn._phase != _DEAD and conn._out_bytes == 0 and not out:
            conn._known_writable = True

    def _writeable(self, conn: Connection) -> None:
        """Deliver WRITEABLE while it is wanted and the socket takes the data."""
        core = conn.core
        if core.state is not State.OPEN and core.state is not State.HTTP_RESPONDING:
            conn._want_writable = False
            return
        reason = Reason.SERVER_WRITEABLE if core.role is Role.SERVER else Reason.CLIENT_WRITEABLE
        if core.state is State.HTTP_RESPONDING:
            reason = Reason.HTTP_WRITEABLE
        n = 0
        limit = _MAX_WRITEABLE_PER_PASS if self.writeable_same_pass else 1
        while conn._want_writable and conn._phase in (_WS, _HTTP) and n < limit:
            if conn._out_bytes >= _CORK:
                self._flush(conn)
            if conn._out and not conn._known_writable:
                break  # the kernel is full: POLLOUT will bring us back
            conn._want_writable = False
            conn._wrote = False
            self._writing = conn
            try:
                r = self._call(conn, conn.protocol, reason, None)
            finally:
                self._writing = None
            n += 1
            if r:
                self._close_gracefully(conn)
                return
        if conn._out and conn._phase != _DEAD:
            self._flush(conn)
        if n >= limit and conn._want_writable and not conn._out and conn._phase != _DEAD:
            if self.writeable_same_pass:
                self._ready.append(conn)  # fairness cap reached: carry on next pass
            else:
                self._update_interest(conn)

    def _run_ready(self) -> None:
        """Forced service: WRITEABLE for writable sockets, held events after rx resumes."""
        ready = self._ready
        for _ in range(len(ready)):
            conn = ready.popleft()
            if conn._phase == _DEAD:
                continue
            if conn._pending and conn._rx_enabled:
                pending = list(conn._pending)
                conn._pending.clear()
                self._dispatch(conn, pending)
                if conn._phase == _DEAD:
                    continue
                if not conn._pending:
                    self._drain_events(conn)
            if conn.core.pending() and conn._rx_enabled and not conn._pending:
                conn.core.process_pending()
                self._drain_events(conn)
                if conn._phase == _DEAD:
                    continue
            if conn._tls is not None and conn._rx_enabled and self._tls_has_input(conn):
                self._tls_read(conn)
                if conn._phase == _DEAD:
                    continue
            if conn._want_writable and not conn._out and conn._known_writable:
                self._writeable(conn)
            if conn._phase != _DEAD:
                self._update_interest(conn)

    def _rx_flow(self, conn: Connection, enable: bool) -> None:
        self._check_thread()
        if conn._rx_enabled == enable or conn._phase == _DEAD:
            return
        conn._rx_enabled = enable
        if enable and (conn._pending or conn.core.pending()):
            self._ready.append(conn)
        self._update_interest(conn)

    # ------------------------------------------------------------------ timers

    def _schedule(self, conn: Connection, kind: int, seconds: float | None) -> None:
        """(Re)arm or, with None, cancel one of the connection's timers."""
        conn._gens[kind] += 1
        if seconds is not None:
            self._timer_seq += 1
            heapq.heappush(
                self._timers,
                (time.monotonic() + seconds, self._timer_seq, kind, conn._gens[kind], conn),
            )

    def _arm(self, conn: Connection, seconds: float) -> None:
        """The connection's protocol timeout (connect, handshake, close, keep-alive)."""
        self._schedule(conn, _T_PROTO, seconds)

    def _disarm(self, conn: Connection) -> None:
        self._schedule(conn, _T_PROTO, None)

    def _set_conn_timer(self, conn: Connection, seconds: float | None) -> None:
        self._check_thread()
        if conn._phase == _DEAD or conn._phase == _CLOSING:
            return
        self._schedule(conn, _T_USER, seconds)

    def _timer_fired(self, conn: Connection, kind: int) -> None:
        if kind == _T_USER:
            if self._call(conn, conn.protocol, Reason.TIMER, None):
                self._close_gracefully(conn)
        elif kind == _T_PING:
            self._ping_due(conn)
        elif conn.core.role is Role.CLIENT and not conn._established:
            self._kill(conn, "timed out: no WebSocket handshake within the connect timeout")
        elif conn._phase == _HTTP:
            self._kill(conn, "timed out waiting for the request")
        else:
            self._kill(conn, "timed out closing")

    def _ping_due(self, conn: Connection) -> None:
        """Keepalive pings (``ping_interval``): no pong since the last ping drops the peer."""
        if conn._phase != _WS or conn.core.state is not State.OPEN:
            return
        if conn._awaiting_pong:
            logger.log(NOTICE, "%r: no pong within %.1f s; dropping it", conn, self.pong_timeout)
            self._kill(conn, "no pong")
            return
        conn._awaiting_pong = True
        conn.core.send_ping(b"")
        self._queue_output(conn)
        if conn._phase != _DEAD:
            self._schedule(conn, _T_PING, self.pong_timeout)

    # ------------------------------------------------------------------ closing

    def _kill(self, conn: Connection, why: str | None) -> None:
        """Close the socket now: DEL_POLL_FD, close, CLOSED/CLOSED_HTTP, WSI_DESTROY."""
        if conn._phase == _DEAD:
            return
        conn._phase = _DEAD
        conn._gens = [g + 1 for g in conn._gens]
        conn._out.clear()
        conn._out_bytes = 0
        conn._pending.clear()
        if conn._file is not None:
            with contextlib.suppress(OSError):
                conn._file.close()
            conn._file = None
        if why:
            logger.debug("%r closing: %s", conn, why)
        self._resolving.discard(conn)
        if conn.fd >= 0:
            self._poll.discard(conn.fd)
            self._conns.pop(conn.fd, None)
        if conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.close()
        conn.core.abort(why or "closed")
        if conn.core.role is Role.CLIENT:
            if conn._established:
                self._call(conn, conn.protocol, Reason.CLOSED, None)
            else:
                # Exactly one CLIENT_CONNECTION_ERROR, and nothing else, for a client
                # that never got established.
                reason_text = why or "connection closed during the handshake"
                logger.info("client connection to %s failed: %s", conn.peer, reason_text)
                self._call(conn, conn.protocol, Reason.CLIENT_CONNECTION_ERROR, reason_text)
            return
        reason = Reason.CLOSED if conn._established else Reason.CLOSED_HTTP
        self._call(conn, conn.protocol, reason, None)
        self._call(conn, self.protocols[0], Reason.WSI_DESTROY, None)

    # ------------------------------------------------------------------ HTTP files

    def _serve_file(
        self,
        conn: Connection,
        path: str,
        content_type: str,
        headers: Sequence[tuple[str, str]],
    ) -> bool:
        self._check_thread()
        conn._responded = True
        full = self._resolve(path)
        f = None
        if full is not None:
            try:
                f = open(full, "rb")  # noqa: SIM115 - closed when streaming ends
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode):
                    f.close()
                    f = None
            except OSError:
                f = None
        if f is None:
            conn.core.send_http_response(
                404, [("Content-Type", "text/html; charset=utf-8")], b"<h1>404 Not Found</h1>"
            )
            self._queue_output(conn)
            return False
        conn.core.send_http_response(
            200,
            [("Content-Type", content_type), ("Content-Length", str(st.st_size)), *headers],
            end=False,
        )
        conn._file = f
        self._queue_output(conn)
        if conn._phase != _DEAD:
            self._file_more(conn)
        return True

    def _resolve(self, path: str) -> str | None:
        root = self.resource_root
        if root is None:
            return None
        rel = path.split("?", 1)[0].lstrip("/")
        if "\x00" in rel:
            return None
        parts = [p for p in rel.split("/") if p not in ("", ".")]
        if any(p == ".." for p in parts):
            return None
        full = os.path.realpath(posixpath.join(root, *parts)) if parts else root
        if full != root and not full.startswith(root + os.sep):
            return None  # a symlink out of the root
        if os.path.isdir(full):
            full = os.path.join(full, "index.html")
        return full

    def _file_more(self, conn: Connection) -> None:
        """Send the next chunks of the file being served while the socket takes them."""
        f = conn._file
        while f is not None and not conn._out and conn._phase != _DEAD:
            data = f.read(_CORK)
            if not data:
                f.close()
                conn._file = None
                conn.core.send_http_body(b"", end=True)
                self._queue_output(conn)
                if conn._phase != _DEAD and self._call(
                    conn, conn.protocol, Reason.HTTP_FILE_COMPLETION, None
                ):
                    self._kill(conn, "closed by HTTP_FILE_COMPLETION")
                    return
                if conn._phase != _DEAD and conn.core.state is State.HTTP_HEAD:
                    self._arm(conn, self.keepalive_timeout)
                    # A pipelined request may already be parsed.
                    self._drain_events(conn)
                return
            conn.core.send_http_body(data)
            self._queue_output(conn)


__all__ += ["POLLERR", "POLLHUP", "POLLIN", "POLLOUT", "PollArgs"]
