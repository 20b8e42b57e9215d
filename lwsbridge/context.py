"""The context (lws ``lws_context``): configuration, the service API, and callback dispatch.

It never blocks.  What it wants watched is reported as poll events (ADD_POLL_FD,
DEL_POLL_FD, SET_MODE_POLL_FD, CLEAR_MODE_POLL_FD) to protocol 0's callback and to an
optional sink (the adapters); the host calls :meth:`Context.service_fd` for fds that
are ready and :meth:`Context.service_pending` when :meth:`Context.next_timeout` says so.
:meth:`Context.service` is a complete built-in loop (the best array loop: epoll,
poll or select) for simple programs.

The context coordinates; the jobs live in parts that own their state
(docs/architecture.md draws them): :mod:`~lwsbridge.pollreport` (the poll set and
sink), :mod:`~lwsbridge.timers`, :mod:`~lwsbridge.wakeup` (the self-pipe),
:mod:`~lwsbridge.listener` (accept, the limit, 503), :mod:`~lwsbridge.connector`
(client resolve and connect), :mod:`~lwsbridge.tls_transport` (TLS over MemoryBIO),
:mod:`~lwsbridge.output` (writes), :mod:`~lwsbridge.fileserve` (files) and
:mod:`~lwsbridge.connection` (the connection and its phase).

It is single-threaded like lws: every method must be called from the thread that
services it, except :meth:`Context.cancel_service`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, overload

from lwsbridge.connection import Connection
from lwsbridge.connector import Addresses, Connector
from lwsbridge.core.connection import WSConnection
from lwsbridge.core.errors import LocalProtocolError
from lwsbridge.core.events import (
    Closed,
    CloseReceived,
    ConnectionFailed,
    DataReceived,
    Established,
    HandshakeFailed,
    HTTPBody,
    HTTPRequest,
    Pong,
    RequestRejected,
    UpgradeRequest,
)
from lwsbridge.core.pollset import POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT, PollArgs
from lwsbridge.core.state import Role, State
from lwsbridge.fileserve import FileServer
from lwsbridge.keepalive import TCPKeepalive
from lwsbridge.lifecycle import Phase, TimerKind
from lwsbridge.listener import Listener, connection_limit
from lwsbridge.log import NOTICE, logger
from lwsbridge.loops import best_array_loop
from lwsbridge.loops import load as load_loop
from lwsbridge.output import CORK
from lwsbridge.pollreport import PollReporter
from lwsbridge.timers import Timers
from lwsbridge.tls import ClientTLS, ServerTLS
from lwsbridge.tls_transport import TLSFailure, TLSTransport
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
from lwsbridge.wakeup import USER, Wakeup

__all__ = [
    "CLOSE",
    "POLLERR",
    "POLLHUP",
    "POLLIN",
    "POLLOUT",
    "ClientConnectInfo",
    "Connection",
    "Context",
    "PollArgs",
    "PollFd",
    "PollSink",
    "Protocol",
    "Reason",
    "Serviceable",
    "WriteKind",
]

_TEXT, _BINARY = WriteKind.TEXT, WriteKind.BINARY
_RECEIVE, _CLIENT_RECEIVE = Reason.RECEIVE, Reason.CLIENT_RECEIVE
_HTTP, _WS, _CLOSING, _CONNECTING = Phase.HTTP, Phase.WS, Phase.CLOSING, Phase.CONNECTING
_MAX_WRITEABLE_PER_PASS = 64
_READ_SIZE = 256 * 1024


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
        self._builtin: Any = None
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
        keepalive = TCPKeepalive(ka_time, ka_probes, ka_interval)
        #: TLS for accepted connections (every one, as an lws vhost with SSL)
        self._server_tls = tls.build() if tls is not None else None
        self._files = FileServer(resource_root)
        self.resource_root = self._files.root
        self.max_connections = connection_limit(max_connections)
        self._poll = PollReporter(self._notify_protocol0, poll_sink)
        self._conns: dict[int, Connection] = {}
        self._ready: deque[Connection] = deque()
        self._timers = Timers()
        #: the connection inside its WRITEABLE callback (the only one allowed to write)
        self.writing: Connection | None = None
        self._rbuf = bytearray(_READ_SIZE)
        self._rview = memoryview(self._rbuf)
        self._destroyed = False
        self._wakeup = Wakeup()
        self._connector = Connector(self._wakeup, keepalive, client_tls)
        self._listener: Listener | None = None
        self.port: int | None = None
        if port is not None:
            self._listener = Listener(
                interface, port, listen_backlog, limit=self.max_connections, keepalive=keepalive
            )
            self.port = self._listener.port
        for p in self.protocols:
            self._call(None, p, Reason.PROTOCOL_INIT, None)
        self._poll.add(self._wakeup.fd, POLLIN)
        if self._listener is not None:
            self._poll.add(self._listener.fd, POLLIN)

    # ------------------------------------------------------------------ setup, threads

    def _check_thread(self) -> None:
        if threading.get_ident() != self._owner:
            raise LocalProtocolError(
                "lwsbridge contexts are single-threaded: call this from the thread that "
                "services the context; from other threads only cancel_service() is allowed"
            )

    def adopt_thread(self) -> None:
        """Make the calling thread the one that services this context (before servicing)."""
        self._owner = threading.get_ident()

    @property
    def service_thread(self) -> int:
        """The ident of the thread allowed to service this context."""
        return self._owner

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
        if not conn.alive or conn.phase is _CONNECTING:
            return  # a client still connecting watches POLLOUT for the connect itself
        # No reading while events or inflated data wait: input stays in the kernel.
        events = POLLIN if conn.rx_enabled and not conn.held and not conn.core.pending() else 0
        if (
            conn.output
            or conn.file is not None
            or (
                conn.want_writable
                and (conn.established or conn.client_info is None)
                and not (conn.output.writable and self.writeable_same_pass)
            )
        ):
            events |= POLLOUT
        self._poll.want(conn.fd, events)

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
        deadline = self._timers.next_deadline()
        if deadline is None:
            return None
        return max(0, int((deadline - time.monotonic()) * 1000.0 + 0.999))

    def service_pending(self) -> None:
        """Run expired timers and forced service (lws: the part of lws_service with no fd)."""
        self._check_thread()
        for conn, kind in self._timers.pop_expired(time.monotonic()):
            if not conn.alive:
                continue  # closed by an earlier timer of this pass
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

        It is the array loop of ``lwsbridge.adapters`` on the best kernel interface
        there is (epoll, else poll, else select), found through :mod:`lwsbridge.loops`.
        """
        self._check_thread()
        builtin = self._builtin
        if builtin is None:
            if self._poll.sink is not None:
                raise LocalProtocolError("this context is driven by an adapter, not service()")
            builtin = self._builtin = load_loop(best_array_loop())(self)  # attaches as sink
        builtin.run_once(timeout_ms)

    def cancel_service(self) -> None:
        """Wake the servicing thread; every protocol gets EVENT_WAIT_CANCELLED. Thread-safe."""
        self._wakeup.wake(USER)

    def callback_on_writable(self, conn: Connection) -> None:
        """lws_callback_on_writable: one WRITEABLE callback for ``conn`` soon."""
        self._check_thread()
        if conn.want_writable or not conn.alive or conn.phase is _CLOSING:
            return
        conn.want_writable = True
        if self.writing is conn:
            return  # asked from its own WRITEABLE: the delivery loop picks it up
        if conn.client_info is not None and not conn.established:
            return  # kept for after CLIENT_ESTABLISHED
        if conn.output.writable and not conn.output and self.writeable_same_pass:
            self._ready.append(conn)
        else:
            self._update_interest(conn)

    def callback_on_writable_all_protocol(self, protocol: Protocol | str) -> None:
        """lws_callback_on_writable_all_protocol."""
        self._check_thread()
        p = self._by_name[protocol] if isinstance(protocol, str) else protocol
        for conn in list(self._conns.values()):
            if conn.established and conn.protocol is p:
                self.callback_on_writable(conn)

    def connections(self, protocol: Protocol | str | None = None) -> list[Connection]:
        """The established connections (of ``protocol``, when given)."""
        self._check_thread()
        p = self._by_name[protocol] if isinstance(protocol, str) else protocol
        return [c for c in self._conns.values() if c.established and (p is None or c.protocol is p)]

    def all_connections(self) -> list[Connection]:
        """Every live connection, in any phase (handshaking, open, closing, connecting)."""
        self._check_thread()
        return [*self._conns.values(), *(c for c in self._connector.resolving if c.fd < 0)]

    @property
    def connection_count(self) -> int:
        """How many connections are alive (what :meth:`all_connections` would list)."""
        return len(self._conns) + sum(1 for c in self._connector.resolving if c.fd < 0)

    @property
    def listen_fd(self) -> int | None:
        """The listening socket's fd (None without a listener or after destroy)."""
        return None if self._listener is None or self._destroyed else self._listener.fd

    @property
    def wakeup_fd(self) -> int | None:
        """The read end of the cancel_service wakeup (in the poll set; None after destroy)."""
        return None if self._destroyed else self._wakeup.fd

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
        for conn in [*self._conns.values(), *self._connector.resolving]:
            self._kill(conn, "context destroyed")
        self._connector.close()
        if self._listener is not None:
            self._poll.discard(self._listener.fd)
            self._listener.close()
        self._poll.discard(self._wakeup.fd)
        self._wakeup.close()
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

    # ------------------------------------------------------------------ the per-connection API

    def write(
        self, conn: Connection, data: bytes | str, kind: WriteKind = _TEXT, final: bool = True
    ) -> int:
        """lws_write: one frame on ``conn``, only inside its WRITEABLE callback, once."""
        if self.writing is not conn or threading.get_ident() != self._owner:
            raise LocalProtocolError(
                "write() is only allowed inside this connection's WRITEABLE callback; "
                "call callback_on_writable() and write from there"
            )
        if conn.wrote:
            raise LocalProtocolError("only one write() per WRITEABLE callback (as lws)")
        conn.wrote = True
        payload = data.encode("utf-8") if isinstance(data, str) else data
        core = conn.core
        if (kind is _TEXT or kind is _BINARY) and not core.out_in_message:
            core.send_data(payload, binary=kind is _BINARY, final=final)  # the hot path
            self._queue_output(conn)
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
            if not core.out_in_message:
                raise LocalProtocolError("CONTINUATION write without a message begun")
            core.send_data(payload, binary=True, final=final)
        else:
            if core.out_in_message:
                raise LocalProtocolError("a fragmented message is in progress: write CONTINUATION")
            core.send_data(payload, binary=kind is WriteKind.BINARY, final=final)
        self._queue_output(conn)
        return len(payload)

    def rx_flow_control(self, conn: Connection, enable: bool) -> None:
        """lws_rx_flow_control: stop (False) or resume (True) reading ``conn``."""
        self._check_thread()
        if conn.rx_enabled == enable or not conn.alive:
            return
        conn.rx_enabled = enable
        if enable and (conn.held or conn.core.pending()):
            self._ready.append(conn)
        self._update_interest(conn)

    def set_timer(self, conn: Connection, seconds: float | None) -> None:
        """lws_set_timer_usecs: one TIMER callback for ``conn`` after ``seconds``; None cancels."""
        self._check_thread()
        if not conn.alive or conn.phase is _CLOSING:
            return
        self._timers.schedule(conn, TimerKind.USER, seconds)

    def http_response(
        self,
        conn: Connection,
        status: int,
        body: bytes | str = b"",
        content_type: str = "text/html; charset=utf-8",
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Answer ``conn``'s current HTTP request in one go (lws_return_http_status style)."""
        self._check_thread()
        data = body.encode("utf-8") if isinstance(body, str) else body
        conn.responded = True
        conn.core.send_http_response(status, [("Content-Type", content_type), *headers], data)
        self._queue_output(conn)

    def serve_file(
        self,
        conn: Connection,
        path: str,
        content_type: str = "application/octet-stream",
        headers: Sequence[tuple[str, str]] = (),
    ) -> bool:
        """lws_serve_http_file: stream a file under ``resource_root``; False when 404."""
        self._check_thread()
        conn.responded = True
        stream = self._files.open(path)
        if stream is None:
            conn.core.send_http_response(
                404, [("Content-Type", "text/html; charset=utf-8")], b"<h1>404 Not Found</h1>"
            )
            self._queue_output(conn)
            return False
        conn.core.send_http_response(
            200,
            [("Content-Type", content_type), ("Content-Length", str(stream.size)), *headers],
            end=False,
        )
        conn.file = stream
        self._queue_output(conn)
        if conn.alive:
            self._file_more(conn)
        return True

    # ------------------------------------------------------------------ servicing internals

    def _service(self, fd: int, revents: int) -> bool:
        conn = self._conns.get(fd)
        if conn is None:
            if fd == self._wakeup.fd:
                self._woken()
            elif self._listener is not None and fd == self._listener.fd:
                self._accept()
            self._run_ready()
            return False
        if conn.phase is _CONNECTING and conn.tls is None:
            self._client_connected(conn)
            self._run_ready()
            return not conn.alive
        if revents & POLLNVAL or (revents & POLLERR and not conn.rx_enabled):
            self._kill(conn, "socket error")
            self._run_ready()
            return True
        if revents & POLLOUT:
            conn.output.writable = True
            self._flush(conn)
            if conn.alive and not conn.output:
                if conn.file is not None:
                    self._file_more(conn)
                elif conn.want_writable:
                    self._writeable(conn)
        # POLLERR is read like POLLIN: what the peer sent before a reset (a 101, a close
        # frame) is still delivered; then recv() reports the error and the socket closes.
        if revents & (POLLIN | POLLHUP | POLLERR) and conn.alive and conn.rx_enabled:
            self._read(conn)
        if conn.alive:
            self._update_interest(conn)
        self._run_ready()
        return not conn.alive

    def _woken(self) -> None:
        data = self._wakeup.drain()
        for conn, result in self._connector.take_resolved():
            self._client_resolved(conn, result)
        if USER in data:
            for p in self.protocols:
                self._call(None, p, Reason.EVENT_WAIT_CANCELLED, None)

    def _accept(self) -> None:
        assert self._listener is not None
        p0 = self.protocols[0]
        conns = self._conns
        for sock, peer in self._listener.accept(conns.__len__):
            if self._call(None, p0, Reason.FILTER_NETWORK_CONNECTION, peer):
                logger.info("connection from %s refused by FILTER_NETWORK_CONNECTION", peer)
                sock.close()
                continue
            core = WSConnection(
                Role.SERVER,
                max_message_size=self.max_message_size,
                max_head_size=self.max_head_size,
            )
            conn = Connection(self, sock, peer, core)
            if self._server_tls is not None:
                conn.tls = TLSTransport(self._server_tls, server_side=True)
            conns[conn.fd] = conn
            try:
                self._poll.add(conn.fd, POLLIN)
            except Exception:
                # The host's loop refused the fd (e.g. select() and fd >= 1024).
                logger.exception("poll sink refused fd %d; dropping %r", conn.fd, conn)
                conns.pop(conn.fd, None)
                self._poll.forget(conn.fd)
                conn.enter(Phase.DEAD)
                sock.close()
                continue
            if self._call(conn, p0, Reason.WSI_CREATE, None) or self._call(
                conn, p0, Reason.SERVER_NEW_CLIENT_INSTANTIATED, None
            ):
                self._kill(conn, "refused at creation")
                continue
            self._timers.schedule(conn, TimerKind.PROTOCOL, self.handshake_timeout)

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
        tls = conn.tls
        if tls is not None and n:
            tls.feed(self._rview[:n])
            self._tls_read(conn, tls)
            return
        if n == 0:
            if core.closed or (tls is not None and tls.handshaking):
                # The peer's FIN after the close handshake (RFC 6455 §7.1.1).
                self._kill(conn, None if core.closed else "closed during the TLS handshake")
                return
            core.receive_eof()
        else:
            core.receive_data(self._rview[:n])
        self._drain_events(conn)

    # ------------------------------------------------------------------ TLS

    def _tls_handshake(self, conn: Connection, tls: TLSTransport) -> bool:
        """Advance the TLS handshake; True once it is complete."""
        try:
            done = tls.handshake()
        except TLSFailure as exc:
            self._tls_pump(conn, tls)
            if conn.role is Role.SERVER:
                logger.log(NOTICE, "%r: %s", conn, exc)
            self._kill(conn, str(exc))
            return False
        self._tls_pump(conn, tls)
        if done and conn.phase is _CONNECTING:
            self._client_send_request(conn)
        return done and conn.alive

    def _tls_read(self, conn: Connection, tls: TLSTransport) -> None:
        """Decrypt what arrived and feed the plaintext to the core."""
        if tls.handshaking and not self._tls_handshake(conn, tls):
            return
        core = conn.core
        budget = _READ_SIZE * 4
        eof = False
        while budget > 0 and conn.alive:
            try:
                data = tls.read(_READ_SIZE)
            except TLSFailure as exc:
                self._kill(conn, str(exc))
                return
            if data is None:
                eof = True
                break
            if not data:
                break
            budget -= len(data)
            core.receive_data(data)
        if eof:
            if core.closed:
                self._kill(conn, None)
                return
            core.receive_eof()
        self._drain_events(conn)
        if conn.alive and tls.has_input():
            # Plaintext decrypted or records received but not yet read: forced service,
            # no poll event will come for bytes already off the socket.
            self._ready.append(conn)
        if conn.alive:
            self._tls_pump(conn, tls)

    def _tls_pump(self, conn: Connection, tls: TLSTransport) -> None:
        """Move TLS records from the transport to the socket."""
        data = tls.take_output()
        if data:
            conn.output.push(data)
            self._flush(conn)

    # ------------------------------------------------------------------ dispatch

    def _drain_events(self, conn: Connection) -> None:
        """Deliver every event the core has, including ones that callbacks cause."""
        core = conn.core
        events = core.events()
        while events and conn.alive:
            self._dispatch(conn, events)
            if conn.held:
                break
            events = core.events()
        if conn.alive:
            self._queue_output(conn)
            if core.pending() and conn.rx_enabled:
                # An extension holds inflated data back: forced service delivers it.
                self._ready.append(conn)

    def _dispatch(self, conn: Connection, events: Iterable[Any]) -> None:
        """Turn core events into callbacks, in order; stop if the connection dies."""
        it = iter(events)
        for ev in it:
            if not conn.alive:
                return
            if not conn.rx_enabled and isinstance(ev, DataReceived):
                # rx flow control: keep the rest for when reading resumes.
                conn.held.append(ev)
                conn.held.extend(it)
                return
            self._handle(conn, ev)

    def _handle(self, conn: Connection, ev: Any) -> None:
        t = type(ev)
        if t is DataReceived:
            conn.rx_event = ev
            reason = _RECEIVE if conn.client_info is None else _CLIENT_RECEIVE
            r = self._call(conn, conn.protocol, reason, ev.data)
            conn.rx_event = None
            if r:
                self._close_gracefully(conn)
        elif t is Pong:
            if conn.awaiting_pong:
                conn.awaiting_pong = False
                self._timers.schedule(conn, TimerKind.PING, self.ping_interval)
            reason = Reason.RECEIVE_PONG if conn.role is Role.SERVER else Reason.CLIENT_RECEIVE_PONG
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
            if conn.established and conn.phase is _WS:
                self._call(conn, conn.protocol, Reason.WS_PEER_INITIATED_CLOSE, ev)
        elif t is ConnectionFailed:
            logger.log(NOTICE, "%r failed: %s (close code %d)", conn, ev.reason, ev.code)
        elif t is RequestRejected:
            logger.log(NOTICE, "%r: bad request: HTTP %d %s", conn, ev.status, ev.reason)
        elif t is Closed:
            self._core_closed(conn)
        elif t is Established:
            if conn.role is Role.CLIENT:
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
        conn.handshake_headers = ev.headers
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
        self._timers.schedule(conn, TimerKind.PROTOCOL, None)
        conn.enter(_WS)
        conn.established = True
        # accept() may parse frames already received; hold their events until
        # ESTABLISHED has been delivered.
        conn.core.accept(subprotocol, [ext] if ext is not None else ())
        self._queue_output(conn)
        r = self._call(conn, chosen, Reason.ESTABLISHED, None)
        conn.handshake_headers = None
        if r:
            self._close_gracefully(conn)
        elif self.ping_interval and conn.phase is _WS:
            self._timers.schedule(conn, TimerKind.PING, self.ping_interval)

    def _http_request(self, conn: Connection, ev: HTTPRequest) -> None:
        self._timers.schedule(conn, TimerKind.PROTOCOL, None)
        conn.handshake_headers = ev.headers
        conn.responded = False
        p0 = self.protocols[0]
        if self._call(conn, p0, Reason.FILTER_HTTP_CONNECTION, ev.target):
            self.http_response(conn, 403, "<h1>403 Forbidden</h1>")
        else:
            r = self._call(conn, p0, Reason.HTTP, ev.target)
            if r:
                self._kill(conn, "closed by HTTP callback")
                return
            if not conn.responded and conn.alive:
                self.http_response(conn, 404, "<h1>404 Not Found</h1>")
        conn.handshake_headers = None
        if conn.alive and conn.core.state is State.HTTP_HEAD:
            self._timers.schedule(conn, TimerKind.PROTOCOL, self.keepalive_timeout)

    # ------------------------------------------------------------------ closing

    def _core_closed(self, conn: Connection) -> None:
        """The core is done; flush what it queued (close frame, EOF) then close."""
        if not conn.alive:
            return
        if conn.phase is not _CLOSING:
            conn.enter(_CLOSING)
        conn.want_writable = False
        if conn.file is not None:
            conn.file.close()
            conn.file = None
        self._queue_output(conn)
        if conn.alive:
            # The client role waits for the server's FIN (RFC 6455 §7.1.1); so does a
            # server whose close frame has not gone out yet.
            self._timers.schedule(conn, TimerKind.PROTOCOL, self.close_timeout)

    def _close_gracefully(self, conn: Connection) -> None:
        """A callback said close: close frame when open, else just close."""
        if not conn.alive:
            return
        core = conn.core
        if core.state is State.OPEN:
            code = conn.close_code or 1000
            try:
                core.send_close(code, conn.close_reason_text)
            except LocalProtocolError:
                core.send_close(1000)
            if conn.phase is not _CLOSING:
                conn.enter(_CLOSING)
            conn.want_writable = False
            self._queue_output(conn)
            self._timers.schedule(conn, TimerKind.PROTOCOL, self.close_timeout)
        elif core.state is State.LOCAL_CLOSING:
            return
        else:
            core.abort("closed by callback")
            self._queue_output(conn)
            if conn.alive:
                self._kill(conn, "closed by callback")

    def _kill(self, conn: Connection, why: str | None) -> None:
        """Close the socket now: DEL_POLL_FD, close, CLOSED/CLOSED_HTTP, WSI_DESTROY."""
        if not conn.alive:
            return
        conn.enter(Phase.DEAD)
        Timers.cancel_all(conn)
        conn.output.clear()
        conn.held.clear()
        if conn.file is not None:
            conn.file.close()
            conn.file = None
        if why:
            logger.debug("%r closing: %s", conn, why)
        self._connector.settle(conn)
        if conn.fd >= 0:
            self._poll.discard(conn.fd)
            self._conns.pop(conn.fd, None)
        if conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.close()
        conn.core.abort(why or "closed")
        if conn.role is Role.CLIENT:
            if conn.established:
                self._call(conn, conn.protocol, Reason.CLOSED, None)
            else:
                # Exactly one CLIENT_CONNECTION_ERROR, and nothing else, for a client
                # that never got established.
                reason_text = why or "connection closed during the handshake"
                logger.info("client connection to %s failed: %s", conn.peer, reason_text)
                self._call(conn, conn.protocol, Reason.CLIENT_CONNECTION_ERROR, reason_text)
            return
        reason = Reason.CLOSED if conn.established else Reason.CLOSED_HTTP
        self._call(conn, conn.protocol, reason, None)
        self._call(conn, self.protocols[0], Reason.WSI_DESTROY, None)

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
        conn = Connection(self, None, (info.address, info.port), core, client_info=info)
        conn.protocol = protocol
        if info.user is not None:
            conn.user = info.user
        elif protocol.user_factory is not None:
            conn.user = protocol.user_factory()
        timeout = info.timeout if info.timeout is not None else self.connect_timeout
        self._timers.schedule(conn, TimerKind.PROTOCOL, timeout)
        addresses = self._connector.resolve(conn, info.address, info.port)
        if addresses is not None:
            self._client_resolved(conn, addresses)
        return conn

    def _client_resolved(self, conn: Connection, result: Addresses | OSError) -> None:
        if not self._connector.settle(conn) or not conn.alive:
            return  # timed out or destroyed meanwhile
        if isinstance(result, OSError) or not result:
            self._kill(conn, f"cannot resolve {conn.peer[0]}: {result}")
            return
        family, addr = result[0]
        sock, err = self._connector.open(family, addr)
        conn.sock = sock
        conn.fd = sock.fileno()
        self._conns[conn.fd] = conn
        if err is not None:
            self._kill(conn, err)
            return
        # Writable means connected (or failed: SO_ERROR says which).
        self._poll.add(conn.fd, POLLOUT)

    def _client_connected(self, conn: Connection) -> None:
        info = conn.client_info
        assert conn.sock is not None and info is not None
        err = self._connector.connect_error(conn.sock, conn.peer)
        if err is not None:
            self._kill(conn, err)
            return
        if info.ssl:
            tls = conn.tls = self._connector.tls_for(info)
            self._poll.want(conn.fd, POLLIN)
            self._tls_handshake(conn, tls)
            return
        self._client_send_request(conn)

    def _client_send_request(self, conn: Connection) -> None:
        info = conn.client_info
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
        conn.enter(_HTTP)
        self._queue_output(conn)
        self._update_interest(conn)

    def _client_established(self, conn: Connection, ev: Established) -> None:
        conn.handshake_headers = ev.headers
        if self._call(conn, conn.protocol, Reason.CLIENT_FILTER_PRE_ESTABLISH, ev):
            conn.handshake_headers = None
            self._kill(conn, "refused by CLIENT_FILTER_PRE_ESTABLISH")
            return
        self._timers.schedule(conn, TimerKind.PROTOCOL, None)
        conn.enter(_WS)
        conn.established = True
        r = self._call(conn, conn.protocol, Reason.CLIENT_ESTABLISHED, ev.subprotocol)
        conn.handshake_headers = None
        if r:
            self._close_gracefully(conn)
            return
        if conn.want_writable:
            self._ready.append(conn)  # asked for before the connection was established
        if self.ping_interval and conn.phase is _WS:
            self._timers.schedule(conn, TimerKind.PING, self.ping_interval)

    # ------------------------------------------------------------------ writing

    def _queue_output(self, conn: Connection) -> None:
        """Move the core's output to the connection and write what the kernel takes."""
        chunks = conn.core.data_to_send()
        out = conn.output
        if chunks:
            if conn.tls is not None:
                chunks = conn.tls.encrypt(chunks)
            for c in chunks:
                out.push(c)
            if self.writing is not conn or out.nbytes >= CORK or not chunks[-1]:
                self._flush(conn)
        elif out and self.writing is not conn:
            self._flush(conn)

    def _flush(self, conn: Connection) -> None:
        sock = conn.sock
        assert sock is not None  # output exists only once connected
        end = conn.output.flush(sock)
        if end is not None:
            self._kill(conn, end or None)

    def _writeable(self, conn: Connection) -> None:
        """Deliver WRITEABLE while it is wanted and the socket takes the data."""
        core = conn.core
        if core.state is not State.OPEN and core.state is not State.HTTP_RESPONDING:
            conn.want_writable = False
            return
        reason = Reason.SERVER_WRITEABLE if conn.role is Role.SERVER else Reason.CLIENT_WRITEABLE
        if core.state is State.HTTP_RESPONDING:
            reason = Reason.HTTP_WRITEABLE
        n = 0
        limit = _MAX_WRITEABLE_PER_PASS if self.writeable_same_pass else 1
        out = conn.output
        while conn.want_writable and (conn.phase is _WS or conn.phase is _HTTP) and n < limit:
            if out.nbytes >= CORK:
                self._flush(conn)
            if out and not out.writable:
                break  # the kernel is full: POLLOUT will bring us back
            conn.want_writable = False
            conn.wrote = False
            self.writing = conn
            try:
                r = self._call(conn, conn.protocol, reason, None)
            finally:
                self.writing = None
            n += 1
            if r:
                self._close_gracefully(conn)
                return
        if out and conn.alive:
            self._flush(conn)
        if n >= limit and conn.want_writable and not out and conn.alive:
            if self.writeable_same_pass:
                self._ready.append(conn)  # fairness cap reached: carry on next pass
            else:
                self._update_interest(conn)

    def _run_ready(self) -> None:
        """Forced service: WRITEABLE for writable sockets, held events after rx resumes."""
        ready = self._ready
        for _ in range(len(ready)):
            conn = ready.popleft()
            if not conn.alive:
                continue
            if conn.held and conn.rx_enabled:
                held = list(conn.held)
                conn.held.clear()
                self._dispatch(conn, held)
                if not conn.alive:
                    continue
                if not conn.held:
                    self._drain_events(conn)
            if conn.core.pending() and conn.rx_enabled and not conn.held:
                conn.core.process_pending()
                self._drain_events(conn)
                if not conn.alive:
                    continue
            tls = conn.tls
            if tls is not None and conn.rx_enabled and tls.has_input():
                self._tls_read(conn, tls)
                if not conn.alive:
                    continue
            if conn.want_writable and not conn.output and conn.output.writable:
                self._writeable(conn)
            if conn.alive:
                self._update_interest(conn)

    # ------------------------------------------------------------------ timers

    def _timer_fired(self, conn: Connection, kind: TimerKind) -> None:
        if kind is TimerKind.USER:
            if self._call(conn, conn.protocol, Reason.TIMER, None):
                self._close_gracefully(conn)
        elif kind is TimerKind.PING:
            self._ping_due(conn)
        elif conn.role is Role.CLIENT and not conn.established:
            self._kill(conn, "timed out: no WebSocket handshake within the connect timeout")
        elif conn.phase is _HTTP:
            self._kill(conn, "timed out waiting for the request")
        else:
            self._kill(conn, "timed out closing")

    def _ping_due(self, conn: Connection) -> None:
        """Keepalive pings (``ping_interval``): no pong since the last ping drops the peer."""
        if conn.phase is not _WS or conn.core.state is not State.OPEN:
            return
        if conn.awaiting_pong:
            logger.log(NOTICE, "%r: no pong within %.1f s; dropping it", conn, self.pong_timeout)
            self._kill(conn, "no pong")
            return
        conn.awaiting_pong = True
        conn.core.send_ping(b"")
        self._queue_output(conn)
        if conn.alive:
            self._timers.schedule(conn, TimerKind.PING, self.pong_timeout)

    # ------------------------------------------------------------------ HTTP files

    def _file_more(self, conn: Connection) -> None:
        """Send the next chunks of the file being served while the socket takes them."""
        f = conn.file
        while f is not None and not conn.output and conn.alive:
            data = f.read(CORK)
            if data:
                conn.core.send_http_body(data)
                self._queue_output(conn)
                continue
            f.close()
            conn.file = None
            conn.core.send_http_body(b"", end=True)
            self._queue_output(conn)
            if conn.alive and self._call(conn, conn.protocol, Reason.HTTP_FILE_COMPLETION, None):
                self._kill(conn, "closed by HTTP_FILE_COMPLETION")
                return
            if conn.alive and conn.core.state is State.HTTP_HEAD:
                self._timers.schedule(conn, TimerKind.PROTOCOL, self.keepalive_timeout)
                # A pipelined request may already be parsed.
                self._drain_events(conn)
            return
