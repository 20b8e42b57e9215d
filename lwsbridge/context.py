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
:mod:`~lwsbridge.connection` (the connection and its phase), and
:mod:`~lwsbridge.service`, which moves bytes between sockets, core and callbacks.
The context itself keeps the configuration, the public API and what each core event
means: which callback it becomes.

It is single-threaded like lws: every method must be called from the thread that
services it, except :meth:`Context.cancel_service`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from operator import attrgetter
from typing import TYPE_CHECKING, Any, overload

from lwsbridge import log as _log
from lwsbridge.adoption import FdHandler
from lwsbridge.builtin_loop import BuiltinLoop
from lwsbridge.connection import WRONG_THREAD, Connection
from lwsbridge.core.buffer import FramePool
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
from lwsbridge.core.frames import Opcode, encode_frame
from lwsbridge.core.pollset import POLLERR, POLLHUP, POLLIN, POLLOUT, PollArgs
from lwsbridge.core.state import Role, State
from lwsbridge.fileserve import FileServer
from lwsbridge.http_serving import HttpServing
from lwsbridge.lifecycle import Phase, TimerKind
from lwsbridge.listener import Listener, connection_limit
from lwsbridge.log import NOTICE, logger
from lwsbridge.service import Service
from lwsbridge.timers import TimerHandle
from lwsbridge.tls import ClientTLS, ServerTLS
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
from lwsbridge.wakeup import TIMER, USER
from lwsbridge.ws_role import WsRole

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
# The per-message entry points compare the thread inline (one C call, no Python frame).
_get_ident = threading.get_ident
_RECEIVE, _CLIENT_RECEIVE = Reason.RECEIVE, Reason.CLIENT_RECEIVE
_HTTP, _WS, _CLOSING = Phase.HTTP, Phase.WS, Phase.CLOSING
_OPEN = State.OPEN
# Looked up once (an Enum class's attribute read costs a metaclass __getattr__ hook):
# every connection's close reads them.
_WS_PEER_INITIATED_CLOSE = Reason.WS_PEER_INITIATED_CLOSE
_CLIENT = Role.CLIENT
_PROTOCOL_TIMER = TimerKind.PROTOCOL


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
    ``reuse_port``: bind with SO_REUSEPORT so that several processes share the port
    (:mod:`lwsbridge.workers`; Linux only, ValueError elsewhere).
    ``whole_frame_size`` (default 1 MiB; 0: off): an uncompressed data frame of 64 KiB
    up to this size is delivered in one RECEIVE however many reads it took, gathered
    in one of a few buffers the context reuses (when all are in use, in pieces as it
    arrives); smaller frames and larger ones come in pieces as their bytes arrive.
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
        reuse_port: bool = False,
        whole_frame_size: int = 1 << 20,
    ) -> None:
        if not protocols:
            raise ValueError("at least one protocol is needed (protocol 0 handles HTTP)")
        self.protocols: list[Protocol] = list(protocols)
        for i, p in enumerate(self.protocols):
            p.index = i
        #: protocol name -> Protocol
        self.protocols_by_name = {p.name: p for p in self.protocols}
        self._builtin: BuiltinLoop | None = None
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
        if whole_frame_size < 0:
            raise ValueError("whole_frame_size must be >= 0 (0: off)")
        #: gathers large data frames whole for every connection (None: off)
        self.frame_pool = FramePool(whole_frame_size) if whole_frame_size else None
        files = FileServer(resource_root)
        self.resource_root = files.root
        self._max_connections = connection_limit(max_connections)
        self._destroyed = False
        self._draining = False
        self._svc = Service(
            self,
            self._handle,
            poll_sink=poll_sink,
            server_tls=tls.build() if tls is not None else None,
            client_tls=client_tls,
        )
        self._http = HttpServing(self, self._svc, files)
        self._ws = WsRole(self, self._svc)
        listener = None
        if port is not None:
            listener = Listener(
                interface,
                port,
                listen_backlog,
                limit=self._max_connections,
                keepalive=self._svc.connector.keepalive,
                reuse_port=reuse_port,
            )
        self.port: int | None = listener.port if listener is not None else None
        for p in self.protocols:
            self._svc.call(None, p, Reason.PROTOCOL_INIT, None)
        self._svc.start(listener)

    def _check_thread(self) -> None:
        if _get_ident() != self._svc.owner:
            self._wrong_thread()

    @staticmethod
    def _wrong_thread() -> None:
        raise LocalProtocolError(WRONG_THREAD)

    def adopt_thread(self) -> None:
        """Make the calling thread the one that services this context (before servicing)."""
        self._svc.owner = threading.get_ident()

    @property
    def service_thread(self) -> int:
        """The ident of the thread allowed to service this context."""
        return self._svc.owner

    def set_poll_sink(self, sink: PollSink | None) -> None:
        """Attach an adapter; it is told about every fd already in the poll set."""
        self._check_thread()
        self._svc.poll.attach(sink)

    @property
    def poll_sink(self) -> PollSink | None:
        """The attached adapter, if any."""
        return self._svc.poll.sink

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
        if _get_ident() != self._svc.owner:
            self._wrong_thread()
        watched = self._svc.poll.watched
        if isinstance(pollfd, int):
            if revents is None:
                raise TypeError("service_fd(fd, revents) needs revents")
            fd, rev = pollfd, revents
            if fd not in watched:
                return rev
            # Guarded there: a bug of ours never reaches the host's loop.
            self._svc.service_fd(fd, rev)
            return 0
        fd = pollfd.fd
        if fd not in watched:
            return False
        rev = pollfd.revents
        pollfd.revents = 0
        return self._svc.service_fd(fd, rev)

    def next_timeout(self) -> int | None:
        """Milliseconds until the context needs :meth:`service_pending`; 0 = now; None = never.

        0 means forced service: some connection has work without any fd event.
        """
        if _get_ident() != self._svc.owner:
            self._wrong_thread()
        return self._svc.next_timeout()

    def service_pending(self) -> None:
        """Run expired timers and forced service (lws: the part of lws_service with no fd)."""
        if _get_ident() != self._svc.owner:
            self._wrong_thread()
        self._svc.service_pending()

    def service(self, timeout_ms: int | None = 1000) -> None:
        """One round of the built-in loop (lws ``lws_service``): see :mod:`lwsbridge.builtin_loop`.

        It is the array loop of ``lwsbridge.adapters`` on the best kernel interface
        there is (epoll, else poll, else select), found through :mod:`lwsbridge.loops`
        and made on the first call; it does not raise when no fd is free for it (EMFILE).
        """
        if _get_ident() != self._svc.owner:
            self._wrong_thread()
        if self._builtin is None:
            if self._svc.poll.sink is not None:
                raise LocalProtocolError("this context is driven by an adapter, not service()")
            svc = self._svc
            self._builtin = BuiltinLoop(
                self,
                next_timeout=svc.next_timeout,
                service_pending=svc.service_pending,
                service_fd=svc.service_fd,
            )
        self._builtin.run_pass(timeout_ms)  # the array loop's run_once, once it is made

    def adopt_fd(self, fd: int, events: int, on_ready: FdHandler) -> None:
        """Put a foreign fd (its owner keeps it) in the poll set: ADD_POLL_FD as for a socket.

        Every adapter then watches it with the context's own, and ``service_fd`` on it
        calls ``on_ready(fd, revents)`` in the service thread.  The owner changes what is
        watched with :meth:`set_fd_events` and calls :meth:`release_fd` before closing
        it.  :meth:`destroy` releases what is still adopted (the owner still closes it).
        """
        self._check_thread()
        if self._destroyed:
            raise LocalProtocolError("the context is destroyed")
        self._svc.adopted.adopt(fd, events, on_ready)

    def set_fd_events(self, fd: int, events: int) -> None:
        """Watch ``events`` (POLLIN | POLLOUT) on an adopted fd: SET/CLEAR_MODE_POLL_FD."""
        self._check_thread()
        self._svc.adopted.change(fd, events)

    def release_fd(self, fd: int) -> None:
        """Stop watching an adopted fd (DEL_POLL_FD), before its owner closes it; no-op
        when it is not adopted."""
        self._check_thread()
        self._svc.adopted.release(fd)

    def call_later(self, seconds: float, callback: Callable[[], object]) -> TimerHandle:
        """Run ``callback()`` once in the service thread after ``seconds`` (lws ``lws_sul``).

        :meth:`next_timeout` counts it; ``handle.cancel()`` cancels it.  When it becomes
        the earliest deadline the wakeup is poked, so that a loop sleeping on an older
        timeout asks :meth:`next_timeout` again even if this was called outside servicing.
        """
        self._check_thread()
        before = self._svc.timers.next_deadline()
        handle = self._svc.timers.call_later(seconds, callback)
        if not self._destroyed and (before is None or handle.deadline < before):
            self._svc.wakeup.wake(TIMER)
        return handle

    def cancel_service(self) -> None:
        """Wake the servicing thread; every protocol gets EVENT_WAIT_CANCELLED. Thread-safe."""
        self._svc.wakeup.wake(USER)

    def callback_on_writable(self, conn: Connection) -> None:
        """lws_callback_on_writable: one WRITEABLE callback for ``conn`` soon."""
        if _get_ident() != self._svc.owner:
            self._wrong_thread()
        conn.callback_on_writable()  # the work is there (the per-message path)

    def callback_on_writable_all_protocol(self, protocol: Protocol | str) -> None:
        """lws_callback_on_writable_all_protocol."""
        self._check_thread()
        p = self.protocols_by_name[protocol] if isinstance(protocol, str) else protocol
        for conn in list(self._svc.conns.values()):
            if conn.established and conn.protocol is p:
                conn.callback_on_writable()

    def connections(self, protocol: Protocol | str | None = None) -> list[Connection]:
        """The established connections (of ``protocol``, when given)."""
        self._check_thread()
        p = self.protocols_by_name[protocol] if isinstance(protocol, str) else protocol
        return [
            c for c in self._svc.conns.values() if c.established and (p is None or c.protocol is p)
        ]

    def all_connections(self) -> list[Connection]:
        """Every live connection, in any phase (handshaking, open, closing, connecting)."""
        self._check_thread()
        return [*self._svc.conns.values(), *(c for c in self._svc.connector.resolving if c.fd < 0)]

    @property
    def max_connections(self) -> int:
        """The connection limit: a connection accepted above it gets a 503 and is closed.

        Settable (the select loop lowers it below FD_SETSIZE); the RLIMIT_NOFILE-derived
        value from construction is the default.
        """
        return self._max_connections

    @max_connections.setter
    def max_connections(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"max_connections must be at least 1, not {limit}")
        self._max_connections = limit
        if self._svc.listener is not None:
            self._svc.listener.limit = limit

    @property
    def connection_count(self) -> int:
        """How many connections are alive (what :meth:`all_connections` would list)."""
        return len(self._svc.conns) + sum(1 for c in self._svc.connector.resolving if c.fd < 0)

    @property
    def listen_fd(self) -> int | None:
        """The listening socket's fd (None without a listener or after destroy)."""
        return None if self._svc.listener is None or self._destroyed else self._svc.listener.fd

    @property
    def wakeup_fd(self) -> int | None:
        """The read end of the cancel_service wakeup (in the poll set; None after destroy)."""
        return None if self._destroyed else self._svc.wakeup.fd

    def close(self, conn: Connection, code: int = 1000, reason: str = "") -> None:
        """Close ``conn`` from outside a callback (a close frame when open)."""
        self._check_thread()
        conn.close_reason(code, reason)
        self._svc.close_gracefully(conn)

    def drain(self, code: int = 1001, reason: str = "going away") -> None:
        """Stop accepting and close every server connection gracefully (a worker's stop).

        The listening socket is closed at once, so in a SO_REUSEPORT group the kernel
        gives new connections to the other processes.  Every open WebSocket gets a
        close frame ``code``/``reason`` after what is already queued for it and ends
        when the peer answers (or after ``close_timeout``).  An HTTP connection still
        writing a response finishes it; an idle keep-alive one is closed now; one
        that has not sent its request yet gets its answer, and an upgrade asked for
        from now on gets a 503.  Client connections are left alone.  Keep
        servicing until :attr:`drained`, then :meth:`destroy`.
        """
        self._check_thread()
        if self._destroyed:
            return
        self._draining = True
        listener = self._svc.listener
        if listener is not None:
            self._svc.poll.discard(listener.fd)
            listener.close()
            self._svc.listener = None
        for conn in list(self._svc.conns.values()):
            if conn.client_info is not None or not conn.alive:
                continue
            if conn.phase is _WS:
                conn.close_reason(code, reason)
                self._svc.close_gracefully(conn)
            elif conn.phase is _HTTP and conn.responded and not conn.output and not conn.file:
                # idle between keep-alive requests; a connection still waiting for its
                # first request is kept: it gets its answer (a 503 for an upgrade)
                self._svc.kill(conn, "draining")

    if TYPE_CHECKING:

        @property
        def draining(self) -> bool: ...

    else:
        # Read-only, with a C getter: every upgrade reads it, no Python frame.
        draining = property(attrgetter("_draining"), doc="Whether :meth:`drain` was called.")

    @property
    def drained(self) -> bool:
        """After :meth:`drain`: no server connection is left (client ones may be)."""
        return self._draining and all(c.client_info is not None for c in self._svc.conns.values())

    def destroy(self) -> None:
        """lws_context_destroy: close every connection and the listener."""
        self._check_thread()
        if self._destroyed:
            return
        self._destroyed = True
        for conn in [*self._svc.conns.values(), *self._svc.connector.resolving]:
            self._svc.kill(conn, "context destroyed")
        self._svc.connector.close()
        if self._svc.listener is not None:
            self._svc.poll.discard(self._svc.listener.fd)
            self._svc.listener.close()
        self._svc.adopted.release_all()
        self._svc.poll.discard(self._svc.wakeup.fd)
        self._svc.wakeup.close()
        for p in self.protocols:
            self._svc.call(None, p, Reason.PROTOCOL_DESTROY, None)
        if self._builtin is not None:
            self._builtin.close()

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    @property
    def fds(self) -> list[tuple[int, int]]:
        """Every fd the context wants watched, with its events (a snapshot)."""
        self._check_thread()
        return self._svc.poll.items()

    def write(
        self, conn: Connection, data: bytes | str, kind: WriteKind = _TEXT, final: bool = True
    ) -> int:
        """lws_write: one frame on ``conn``, only inside its WRITEABLE callback, once."""
        if conn.context is not self:  # never inside this context's WRITEABLE
            raise LocalProtocolError(
                "write() is only allowed inside this connection's WRITEABLE callback; "
                "call callback_on_writable() and write from there"
            )
        return conn.write(data, kind, final)  # the work is there (the per-message path)

    def broadcast(
        self, conns: Iterable[Connection], data: bytes | str, kind: WriteKind = _TEXT
    ) -> list[Connection]:
        """Write one message to many connections now, outside WRITEABLE; returns the
        connections it did not write, in their order, for their WRITEABLE to write.

        The frame (``kind`` TEXT or BINARY, one final frame) is encoded once, and that
        one bytes object is sent to each connection that can take it at once without
        anything changing order: an established server WebSocket, open (no close sent
        or received), not in a fragmented message of its own, without
        permessage-deflate (its compressor keeps per-connection state) or TLS (each
        encrypts on its own), whose output is empty (nothing queued, nothing the
        protocol core holds: a pong, say) and whose socket is known to be writable
        (the last write took everything).  Every other connection (a choked one, a
        closing one, a client, ...) is returned untouched: ask
        :meth:`callback_on_writable` for it and write the same message there, so it
        gets its messages in order at its own pace.  lws has no such call; its
        rules are kept: nothing jumps ahead of bytes already queued, and a slow
        connection costs the others nothing.

        When the kernel takes only part of the frame, the rest is queued (a view of
        the shared bytes, not a copy) and POLLOUT asked for; such a connection counts
        as written, and its next WRITEABLE waits until its output is out, as after
        :meth:`write`.  A send that fails is left queued too: the connection is closed
        by its next service, never inside this call, so no callback runs from here.
        Call it from the service thread, in any callback or outside one.  Several
        messages at once: :meth:`broadcast_messages`.
        """
        return self.broadcast_messages(conns, ((data, kind),))

    def broadcast_messages(
        self, conns: Iterable[Connection], messages: Iterable[tuple[bytes | str, WriteKind]]
    ) -> list[Connection]:
        """:meth:`broadcast` of several ``(data, kind)`` messages, in order, in one send
        per connection: what a broadcaster that collected the messages of one service
        pass (the test server's mirror) writes to its members that have all earlier
        ones.  The rules and the result are :meth:`broadcast`'s; a connection is
        written all of them or none."""
        if _get_ident() != self._svc.owner:
            self._wrong_thread()
        frames: list[bytes] = []
        logged: list[tuple[WriteKind, int]] = []
        for data, kind in messages:
            if kind != _TEXT and kind != _BINARY:
                raise LocalProtocolError(
                    f"broadcast() writes TEXT or BINARY messages, not {kind!r}"
                )
            payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
            frames += encode_frame(Opcode.BINARY if kind == _BINARY else Opcode.TEXT, payload)
            logged.append((WriteKind(kind), len(payload)))
        # One bytes object for everyone: a large payload is copied once here, not per
        # connection (the kernel copies it per socket anyway).
        frame = frames[0] if len(frames) == 1 else b"".join(frames)
        left: list[Connection] = []
        if not frame:
            return left
        logging = _log.frames
        update_interest = self._svc.update_interest
        for conn in conns:
            out = conn.output
            core = conn.core
            sock = conn.sock
            if (
                sock is None
                or out.chunks
                or not out.writable
                or conn.phase is not _WS
                or not conn.established
                or conn.client_info is not None
                or conn.tls is not None
                or core.state is not _OPEN
                or core.in_message_out
                or core.output_waiting
                or core.extension is not None
            ):
                left.append(conn)
                continue
            if logging:
                for kind, n in logged:
                    _log.tx_frame(conn, kind, n, True)
            if not out.send_now(sock, frame):
                update_interest(conn)  # the rest waits for POLLOUT
        return left

    def rx_flow_control(self, conn: Connection, enable: bool) -> None:
        """lws_rx_flow_control: stop (False) or resume (True) reading ``conn``."""
        if _get_ident() != self._svc.owner:
            self._wrong_thread()
        if conn.rx_enabled == enable or not conn.alive:
            return
        conn.rx_enabled = enable
        if enable and (conn.held or conn.core.pending()):
            self._svc.make_ready(conn)
        self._svc.update_interest(conn)

    def set_timer(self, conn: Connection, seconds: float | None) -> None:
        """lws_set_timer_usecs: one TIMER callback for ``conn`` after ``seconds``; None cancels."""
        self._check_thread()
        if not conn.alive or conn.phase is _CLOSING:
            return
        self._svc.timers.schedule(conn, TimerKind.USER, seconds)

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
        self._http.respond(conn, status, body, content_type, headers)

    def serve_file(
        self,
        conn: Connection,
        path: str,
        content_type: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> bool:
        """lws_serve_http_file: answer the current request with a file under ``resource_root``.

        ``content_type`` None: from the file name (text types get ``charset=utf-8``).
        HEAD, conditional requests (304), one Range (206/416), the redirect of a
        directory to its slash (301) and 405 for other methods are handled as
        :mod:`lwsbridge.fileserve` describes.  True when a file (or its head, or a
        304/206) went out; False for 404, 301, 405 and 416.
        """
        self._check_thread()
        return self._http.serve_file(conn, path, content_type, headers)

    def _handle(self, conn: Connection, ev: Any) -> None:
        t = type(ev)
        if t is DataReceived:
            if _log.frames:  # one attribute test when frame logging is off
                _log.rx_piece(conn, ev)
            conn.rx_event = ev
            reason = _RECEIVE if conn.client_info is None else _CLIENT_RECEIVE
            protocol = conn.protocol
            try:  # Service.call, in place: once per message
                r = protocol.callback(conn, reason, conn.user, ev.data)
            except Exception:
                r = self._svc.callback_raised(conn, protocol, reason)
            conn.rx_event = None
            if r:
                self._svc.close_gracefully(conn)
        elif t is Pong:
            if _log.frames:
                _log.frame_summary(conn, "rx", "PONG", len(ev.payload), True)
            if conn.awaiting_pong:
                conn.awaiting_pong = False
                self._svc.timers.schedule(conn, TimerKind.PING, self.ping_interval)
            reason = Reason.RECEIVE_PONG if conn.role is Role.SERVER else Reason.CLIENT_RECEIVE_PONG
            if self._svc.call(conn, conn.protocol, reason, ev.payload):
                self._svc.close_gracefully(conn)
        elif t is UpgradeRequest:
            self._ws.upgrade(conn, ev)
        elif t is HTTPRequest:
            self._http.request(conn, ev)
        elif t is HTTPBody:
            r = self._svc.call(conn, conn.protocol, Reason.HTTP_BODY, ev.data)
            if not r and ev.final:
                r = self._svc.call(conn, conn.protocol, Reason.HTTP_BODY_COMPLETION, None)
            if r:
                self._svc.kill(conn, "closed by HTTP_BODY callback")
        elif t is CloseReceived:
            # Not for the peer's answer to our own close (lws: LRS_AWAITING_CLOSE_ACK).
            if conn.established and conn.phase is _WS:
                self._svc.call(conn, conn.protocol, _WS_PEER_INITIATED_CLOSE, ev)
        elif t is ConnectionFailed:
            logger.log(NOTICE, "%r failed: %s (close code %d)", conn, ev.reason, ev.code)
        elif t is RequestRejected:
            logger.log(NOTICE, "%r: bad request: HTTP %d %s", conn, ev.status, ev.reason)
        elif t is Closed:
            if conn.established:
                # We began it if we are closing already, or failed the connection (a code
                # of ours, not 1006, without a clean close).
                local = conn.phase is _CLOSING or (not ev.clean and ev.code != 1006)
                _log.closed(conn, ev.code, ev.reason, local, ev.clean)
            self._core_closed(conn)
        elif t is Established:
            if conn.role is _CLIENT:
                self._ws.client_established(conn, ev)
        elif t is HandshakeFailed:
            self._svc.kill(conn, ev.reason)

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
        self._svc.queue_output(conn)
        if conn.alive and (conn.output.chunks or conn.role is _CLIENT or conn.tls is not None):
            # The client role waits for the server's FIN (RFC 6455 §7.1.1); so does a
            # server whose close frame has not gone out yet.  A plain server with
            # nothing left to send is here only after the peer's FIN, which is read
            # again (and closes it) as soon as its events are delivered: no timer, so a
            # close storm leaves no dead heap entry per connection.  With TLS the
            # "EOF" may be a close_notify on a TCP connection the peer keeps open: the
            # timer bounds that wait.
            self._svc.timers.schedule(conn, _PROTOCOL_TIMER, self.close_timeout)

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
        elif info.protocol in self.protocols_by_name:
            protocol = self.protocols_by_name[info.protocol]
        else:
            raise LocalProtocolError(f"no protocol named {info.protocol!r} in this context")
        limit = protocol.max_message_size
        core = WSConnection(
            Role.CLIENT,
            max_message_size=self.max_message_size if limit is None else limit,
            max_head_size=self.max_head_size,
            frame_pool=self.frame_pool,
        )
        conn = Connection(
            self, None, (info.address, info.port), core, client_info=info, service=self._svc
        )
        conn.protocol = protocol
        if info.user is not None:
            conn.user = info.user
        elif protocol.user_factory is not None:
            conn.user = protocol.user_factory()
        _log.connecting(conn, f"{info.address}:{info.port}{info.path}")
        timeout = info.timeout if info.timeout is not None else self.connect_timeout
        self._svc.timers.schedule(conn, TimerKind.PROTOCOL, timeout)
        addresses = self._svc.connector.resolve(conn, info.address, info.port)
        if addresses is not None:
            self._svc.client_resolved(conn, addresses)
        return conn
