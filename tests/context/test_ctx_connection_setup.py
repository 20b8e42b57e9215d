"""Connection setup and the per-message calls, as the shortened paths leave them.

Accepted sockets are non-blocking with TCP_NODELAY whether or not the kernel copies
the option from the listener; protocol 0's poll callbacks keep their brackets and
their guard; ``Context.write`` / ``Context.callback_on_writable`` do what
``Connection.write`` / ``Connection.callback_on_writable`` do; and ``adopt_thread``
moves the thread those check against.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

import pytest
from support.servicing import pump, stepper
from wsclient import handshake, text, wait_frame

from lwsbridge.adapters.epoll_loop import EpollLoop
from lwsbridge.adapters.select_loop import SelectLoop
from lwsbridge.context import Protocol, Reason, WriteKind
from lwsbridge.core.errors import LocalProtocolError

POLL = (Reason.LOCK_POLL, Reason.ADD_POLL_FD, Reason.DEL_POLL_FD, Reason.UNLOCK_POLL)


def _socket_options(make_ctx, client, n: int) -> list[tuple[int, bool]]:  # type: ignore[no-untyped-def]
    """(TCP_NODELAY, blocking) of ``n`` accepted sockets, one connection after another."""
    ctx = make_ctx([Protocol("p", lambda *a: 0)])
    got: list[tuple[int, bool]] = []
    for _ in range(n):
        c = client(ctx.port)
        handshake(ctx, c)
        (conn,) = [x for x in ctx.all_connections() if x.alive]
        assert conn.sock is not None
        got.append(
            (conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), conn.sock.getblocking())
        )
        c.close()
        pump(stepper(ctx), lambda: not ctx.all_connections(), "the close")
    return got


def test_accepted_sockets_are_nonblocking_with_nodelay(make_ctx, client) -> None:
    # The first connection is where the listener finds out whether the kernel copied
    # TCP_NODELAY; the later ones are where it relies on what it found.
    for nodelay, blocking in _socket_options(make_ctx, client, 3):
        assert nodelay != 0
        assert blocking is False


def test_nodelay_is_set_per_socket_when_the_listener_has_none(
    make_ctx, client, monkeypatch
) -> None:
    # A listener without TCP_NODELAY (a kernel or socket type that refuses it there):
    # then nothing is inherited, and each accepted socket must get its own.
    real = socket.socket.setsockopt

    def refuse_on_listener(self: socket.socket, *args: Any) -> None:
        if args[:2] == (socket.IPPROTO_TCP, socket.TCP_NODELAY) and _listening(self):
            raise OSError("refused for the test")
        real(self, *args)

    monkeypatch.setattr(socket.socket, "setsockopt", refuse_on_listener)
    for nodelay, blocking in _socket_options(make_ctx, client, 2):
        assert nodelay != 0
        assert blocking is False


def _listening(sock: socket.socket) -> bool:
    return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))


def test_protocol0_poll_callback_that_raises_is_logged_and_the_rest_delivered(
    make_ctx, client, caplog
) -> None:
    seen: list[Reason] = []

    def p0(conn, reason, user, payload):  # type: ignore[no-untyped-def]
        if reason in POLL and conn is None:
            seen.append(reason)
            if reason is Reason.ADD_POLL_FD:
                raise RuntimeError("p0 broke on ADD")
        if reason is Reason.RECEIVE:
            conn.callback_on_writable()
        elif reason is Reason.SERVER_WRITEABLE:
            conn.write(b"still served", WriteKind.BINARY)
        return 0

    ctx = make_ctx([Protocol("p0", p0)])
    seen.clear()  # the listener's and the wakeup's ADDs (which raised too)
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="lwsbridge"):
        c = client(ctx.port)
        handshake(ctx, c)
        c.send(text("go"))
        assert wait_frame(ctx, c).payload == b"still served"
    # Each callback is guarded on its own: UNLOCK_POLL follows the ADD that raised.
    assert seen[:3] == [Reason.LOCK_POLL, Reason.ADD_POLL_FD, Reason.UNLOCK_POLL]
    lines = [r for r in caplog.records if "raised in ADD_POLL_FD" in r.getMessage()]
    assert len(lines) == 1
    assert "callback p0" in lines[0].getMessage()


def test_context_write_and_callback_on_writable_act_on_the_connection(make_ctx, client) -> None:
    errors: list[str] = []

    def cb(conn, reason, user, payload):  # type: ignore[no-untyped-def]
        if reason is Reason.RECEIVE:
            conn.context.callback_on_writable(conn)
        elif reason is Reason.SERVER_WRITEABLE:
            assert conn.context.write(conn, b"via the context", WriteKind.BINARY) == 15
            try:
                other.write(conn, b"via another context", WriteKind.BINARY)
            except LocalProtocolError as exc:
                errors.append(str(exc))
        return 0

    ctx = make_ctx([Protocol("p", cb)])
    other = make_ctx([Protocol("q", lambda *a: 0)], port=None)
    c = client(ctx.port)
    handshake(ctx, c)
    c.send(text("go"))
    assert wait_frame(ctx, c).payload == b"via the context"
    assert len(errors) == 1
    assert "WRITEABLE" in errors[0]


def test_adopt_thread_moves_the_connection_calls_too(make_ctx, client) -> None:
    """Made on this thread, serviced on another after adopt_thread(): the connection's
    write and callback_on_writable follow the context there, and refuse this thread."""
    frames: list[bytes] = []

    def cb(conn, reason, user, payload):  # type: ignore[no-untyped-def]
        if reason is Reason.RECEIVE:
            conn.callback_on_writable()
        elif reason is Reason.SERVER_WRITEABLE:
            conn.write(b"from the adopting thread", WriteKind.BINARY)
        return 0

    ctx = make_ctx([Protocol("p", cb)])
    c = client(ctx.port)
    errors: list[BaseException] = []
    conns: list[Any] = []
    established = threading.Event()
    go = threading.Event()

    def service() -> None:
        try:
            ctx.adopt_thread()
            handshake(ctx, c)
            conns.extend(ctx.all_connections())
            established.set()
            assert go.wait(10)
            c.send(text("go"))
            frames.append(wait_frame(ctx, c).payload)
        except BaseException as exc:  # handed back to the test
            errors.append(exc)
            established.set()

    t = threading.Thread(target=service)
    t.start()
    assert established.wait(10)
    try:
        with pytest.raises(LocalProtocolError, match="single-threaded"):
            conns[0].callback_on_writable()  # this thread made it, but no longer owns it
    finally:
        go.set()
        t.join(15)
    assert not errors, errors
    assert frames == [b"from the adopting thread"]


def test_writeable_callback_that_raises_closes_that_connection_once(
    make_ctx, client, caplog
) -> None:
    # The WRITEABLE callback is called in place (not through Service.call): the same
    # guard, the same log line, the same close.
    def cb(conn, reason, user, payload):  # type: ignore[no-untyped-def]
        if reason is Reason.RECEIVE:
            conn.callback_on_writable()
        elif reason is Reason.SERVER_WRITEABLE:
            if conn is boom[0]:
                raise RuntimeError("kaboom in WRITEABLE")
            conn.write(b"fine", WriteKind.BINARY)
        return 0

    boom: list[Any] = [None]
    ctx = make_ctx([Protocol("p", cb)])
    c1, c2 = client(ctx.port), client(ctx.port)
    handshake(ctx, c1)
    handshake(ctx, c2)
    boom[0] = ctx.all_connections()[0]
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="lwsbridge"):
        c1.send(text("go"))
        f = wait_frame(ctx, c1)
        assert (f.opcode, f.close_code) == (0x8, 1000)
        c2.send(text("go"))  # the other connection still writes
        assert wait_frame(ctx, c2).payload == b"fine"
    errs = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errs) == 1
    assert "raised in SERVER_WRITEABLE" in errs[0].getMessage()
    assert errs[0].exc_info is not None and errs[0].exc_info[0] is RuntimeError


def _acked(sock: socket.socket) -> bool:
    """The peer's kernel has acknowledged everything sent (tcp_info.tcpi_unacked == 0)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return struct.unpack_from("I", info, 24)[0] == 0


@pytest.mark.parametrize("loop", ["builtin", "epoll", "select"])
def test_request_in_at_accept_is_answered_in_that_pass(make_ctx, client, loop: str) -> None:
    # Where the sink watches an fd as soon as add_fd returns, the accepted socket is
    # read at once: the pass that accepts it sends the 101.  select takes a high fd and
    # refuses it later, so there the request waits for the next pass.  The callbacks
    # are the same, in the same order, either way.
    heard: list[Reason] = []

    def cb(conn, reason, user, payload) -> int:  # type: ignore[no-untyped-def]
        heard.append(reason)
        return 0

    ctx = make_ctx([Protocol("p", cb)])
    if loop == "builtin":
        run_once: Callable[[], object] = lambda: ctx.service(1000)  # noqa: E731
    else:
        host = (EpollLoop if loop == "epoll" else SelectLoop)(ctx)
        run_once = lambda: host.run_once(1000)  # noqa: E731
    c = client(ctx.port)
    c.send_upgrade("/")
    pump(lambda: None, lambda: _acked(c.sock), "the request in the server's kernel")
    heard.clear()
    run_once()
    assert (Reason.ESTABLISHED in heard) is (loop != "select"), heard
    pump(run_once, lambda: Reason.ESTABLISHED in heard, "ESTABLISHED")
    assert c.take_response() is not None or pump(run_once, c.take_response, "the 101")
    assert heard == [
        Reason.FILTER_NETWORK_CONNECTION,
        Reason.LOCK_POLL,
        Reason.ADD_POLL_FD,
        Reason.UNLOCK_POLL,
        Reason.WSI_CREATE,
        Reason.SERVER_NEW_CLIENT_INSTANTIATED,
        Reason.FILTER_PROTOCOL_CONNECTION,
        Reason.ESTABLISHED,
    ]
