"""The service of one context (lws ``core-net/service.c``, ``output.c``, ``close.c``).

:class:`Service` moves bytes: it accepts, reads sockets into the core, runs TLS,
delivers the core's events in order (each through the context's handler, which
knows what the event means), writes output, delivers WRITEABLE, runs forced
service and timers, and closes connections with exactly one final callback.  It
owns the connection table, the ready queue, the timers, the poll reporter, the
wakeup, the listener and the client connector; the context reaches them only
through this object's public attributes and methods.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from lwsbridge import log as _log
from lwsbridge.adoption import AdoptedFds
from lwsbridge.connection import Connection
from lwsbridge.connector import Addresses, Connector
from lwsbridge.core.connection import WSConnection
from lwsbridge.core.errors import LocalProtocolError
from lwsbridge.core.events import DataReceived
from lwsbridge.core.pollset import POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT, PollArgs
from lwsbridge.core.state import Role, State
from lwsbridge.keepalive import TCPKeepalive
from lwsbridge.lifecycle import Phase, TimerKind
from lwsbridge.listener import Listener
from lwsbridge.log import NOTICE, logger
from lwsbridge.output import CORK
from lwsbridge.pollreport import PollReporter
from lwsbridge.timers import Timers
from lwsbridge.tls import ClientTLS
from lwsbridge.tls_transport import TLSFailure, TLSTransport
from lwsbridge.vocabulary import CLOSE, PollSink, Protocol, Reason
from lwsbridge.wakeup import USER, Wakeup

if TYPE_CHECKING:
    from lwsbridge.context import Context

__all__ = ["ACCEPT_TURN", "Handler", "Service"]

#: ``handler(conn, event)``: the context's meaning of one core event
Handler = Callable[[Connection, Any], None]

_HTTP, _WS, _CLOSING, _CONNECTING = Phase.HTTP, Phase.WS, Phase.CLOSING, Phase.CONNECTING
_DEAD = Phase.DEAD
_LOCK_POLL, _UNLOCK_POLL = Reason.LOCK_POLL, Reason.UNLOCK_POLL
# The reasons, roles and timer kind of every connection's accept and close, looked up
# once: an Enum class's attribute costs a metaclass __getattr__ hook (~0.1 us) per read.
_FILTER_NETWORK_CONNECTION = Reason.FILTER_NETWORK_CONNECTION
_WSI_CREATE, _WSI_DESTROY = Reason.WSI_CREATE, Reason.WSI_DESTROY
_SERVER_NEW_CLIENT_INSTANTIATED = Reason.SERVER_NEW_CLIENT_INSTANTIATED
_CLOSED, _CLOSED_HTTP = Reason.CLOSED, Reason.CLOSED_HTTP
_SERVER, _CLIENT = Role.SERVER, Role.CLIENT
_PROTOCOL_TIMER = TimerKind.PROTOCOL
_CORE_CLOSED = State.CLOSED
_MAX_WRITEABLE_PER_PASS = 64
#: Connection services between two turns of the listener.  The kernel reports a newly
#: ready fd at the tail of its ready list, so in a close storm a new client's connect
#: waits behind every closing connection; so, every ACCEPT_TURN services, one
#: non-blocking accept batch runs whatever the loop said (one EAGAIN accept() when
#: nobody is connecting).
ACCEPT_TURN = 256
_READ_SIZE = 256 * 1024
# A data frame with at least this much payload still to come is read on until the
# frame ends or the kernel has no more, a read buffer at a time, in the same pass.  The
# buffer stays at _READ_SIZE: measured, a 1 MiB one cost more CPU per 1 MiB message
# (the bytes no longer sit in the L2 cache when they are unmasked).
_BIG_PAYLOAD = 64 * 1024
# The longest frame header from a client: 2 bytes, a 64-bit length, the mask key.
_FRAME_HEAD = 14


class Service:
    """The sockets, queues and timers of one context, and the moves between them."""

    def __init__(
        self,
        ctx: Context,
        handle: Handler,
        *,
        poll_sink: PollSink | None,
        server_tls: ssl.SSLContext | None,
        client_tls: ClientTLS | None,
    ) -> None:
        self._ctx = ctx
        #: the ident of the thread allowed to service: the one that made the context
        #: (adopt_thread moves it); the context's checks read it here too
        self.owner = threading.get_ident()
        self._handle = handle
        self._server_tls = server_tls
        self.poll = PollReporter(self._notify_protocol0, poll_sink, report=self._report_poll)
        self._watched = self.poll.watched
        #: fd -> connection, for every connection with a socket
        self.conns: dict[int, Connection] = {}
        #: connections with work and no fd event to bring it (forced service)
        self.ready: deque[Connection] = deque()
        self.timers = Timers()
        #: the connection inside its WRITEABLE callback (the only one allowed to write)
        self.writing: Connection | None = None
        self._rbuf = bytearray(_READ_SIZE)
        self._rview = memoryview(self._rbuf)
        self.wakeup = Wakeup()
        keepalive = TCPKeepalive(ctx.ka_time, ctx.ka_probes, ctx.ka_interval)
        self.connector = Connector(self.wakeup, keepalive, client_tls)
        self.listener: Listener | None = None
        self._turn = 0  # connection services since the listener's last turn
        #: fds adopted from their owners (a backplane's socket)
        self.adopted = AdoptedFds(self.poll)

    def start(self, listener: Listener | None) -> None:
        """Watch the wakeup and, when there is one, the listener."""
        self.listener = listener
        self.poll.add(self.wakeup.fd, POLLIN)
        if listener is not None:
            self.poll.add(listener.fd, POLLIN)

    def _notify_protocol0(self, reason: Reason, args: PollArgs) -> None:
        self.call(None, self._ctx.protocols[0], reason, args)

    def _report_poll(self, reason: Reason, args: PollArgs) -> None:
        """LOCK_POLL, ``reason``, UNLOCK_POLL to protocol 0, each as :meth:`call` gives it.

        :meth:`call`'s guard written out here (its except is :meth:`callback_raised`):
        each connection's ADD and DEL make six of these callbacks, and the two call
        levels per callback were 12 of a connection's ~320 Python calls.
        """
        p0 = self._ctx.protocols[0]
        cb = p0.callback
        for r in (_LOCK_POLL, reason, _UNLOCK_POLL):
            try:
                cb(None, r, None, args)
            except Exception:
                self.callback_raised(None, p0, r)

    def call(
        self, conn: Connection | None, protocol: Protocol, reason: Reason, payload: Any
    ) -> int:
        try:
            r = protocol.callback(conn, reason, conn.user if conn is not None else None, payload)
        except Exception:
            return self.callback_raised(conn, protocol, reason)
        return r or 0

    @staticmethod
    def callback_raised(conn: Connection | None, protocol: Protocol, reason: Reason) -> int:
        """What :meth:`call` does when the callback raised (called from its ``except``):
        the one log line, and CLOSE.  The per-message callbacks (RECEIVE, WRITEABLE)
        are called in place with this as their ``except``, a call level less."""
        logger.exception(
            "callback %s raised in %s for %r; closing that connection",
            protocol.name,
            reason.name,
            conn,
        )
        return CLOSE

    def internal_error(self, conn: Connection | None, where: str) -> None:
        logger.exception("lwsbridge internal error in %s; closing %r", where, conn)
        if conn is not None:
            with contextlib.suppress(Exception):
                self.kill(conn, "internal error")

    def next_timeout(self) -> int | None:
        """``Context.next_timeout`` without the thread check (the built-in loop's passes)."""
        if self.ready:
            return 0
        if not self.timers.armed:  # no timer at all: no call
            return None
        deadline = self.timers.next_deadline()
        if deadline is None:
            return None
        return max(0, int((deadline - time.monotonic()) * 1000.0 + 0.999))

    def service_pending(self) -> None:
        """Run expired timers and forced service (lws: the part of lws_service with no fd)."""
        if self.timers.armed:
            now = time.monotonic()
            if self.timers.due(now):
                self._run_timers(now)
        if self.ready:
            try:
                self.run_ready()
            except Exception:
                self.internal_error(None, "forced service")

    def _run_timers(self, now: float) -> None:
        for conn, kind in self.timers.pop_expired(now):
            if not conn.alive:
                continue  # closed by an earlier timer of this pass
            try:
                self._timer_fired(conn, kind)
            except Exception:
                self.internal_error(conn, "a timer")
        for handle in self.timers.pop_due_calls(now):
            try:
                handle.callback()
            except Exception:
                logger.exception("timer callback %r raised", handle.callback)

    def service_fd(self, fd: int, revents: int) -> bool:
        """Service one ready fd; True when a connection closed.

        Guarded here, not by the caller, so that the built-in loop reaches it straight
        (one call level a pass less): an exception, a bug of ours, must not reach the
        host's loop and costs one connection (:meth:`internal_error`).
        """
        try:
            conn = self.conns.get(fd)
            if conn is None:
                if fd == self.wakeup.fd:
                    self._woken()
                elif self.listener is not None and fd == self.listener.fd:
                    self._turn = 0
                    self._accept()
                else:
                    self.adopted.dispatch(fd, revents)
                self.run_ready()
                return False
            self._turn += 1
            if self._turn >= ACCEPT_TURN and self.listener is not None:
                self._turn = 0
                self._accept()  # never conn's fd: conn's socket is still open
            if conn.phase is _CONNECTING and conn.tls is None:
                self._client_connected(conn)
                self.run_ready()
                return not conn.alive
            if revents & POLLNVAL or (revents & POLLERR and not conn.rx_enabled):
                self.kill(conn, "socket error")
                self.run_ready()
                return True
            if revents & POLLOUT:
                conn.output.writable = True
                self.flush(conn)
                if conn.alive and not conn.output.chunks:
                    if conn.file is not None:
                        self.file_more(conn)
                    elif conn.want_writable:
                        self._writeable(conn)
            # POLLERR is read like POLLIN: what the peer sent before a reset (a 101, a close
            # frame) is still delivered; then recv() reports the error and the socket closes.
            if revents & (POLLIN | POLLHUP | POLLERR) and conn.alive and conn.rx_enabled:
                self._read(conn)
            if conn.in_ready:
                self.run_ready()  # which updates conn's interest too, once
            elif conn.alive:
                self.update_interest(conn)
                if self.ready:
                    self.run_ready()
            elif self.ready:
                self.run_ready()
            return not conn.alive
        except Exception:
            self.internal_error(self.conns.get(fd), f"servicing fd {fd}")
            return True

    def _woken(self) -> None:
        data = self.wakeup.drain()
        for conn, result in self.connector.take_resolved():
            self.client_resolved(conn, result)
        if USER in data:
            for p in self._ctx.protocols:
                self.call(None, p, Reason.EVENT_WAIT_CANCELLED, None)

    def _accept(self) -> None:
        assert self.listener is not None
        ctx = self._ctx
        p0 = ctx.protocols[0]
        conns = self.conns
        poll = self.poll
        # The request is usually in by the accept: read it now, not after a wait that
        # reports it, where the sink is known to watch the fd already (select is not:
        # it takes a high fd and refuses it later; a socket it cannot watch must not
        # be served).  TLS keeps the round.
        read_now = poll.add_is_final and self._server_tls is None
        for sock, peer in self.listener.accept(conns.__len__):
            if self.call(None, p0, _FILTER_NETWORK_CONNECTION, peer):
                logger.info("connection from %s refused by FILTER_NETWORK_CONNECTION", peer)
                sock.close()
                continue
            core = WSConnection(
                _SERVER,
                max_message_size=ctx.max_message_size,
                max_head_size=ctx.max_head_size,
                frame_pool=ctx.frame_pool,
            )
            conn = Connection(ctx, sock, peer, core, service=self)
            if self._server_tls is not None:
                conn.tls = TLSTransport(self._server_tls, server_side=True)
            fd = conn.fd
            conns[fd] = conn
            try:
                poll.add(fd, POLLIN)
            except Exception:
                # The host's loop refused the fd (e.g. select() and fd >= 1024).
                logger.exception("poll sink refused fd %d; dropping %r", fd, conn)
                conns.pop(fd, None)
                poll.forget(fd)
                conn.enter(_DEAD)
                sock.close()
                continue
            if self.call(conn, p0, _WSI_CREATE, None) or self.call(
                conn, p0, _SERVER_NEW_CLIENT_INSTANTIATED, None
            ):
                self.kill(conn, "refused at creation")
                continue
            self.timers.schedule(conn, _PROTOCOL_TIMER, ctx.handshake_timeout)
            _log.accepted(conn, peer)
            if read_now and conn.alive and conn.rx_enabled:
                try:  # as service_fd guards a read: a bug costs this connection, not the rest
                    self._read(conn)
                    # What service_fd does after a read; the caller runs the ready ones.
                    if conn.alive and not conn.in_ready:
                        self.update_interest(conn)
                except Exception:
                    self.internal_error(conn, "reading a new connection")

    def _read(self, conn: Connection) -> None:
        sock = conn.sock
        assert sock is not None  # only connections in the poll set are read
        head = conn.head_next
        try:
            if head:
                # The last read ended a large frame gathered whole: the next is likely
                # another (a client sending large messages), so read its header alone
                # and its payload goes straight into the frame's buffer below, rather
                # than a read buffer's worth of it landing here to be copied there.
                conn.head_next = False
                n = sock.recv_into(self._rbuf, _FRAME_HEAD)
            else:
                n = sock.recv_into(self._rbuf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.kill(conn, f"read error: {exc.strerror or exc}")
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
                self.kill(conn, None if core.closed else "closed during the TLS handshake")
                return
            self._eof(conn)
            return
        else:
            core.receive_data(self._rview[:n])
            # (A small read rarely leaves a large frame open: the next read looks again.)
            if (n >= _BIG_PAYLOAD >> 2 or head) and core.payload_remaining >= _BIG_PAYLOAD:
                self._read_payload(conn, sock)
                return
        self.drain_events(conn)

    def _read_payload(self, conn: Connection, sock: socket.socket) -> None:
        """Read the payload of a large frame in progress until it ends or EAGAIN.

        The bytes land in the read buffer, no further than the frame's end, and go to
        the core in one piece (it unmasks them from there).  A read error or EOF met
        after some bytes is acted on once those bytes are delivered, as :meth:`_read`
        would on its next call.
        """
        core = conn.core
        target = core.payload_buffer()
        if target is not None:
            # A frame gathered whole: read straight into its buffer, to the frame's end.
            view = target
            limit = len(target)
        else:
            view = self._rview
            limit = min(core.payload_remaining, _READ_SIZE)
        got = 0
        eof = False
        error = None
        while got < limit:
            try:
                k = sock.recv_into(view[got:limit])
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                error = f"read error: {exc.strerror or exc}"
                break
            if k == 0:
                eof = True
                break
            got += k
        if target is not None:
            target.release()  # the core's buffer: no view of it is kept
            if got:
                core.payload_filled(got)
                # Read to the frame's end: the socket's next byte starts a frame.
                conn.head_next = got == limit
        elif got:
            core.receive_data(view[:got])
        self.drain_events(conn)  # also what the caller's own read produced
        if error is not None:
            self.kill(conn, error)
        elif eof and conn.alive:
            if core.closed:
                self.kill(conn, None)  # the peer's FIN after the close handshake
                return
            self._eof(conn)

    def _eof(self, conn: Connection) -> None:
        """The peer's FIN before any close handshake: deliver Closed, then close now.

        EOF is final (the core is CLOSED after it), so once its events are delivered
        nothing is left to wait for; closing here, not when the EOF is read again on the
        next pass, services each connection of a close storm once instead of twice.
        Events held by rx flow control (or inflated data an extension holds) keep the
        connection until they are delivered: then the next read finds the EOF again.
        """
        conn.core.receive_eof()
        self.drain_events(conn)
        if conn.alive and not conn.held and not conn.core.pending():
            self.kill(conn, None)

    def _tls_handshake(self, conn: Connection, tls: TLSTransport) -> bool:
        """Advance the TLS handshake; True once it is complete."""
        try:
            done = tls.handshake()
        except TLSFailure as exc:
            self._tls_pump(conn, tls)
            if conn.role is Role.SERVER:
                logger.log(NOTICE, "%r: %s", conn, exc)
            self.kill(conn, str(exc))
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
                self.kill(conn, str(exc))
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
                self.kill(conn, None)
                return
            core.receive_eof()
        self.drain_events(conn)
        if conn.alive and tls.has_input():
            # Plaintext decrypted or records received but not yet read: forced service,
            # no poll event will come for bytes already off the socket.
            self.make_ready(conn)
        if conn.alive:
            self._tls_pump(conn, tls)

    def _tls_pump(self, conn: Connection, tls: TLSTransport) -> None:
        """Move TLS records from the transport to the socket."""
        data = tls.take_output()
        if data:
            conn.output.push(data)
            self.flush(conn)

    def drain_events(self, conn: Connection) -> None:
        """Deliver every event the core has, including ones that callbacks cause."""
        core = conn.core
        events = core.events()
        while events and conn.alive:
            self._dispatch(conn, events)
            if conn.held or not core.events_waiting:
                break
            events = core.events()
        if conn.alive:
            if core.output_waiting or conn.output.chunks:
                self.queue_output(conn)
            if core.input_held and core.pending() and conn.rx_enabled:
                # An extension holds inflated data back: forced service delivers it.
                self.make_ready(conn)

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

    def update_interest(self, conn: Connection) -> None:
        if not conn.alive or conn.phase is _CONNECTING:
            return  # a client still connecting watches POLLOUT for the connect itself
        # No reading while events or inflated data wait: input stays in the kernel.
        core = conn.core
        held = conn.held or (core.input_held and core.pending())
        events = POLLIN if conn.rx_enabled and not held else 0
        out = conn.output
        if out.chunks or conn.file is not None:
            events |= POLLOUT
        # A client's WRITEABLE waits for CLIENT_ESTABLISHED, which makes it ready then.
        elif conn.want_writable and (conn.established or conn.client_info is None):
            if out.writable and self._ctx.writeable_same_pass:
                # Known writable: delivered by forced service, not by a POLLOUT round.
                # Deciding that here, whichever path emptied the output, keeps the
                # WRITEABLE from being lost (inside its own WRITEABLE the loop has it).
                if self.writing is not conn:
                    self.make_ready(conn)
            else:
                events |= POLLOUT
        fd = conn.fd
        if self._watched[fd] != events:  # the common case, no change: no call
            self.poll.want(fd, events)

    def make_ready(self, conn: Connection) -> None:
        """Queue ``conn`` for forced service (once: it is not queued twice)."""
        if not conn.in_ready:
            conn.in_ready = True
            self.ready.append(conn)

    def close_gracefully(self, conn: Connection) -> None:
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
            self.queue_output(conn)
            self.timers.schedule(conn, TimerKind.PROTOCOL, self._ctx.close_timeout)
        elif core.state is State.LOCAL_CLOSING:
            return
        else:
            core.abort("closed by callback")
            self.queue_output(conn)
            if conn.alive:
                self.kill(conn, "closed by callback")

    def kill(self, conn: Connection, why: str | None) -> None:
        """Close the socket now: DEL_POLL_FD, close, CLOSED/CLOSED_HTTP, WSI_DESTROY."""
        if not conn.alive:
            return
        # DEAD makes every timer of conn stale: the heap drops an entry whose connection
        # is not alive.
        conn.enter(_DEAD)
        conn.output.clear()
        conn.held.clear()
        if conn.file is not None:
            conn.file.close()
            conn.file = None
        core = conn.core
        if why:
            logger.debug("%r closing: %s", conn, why)
            if conn.established and core.state is not _CORE_CLOSED:  # no Closed was logged
                _log.dropped(conn, why, why.startswith(("read error", "socket error")))
        if conn.client_info is not None:  # only a client ever waits for its address
            self.connector.settle(conn)
        fd = conn.fd
        if fd >= 0:
            self.poll.discard(fd)
            self.conns.pop(fd, None)
        if conn.sock is not None:
            try:  # noqa: SIM105 (suppress() is 3 calls more, and this runs per connection)
                conn.sock.close()
            except OSError:
                pass
        core.abort(why or "closed")
        protocol = conn.protocol
        if conn.role is _CLIENT:
            if conn.established:
                self.call(conn, protocol, _CLOSED, None)
            else:
                # Exactly one CLIENT_CONNECTION_ERROR, and nothing else, for a client
                # that never got established.
                reason_text = why or "connection closed during the handshake"
                logger.info("client connection to %s failed: %s", conn.peer, reason_text)
                self.call(conn, protocol, Reason.CLIENT_CONNECTION_ERROR, reason_text)
            return
        self.call(conn, protocol, _CLOSED if conn.established else _CLOSED_HTTP, None)
        self.call(conn, self._ctx.protocols[0], _WSI_DESTROY, None)

    def client_resolved(self, conn: Connection, result: Addresses | OSError) -> None:
        if not self.connector.settle(conn) or not conn.alive:
            return  # timed out or destroyed meanwhile
        if isinstance(result, OSError) or not result:
            self.kill(conn, f"cannot resolve {conn.peer[0]}: {result}")
            return
        family, addr = result[0]
        sock, err = self.connector.open(family, addr)
        conn.sock = sock
        conn.fd = sock.fileno()
        self.conns[conn.fd] = conn
        if err is not None:
            self.kill(conn, err)
            return
        # Writable means connected (or failed: SO_ERROR says which).
        self.poll.add(conn.fd, POLLOUT)

    def _client_connected(self, conn: Connection) -> None:
        info = conn.client_info
        assert conn.sock is not None and info is not None
        err = self.connector.connect_error(conn.sock, conn.peer)
        if err is not None:
            self.kill(conn, err)
            return
        if info.ssl:
            tls = conn.tls = self.connector.tls_for(info)
            self.poll.want(conn.fd, POLLIN)
            self._tls_handshake(conn, tls)
            return
        self._client_send_request(conn)

    def _client_send_request(self, conn: Connection) -> None:
        info = conn.client_info
        assert info is not None
        extra: list[tuple[str, str]] = list(info.headers)
        if self.call(conn, conn.protocol, Reason.CLIENT_APPEND_HANDSHAKE_HEADER, extra):
            self.kill(conn, "refused by CLIENT_APPEND_HANDSHAKE_HEADER")
            return
        host, offered = self.connector.request_target(info)
        try:
            factory = conn.protocol.deflate_factory()
            exts = [factory] if factory is not None else []
            conn.core.initiate(host, info.path, offered, exts, info.origin, extra)
        except LocalProtocolError as exc:
            self.kill(conn, f"bad request: {exc}")
            return
        conn.enter(_HTTP)
        self.queue_output(conn)
        self.update_interest(conn)

    def queue_output(self, conn: Connection) -> None:
        """Move the core's output to the connection and write what the kernel takes."""
        chunks = conn.core.data_to_send()
        out = conn.output
        if chunks:
            if conn.tls is not None:
                chunks = conn.tls.encrypt(chunks)
            for c in chunks:
                out.push(c)
            if self.writing is not conn or out.nbytes >= CORK or not chunks[-1]:
                self.flush(conn)
        elif out.chunks and self.writing is not conn:
            self.flush(conn)

    def flush(self, conn: Connection) -> None:
        sock = conn.sock
        assert sock is not None  # output exists only once connected
        end = conn.output.flush(sock)
        if end is not None:
            self.kill(conn, end or None)

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
        limit = _MAX_WRITEABLE_PER_PASS if self._ctx.writeable_same_pass else 1
        out = conn.output
        while conn.want_writable and (conn.phase is _WS or conn.phase is _HTTP) and n < limit:
            if out.nbytes >= CORK:
                self.flush(conn)
            if out.chunks and not out.writable:
                break  # the kernel is full: POLLOUT will bring us back
            conn.want_writable = False
            conn.wrote = False
            self.writing = conn
            protocol = conn.protocol
            try:
                r = protocol.callback(conn, reason, conn.user, None)  # self.call, in place
            except Exception:
                r = self.callback_raised(conn, protocol, reason)
            finally:
                self.writing = None
            n += 1
            if r:
                self.close_gracefully(conn)
                return
        if out.chunks and conn.alive:
            # self.flush, in place: once per echoed message
            sock = conn.sock
            assert sock is not None
            end = out.flush(sock)
            if end is not None:
                self.kill(conn, end or None)
        if n >= limit and conn.want_writable and not out.chunks and conn.alive:
            if self._ctx.writeable_same_pass:
                self.make_ready(conn)  # fairness cap reached: carry on next pass
            else:
                self.update_interest(conn)

    def run_ready(self) -> None:
        """Forced service: WRITEABLE for writable sockets, held events after rx resumes."""
        ready = self.ready
        for _ in range(len(ready)):
            conn = ready.popleft()
            conn.in_ready = False
            if not conn.alive:
                continue
            if conn.held and conn.rx_enabled:
                held = list(conn.held)
                conn.held.clear()
                self._dispatch(conn, held)
                if not conn.alive:
                    continue
                if not conn.held:
                    self.drain_events(conn)
            core = conn.core
            if core.input_held and core.pending() and conn.rx_enabled and not conn.held:
                conn.core.process_pending()
                self.drain_events(conn)
                if not conn.alive:
                    continue
            tls = conn.tls
            if tls is not None and conn.rx_enabled and tls.has_input():
                self._tls_read(conn, tls)
                if not conn.alive:
                    continue
            if conn.want_writable and not conn.output.chunks and conn.output.writable:
                self._writeable(conn)
            if conn.alive:
                self.update_interest(conn)

    def _timer_fired(self, conn: Connection, kind: TimerKind) -> None:
        if kind is TimerKind.USER:
            if self.call(conn, conn.protocol, Reason.TIMER, None):
                self.close_gracefully(conn)
        elif kind is TimerKind.PING:
            self._ping_due(conn)
        elif conn.role is Role.CLIENT and not conn.established:
            self.kill(conn, "timed out: no WebSocket handshake within the connect timeout")
        elif conn.phase is _HTTP:
            self.kill(conn, "timed out waiting for the request")
        else:
            self.kill(conn, "timed out closing")

    def _ping_due(self, conn: Connection) -> None:
        """Keepalive pings (``ping_interval``): no pong since the last ping drops the peer."""
        if conn.phase is not _WS or conn.core.state is not State.OPEN:
            return
        if conn.awaiting_pong:
            logger.log(
                NOTICE, "%r: no pong within %.1f s; dropping it", conn, self._ctx.pong_timeout
            )
            self.kill(conn, "no pong")
            return
        conn.awaiting_pong = True
        conn.core.send_ping(b"")
        self.queue_output(conn)
        if conn.alive:
            self.timers.schedule(conn, TimerKind.PING, self._ctx.pong_timeout)

    def file_more(self, conn: Connection) -> None:
        """Send the next chunks of the file being served while the socket takes them."""
        f = conn.file
        while f is not None and not conn.output and conn.alive:
            data = f.read(CORK)
            if data:
                conn.core.send_http_body(data)
                self.queue_output(conn)
                continue
            f.close()
            conn.file = None
            conn.core.send_http_body(b"", end=True)
            self.queue_output(conn)
            if conn.alive and self.call(conn, conn.protocol, Reason.HTTP_FILE_COMPLETION, None):
                self.kill(conn, "closed by HTTP_FILE_COMPLETION")
                return
            if conn.alive and conn.core.state is State.HTTP_HEAD:
                self.timers.schedule(conn, TimerKind.PROTOCOL, self._ctx.keepalive_timeout)
                # A pipelined request may already be parsed.
                self.drain_events(conn)
            return
