"""The poll contract seen by a host: exact poll events, service_fd, cancel, threads."""

from __future__ import annotations

import select
import socket
import threading
import time

from support.servicing import pump, settle
from wsclient import (
    CLOSE,
    POLL_REASONS,
    TEXT,
    Echo,
    ExternalLoop,
    close_frame,
    handshake,
    text,
    wait_eof,
    wait_frame,
)

from lwsbridge.context import POLLIN, POLLOUT, PollFd, Protocol, Reason, WriteKind
from lwsbridge.core.errors import LocalProtocolError
from lwsbridge.service import ACCEPT_TURN

ADD, DEL = Reason.ADD_POLL_FD, Reason.DEL_POLL_FD
SET, CLEAR = Reason.SET_MODE_POLL_FD, Reason.CLEAR_MODE_POLL_FD


def test_poll_constants_are_the_kernels() -> None:
    assert (POLLIN, POLLOUT) == (select.POLLIN, select.POLLOUT)


def test_poll_events_accept_upgrade_echo_close_exact(make_ctx, client) -> None:
    """External select.poll() loop: the exact poll events of one connection's life."""
    loop = ExternalLoop()
    echo = Echo(hook=loop.on_p0)
    ctx = make_ctx([Protocol("echo", echo.callback)])
    loop.ctx = ctx
    listen_fd = ctx.listen_fd
    wake_fd = ctx.wakeup_fd
    # Creation: the wakeup pipe and the listener, both POLLIN.
    assert sorted(loop.log) == sorted([(ADD, wake_fd, POLLIN, 0), (ADD, listen_fd, POLLIN, 0)])
    assert sorted(ctx.fds) == sorted([(wake_fd, POLLIN), (listen_fd, POLLIN)])
    start = len(loop.log)

    c = client(ctx.port)
    conn = pump(loop.run_once, lambda: next(iter(ctx.all_connections()), None), "accept")
    fd = conn.fd
    assert loop.log[start:] == [(ADD, fd, POLLIN, 0)]

    # Upgrade: the 101 goes out at once, interest stays POLLIN: nothing is reported.
    c.send_upgrade("/", protocols=("echo",))
    resp = pump(loop.run_once, c.take_response, "101")
    c.check_accept(resp)
    assert echo.count(Reason.ESTABLISHED) == 1

    # Echo round trips: the write fits the kernel, interest never changes.
    for i in range(3):
        c.send(text(f"hello {i}"))
        f = wait_frame(loop.run_once, c)
        assert (f.opcode, f.payload) == (TEXT, f"hello {i}".encode())
    settle(loop.run_once, 0.05)
    assert loop.log[start:] == [(ADD, fd, POLLIN, 0)]

    # Close: DEL_POLL_FD while the fd is still open, then CLOSED.
    c.send(close_frame(1000))
    f = wait_frame(loop.run_once, c, "close echo")
    assert f.opcode == CLOSE and f.close_code == 1000
    wait_eof(loop.run_once, c)
    assert loop.log[start:] == [(ADD, fd, POLLIN, 0), (DEL, fd, 0, POLLIN)]
    assert loop.fstat_at_del[fd] is True, "DEL_POLL_FD must come before close(fd)"
    assert conn.sock.fileno() == -1
    assert echo.count(Reason.CLOSED) == 1
    # CLOSED comes after DEL: the callback order on protocol 0 / the echo protocol.
    settle(loop.run_once, 0.05)
    assert loop.log[start:] == [(ADD, fd, POLLIN, 0), (DEL, fd, 0, POLLIN)]

    # Every poll event is bracketed by LOCK_POLL / UNLOCK_POLL with the same args.
    raw = loop.raw
    polls = [i for i, (r, _) in enumerate(raw) if r in POLL_REASONS]
    assert len(polls) == len(loop.log)
    for i in polls:
        assert raw[i - 1] == (Reason.LOCK_POLL, raw[i][1])
        assert raw[i + 1] == (Reason.UNLOCK_POLL, raw[i][1])
    locks = [r for r, _ in raw if r in (Reason.LOCK_POLL, Reason.UNLOCK_POLL)]
    assert len(locks) == 2 * len(polls)

    # Destroy: the listener and the wakeup pipe leave the poll set.
    n = len(loop.log)
    ctx.destroy()
    assert sorted(loop.log[n:]) == sorted([(DEL, listen_fd, 0, POLLIN), (DEL, wake_fd, 0, POLLIN)])
    assert loop.events == {}


def test_pollout_set_and_cleared_when_kernel_full(make_ctx, client) -> None:
    """A write the kernel cannot take: SET_MODE POLLOUT, then CLEAR_MODE once drained."""
    loop = ExternalLoop()
    big = b"x" * (1 << 20)
    sent: list[int] = []

    def cb(conn, reason, user, payload):
        loop.on_p0(reason, payload) if conn is None else None
        if reason is Reason.ESTABLISHED:
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32768)
            conn.callback_on_writable()
        elif reason is Reason.SERVER_WRITEABLE and not sent:
            sent.append(conn.write(big, WriteKind.BINARY))
        return 0

    ctx = make_ctx([Protocol("p", cb)])
    loop.ctx = ctx
    c = client(ctx.port, rcvbuf=32768)
    c.send_upgrade()
    pump(loop.run_once, lambda: ctx.connection_count, "accept")
    fd = ctx.all_connections()[0].fd
    pump(loop.run_once, lambda: sent, "the big write")
    assert (SET, fd, POLLIN | POLLOUT, POLLIN) in loop.log
    assert (CLEAR, fd, POLLIN, POLLIN | POLLOUT) not in loop.log
    got = bytearray()

    def drained() -> bool:
        c.pull()
        return len(c.buf) >= (1 << 20) + 10 and (CLEAR, fd, POLLIN, POLLIN | POLLOUT) in loop.log

    pump(loop.run_once, drained, "the whole message")
    got = c.buf
    resp_end = got.find(b"\r\n\r\n") + 4
    frame = got[resp_end:]
    assert frame[:2] == b"\x82\x7f" and len(frame) == (1 << 20) + 10
    assert bytes(frame[10:]) == big
    mine = [e for e in loop.log if e[1] == fd]
    assert mine == [
        (ADD, fd, POLLIN, 0),
        (SET, fd, POLLIN | POLLOUT, POLLIN),
        (CLEAR, fd, POLLIN, POLLIN | POLLOUT),
    ]


def test_service_fd_foreign_fd_untouched_ours_zeroed(make_ctx, client) -> None:
    loop = ExternalLoop()
    echo = Echo(hook=loop.on_p0)
    ctx = make_ctx([Protocol("echo", echo.callback)])
    loop.ctx = ctx
    mine, theirs = socket.socketpair()
    try:
        loop.watch_foreign(mine.fileno(), select.POLLIN)
        theirs.send(b"ping")
        c = client(ctx.port)
        c.send_upgrade()
        # The foreign fd is ready as well as ours; the loop asserts per fd that
        # service_fd returns False and leaves revents alone for the foreign one and
        # zeroes revents for ours.
        pump(loop.run_once, c.take_response, "101 while a foreign fd is ready")
        assert loop.foreign[mine.fileno()], "the foreign fd was reported by poll"
        assert all(r & select.POLLIN for r in loop.foreign[mine.fileno()])
        assert mine.recv(10) == b"ping", "the context must not read a foreign fd"
        loop.unwatch_foreign(mine.fileno())

        # Directly, the PollFd form.
        pfd = PollFd(mine.fileno(), POLLIN, POLLIN | POLLOUT)
        assert ctx.service_fd(pfd) is False
        assert (pfd.fd, pfd.events, pfd.revents) == (mine.fileno(), POLLIN, POLLIN | POLLOUT)
        ours = PollFd(ctx.wakeup_fd, POLLIN, POLLIN)
        assert ctx.service_fd(ours) is False  # no connection closed
        assert ours.revents == 0
        # The (fd, revents) int form.
        assert ctx.service_fd(mine.fileno(), POLLIN | POLLOUT) == POLLIN | POLLOUT
        assert ctx.service_fd(mine.fileno(), 0) == 0
        assert ctx.service_fd(ctx.listen_fd, POLLIN) == 0
        conn = ctx.all_connections()[0]
        assert ctx.service_fd(conn.fd, POLLIN) == 0  # nothing to read: handled anyway
        assert conn in ctx.all_connections()
        # A PollFd whose connection closes during servicing returns True.
        c.send(close_frame(1000))
        time.sleep(0.05)
        pfd = PollFd(conn.fd, POLLIN, POLLIN)
        assert ctx.service_fd(pfd) is True
        assert pfd.revents == 0
        assert echo.count(Reason.CLOSED) == 1
    finally:
        mine.close()
        theirs.close()


def test_cancel_service_from_another_thread(make_ctx) -> None:
    seen: list[tuple[str, object, int]] = []

    def rec(name):
        def cb(conn, reason, user, payload):
            if reason is Reason.EVENT_WAIT_CANCELLED:
                seen.append((name, conn, threading.get_ident()))
            return 0

        return cb

    ctx = make_ctx([Protocol("a", rec("a")), Protocol("b", rec("b")), Protocol("c", rec("c"))])
    ctx.service(0)
    t = threading.Timer(0.1, ctx.cancel_service)
    t.start()
    try:
        t0 = time.monotonic()
        ctx.service(5000)  # would sleep 5 s without the wakeup
        dt = time.monotonic() - t0
    finally:
        t.join(5)
    assert dt < 2.0, f"cancel_service did not wake the loop ({dt:.2f} s)"
    me = threading.get_ident()
    assert sorted(seen, key=lambda s: s[0]) == [("a", None, me), ("b", None, me), ("c", None, me)]
    # The wakeup was drained: the next service sleeps its timeout, no repeat.
    seen.clear()
    ctx.service(50)
    assert seen == []


def test_cancel_service_wakes_external_loop(make_ctx) -> None:
    loop = ExternalLoop()
    echo = Echo(hook=loop.on_p0)
    ctx = make_ctx([Protocol("echo", echo.callback)])
    loop.ctx = ctx
    threading.Timer(0.05, ctx.cancel_service).start()
    pump(
        loop.run_once,
        lambda: echo.count(Reason.EVENT_WAIT_CANCELLED),
        "EVENT_WAIT_CANCELLED",
    )
    assert echo.count(Reason.EVENT_WAIT_CANCELLED) == 1


def test_wrong_thread_calls_raise(make_ctx, client) -> None:
    echo = Echo()
    ctx = make_ctx([Protocol("echo", echo.callback)])
    c = client(ctx.port)
    handshake(ctx, c)
    conn = echo.conns()[0]
    errors: dict[str, BaseException | None] = {}

    def other() -> None:
        calls = {
            "service": lambda: ctx.service(0),
            "callback_on_writable": lambda: ctx.callback_on_writable(conn),
            "conn.callback_on_writable": conn.callback_on_writable,
            "service_fd": lambda: ctx.service_fd(conn.fd, POLLIN),
            "service_fd(PollFd)": lambda: ctx.service_fd(PollFd(conn.fd, POLLIN, POLLIN)),
            "service_pending": ctx.service_pending,
        }
        for name, fn in calls.items():
            try:
                fn()
                errors[name] = None
            except BaseException as exc:
                errors[name] = exc

    t = threading.Thread(target=other)
    t.start()
    t.join(5)
    assert not t.is_alive()
    assert set(errors) == {
        "service",
        "callback_on_writable",
        "conn.callback_on_writable",
        "service_fd",
        "service_fd(PollFd)",
        "service_pending",
    }
    for name, exc in errors.items():
        assert isinstance(exc, LocalProtocolError), (name, exc)
        msg = str(exc)
        assert "single-threaded" in msg and "cancel_service" in msg, msg
    # Nothing was done by the refused calls: the connection still echoes.
    c.send(text("still here"))
    assert wait_frame(ctx, c).payload == b"still here"
    assert echo.count(Reason.SERVER_WRITEABLE) == 1


def test_destroy_closes_connections_once(make_ctx, client) -> None:
    echo = Echo()
    ctx = make_ctx([Protocol("echo", echo.callback)])
    c = client(ctx.port)
    handshake(ctx, c)
    ctx.destroy()
    assert echo.count(Reason.CLOSED) == 1
    assert echo.count(Reason.PROTOCOL_DESTROY) == 1
    wait_eof(lambda: time.sleep(0.01), c)
    assert ctx.fds == []


def test_listener_gets_a_turn_behind_busy_connections(make_ctx, client) -> None:
    """A host that services connection fds and never reaches the listener's readiness
    (it sits behind a close storm in the kernel's ready list) still has its new
    client accepted within ACCEPT_TURN connection services."""
    echo = Echo()
    ctx = make_ctx([Protocol("echo", echo.callback)])
    c1 = client(ctx.port)
    handshake(ctx, c1)
    busy = ctx.all_connections()[0]
    ctx.service_fd(ctx.listen_fd, POLLIN)  # the listener's own turn: the count starts
    client(ctx.port)  # connected by the kernel, waiting in the listen backlog
    for _ in range(ACCEPT_TURN - 1):
        ctx.service_fd(busy.fd, POLLIN)  # nothing to read: EAGAIN, nothing happens
    assert ctx.connection_count == 1
    ctx.service_fd(busy.fd, POLLIN)
    assert ctx.connection_count == 2
    assert busy.alive and echo.count(Reason.CLOSED) == 0
