"""Timers, the handshake timeout, and every way a connection ends."""

from __future__ import annotations

import logging
import select
import socket
import threading
import time

import pytest
from support.servicing import pump, settle, stepper
from wsclient import CLOSE, TEXT, Echo, close_frame, handshake, text, wait_eof, wait_frame

from lwsbridge.context import CLOSE as CB_CLOSE
from lwsbridge.context import POLLIN, Protocol, Reason


def test_set_timer_one_callback_after_delay(make_ctx, client) -> None:
    fired: list[float] = []

    def cb(conn, reason, user, payload):
        if reason is Reason.TIMER:
            fired.append(time.monotonic())
        return 0

    ctx = make_ctx([Protocol("p", cb)])
    c = client(ctx.port)
    handshake(ctx, c)
    conn = ctx.all_connections()[0]
    t0 = time.monotonic()
    conn.set_timer(0.05)
    nt = ctx.next_timeout()
    assert nt is not None and 40 <= nt <= 50, nt
    pump(stepper(ctx, ms=5), lambda: fired, "TIMER")
    dt = fired[0] - t0
    assert 0.049 <= dt < 0.5, dt
    settle(stepper(ctx), 0.15)
    assert len(fired) == 1, "set_timer gives one TIMER, not a periodic one"
    assert ctx.next_timeout() is None

    # Re-arming replaces the previous deadline.
    conn.set_timer(0.5)
    conn.set_timer(0.03)
    assert ctx.next_timeout() <= 30
    t0 = time.monotonic()
    pump(stepper(ctx, ms=5), lambda: len(fired) == 2, "re-armed TIMER")
    assert fired[1] - t0 < 0.3
    settle(stepper(ctx), 0.6)
    assert len(fired) == 2


def test_set_timer_none_cancels(make_ctx, client) -> None:
    fired: list[float] = []

    def cb(conn, reason, user, payload):
        if reason is Reason.ESTABLISHED:
            conn.set_timer(0.05)
            conn.set_timer(None)
        elif reason is Reason.TIMER:
            fired.append(time.monotonic())
        return 0

    ctx = make_ctx([Protocol("p", cb)])
    c = client(ctx.port)
    handshake(ctx, c)
    assert ctx.next_timeout() is None
    conn = ctx.all_connections()[0]
    conn.set_timer(0.05)
    conn.set_timer(None)
    assert ctx.next_timeout() is None
    settle(stepper(ctx), 0.2)
    assert fired == []


def test_timer_returning_close_closes(make_ctx, client) -> None:
    closed: list[object] = []

    def cb(conn, reason, user, payload):
        if reason is Reason.ESTABLISHED:
            conn.set_timer(0.02)
        elif reason is Reason.TIMER:
            conn.close_reason(4000, "timer")
            return CB_CLOSE
        elif reason is Reason.CLOSED:
            closed.append(conn)
        return 0

    ctx = make_ctx([Protocol("p", cb)])
    c = client(ctx.port)
    handshake(ctx, c)
    f = wait_frame(ctx, c)
    assert (f.opcode, f.close_code, f.close_reason) == (CLOSE, 4000, "timer")
    c.send(close_frame(4000))
    wait_eof(ctx, c)
    assert len(closed) == 1


def test_handshake_timeout(make_ctx, client) -> None:
    echo = Echo()
    ctx = make_ctx([Protocol("p", echo.callback)], handshake_timeout=0.2)
    c = client(ctx.port)
    t0 = time.monotonic()
    pump(stepper(ctx), lambda: ctx.connection_count, "accept")
    nt = ctx.next_timeout()
    assert nt is not None and nt <= 200
    wait_eof(ctx, c, "the handshake timeout")
    dt = time.monotonic() - t0
    assert 0.18 <= dt < 1.5, dt
    assert c.buf == b"", "a silent client gets no response, just the close"
    assert echo.count(Reason.CLOSED_HTTP) == 1
    assert echo.count(Reason.CLOSED) == 0
    assert ctx.connection_count == 0


def test_handshake_timeout_partial_head(make_ctx, client) -> None:
    echo = Echo()
    ctx = make_ctx([Protocol("p", echo.callback)], handshake_timeout=0.2)
    c = client(ctx.port)
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finished
    t0 = time.monotonic()
    wait_eof(ctx, c, "the handshake timeout")
    assert 0.15 <= time.monotonic() - t0 < 1.5
    # An established connection is not subject to it.
    c2 = client(ctx.port)
    handshake(ctx, c2)
    settle(stepper(ctx), 0.35)
    c2.send(text("alive"))
    assert wait_frame(ctx, c2).payload == b"alive"


# ------------------------------------------------------------------------- close paths


class Closer(Echo):
    """Echo, but "close" makes RECEIVE return -1; "close4001" sets a reason first."""

    def callback(self, conn, reason, user, payload):
        if reason is Reason.RECEIVE and payload == b"close":
            self.calls.append((reason, conn, payload))
            return CB_CLOSE
        if reason is Reason.RECEIVE and payload == b"close4001":
            self.calls.append((reason, conn, payload))
            conn.close_reason(4001, "bye")
            return -1
        return super().callback(conn, reason, user, payload)


@pytest.mark.parametrize(
    ("msg", "code", "reason"), [(b"close", 1000, ""), (b"close4001", 4001, "bye")]
)
def test_callback_returns_close(make_ctx, client, msg, code, reason) -> None:
    echo = Closer()
    ctx = make_ctx([Protocol("p", echo.callback)])
    c = client(ctx.port)
    handshake(ctx, c)
    c.send(text(msg))
    f = wait_frame(ctx, c, "the close frame")
    assert (f.opcode, f.close_code, f.close_reason) == (CLOSE, code, reason)
    # Until the peer answers, the server waits (and keeps the socket).
    settle(stepper(ctx), 0.05)
    assert echo.count(Reason.CLOSED) == 0
    c.send(close_frame(code))
    wait_eof(ctx, c)
    settle(stepper(ctx), 0.05)
    assert echo.count(Reason.CLOSED) == 1
    assert echo.count(Reason.WS_PEER_INITIATED_CLOSE) == 0
    assert ctx.connection_count == 0


def test_callback_close_peer_never_answers(make_ctx, client) -> None:
    echo = Closer()
    ctx = make_ctx([Protocol("p", echo.callback)], close_timeout=0.2)
    c = client(ctx.port)
    handshake(ctx, c)
    c.send(text("close"))
    assert wait_frame(ctx, c).close_code == 1000
    t0 = time.monotonic()
    wait_eof(ctx, c, "the close timeout")
    assert time.monotonic() - t0 < 1.0
    assert echo.count(Reason.CLOSED) == 1


def test_peer_close_frame(make_ctx, client) -> None:
    echo = Echo()
    ctx = make_ctx([Protocol("p", echo.callback)])
    c = client(ctx.port)
    handshake(ctx, c)
    c.send(close_frame(1001, "going"))
    f = wait_frame(ctx, c)
    # The reply echoes the peer's code and reason (lws and websockets do the same).
    assert (f.opcode, f.close_code, f.close_reason) == (CLOSE, 1001, "going")
    wait_eof(ctx, c)
    settle(stepper(ctx), 0.05)
    assert echo.count(Reason.WS_PEER_INITIATED_CLOSE) == 1
    assert echo.count(Reason.CLOSED) == 1
    assert ctx.connection_count == 0


def test_peer_fin_without_close(make_ctx, client) -> None:
    echo = Echo()
    ctx = make_ctx([Protocol("p", echo.callback)])
    c = client(ctx.port)
    handshake(ctx, c)
    c.shutdown_write()
    t0 = time.monotonic()
    wait_eof(ctx, c)
    pump(stepper(ctx), lambda: echo.count(Reason.CLOSED), "CLOSED")
    # Not after the 5 s close timeout: the peer is gone.
    assert time.monotonic() - t0 < 1.0
    settle(stepper(ctx), 0.05)
    assert echo.count(Reason.CLOSED) == 1
    assert ctx.connection_count == 0 and len(ctx.fds) == 2


def test_timers_of_a_closed_connection_never_fire(make_ctx, client) -> None:
    """A user timer and the keepalive ping armed, then the peer goes: neither fires,
    and no deadline is left (the close relies on the DEAD phase alone making them stale)."""
    echo = Echo()
    fired: list[Reason] = []

    def cb(conn, reason, user, payload):
        if reason is Reason.ESTABLISHED:
            conn.set_timer(0.05)
        elif reason is Reason.TIMER:
            fired.append(reason)
        return echo.callback(conn, reason, user, payload)

    ctx = make_ctx([Protocol("p", cb)], ping_interval=0.05)
    c = client(ctx.port)
    handshake(ctx, c)
    assert ctx.next_timeout() is not None
    c.shutdown_write()
    wait_eof(ctx, c)
    pump(stepper(ctx), lambda: echo.count(Reason.CLOSED), "CLOSED")
    assert ctx.next_timeout() is None
    settle(stepper(ctx), 0.15)
    assert fired == [] and echo.count(Reason.CLOSED) == 1


def test_peer_fin_closes_in_the_one_service_call_that_reads_it(make_ctx, client) -> None:
    """EOF is final: the read that finds it closes the connection (DEL, close, CLOSED),
    instead of leaving it for the EOF to be read again on the next pass -- a close
    storm of n connections is then n services, not 2n."""
    echo = Echo()
    ctx = make_ctx([Protocol("p", echo.callback)])
    c = client(ctx.port)
    handshake(ctx, c)
    conn = ctx.all_connections()[0]
    fd = conn.fd
    c.close()
    r, _, _ = select.select([fd], [], [], 5.0)
    assert r == [fd], "the server socket never saw the FIN"
    assert ctx.service_fd(fd, POLLIN) == 0
    assert echo.count(Reason.CLOSED) == 1
    assert ctx.connection_count == 0 and fd not in dict(ctx.fds)
    assert conn.sock.fileno() == -1


def test_peer_fin_with_rx_paused_keeps_the_held_events(make_ctx, client) -> None:
    """The FIN of a peer whose messages are held (rx flow control): the held message
    is delivered when reception resumes, then the connection closes -- closing at
    the first EOF read must not drop what is held."""
    got: list[bytes] = []
    echo = Echo()

    def cb(conn, reason, user, payload):
        if reason is Reason.RECEIVE:
            got.append(bytes(payload))
            if len(got) == 1:
                conn.rx_flow_control(False)
        return echo.callback(conn, reason, user, payload)

    ctx = make_ctx([Protocol("p", cb)])
    c = client(ctx.port)
    handshake(ctx, c)
    conn = ctx.all_connections()[0]
    c.send(text("one") + text("two"))
    pump(stepper(ctx), lambda: got, "the first message")
    c.close()
    settle(stepper(ctx), 0.1)
    assert got == [b"one"] and echo.count(Reason.CLOSED) == 0
    conn.rx_flow_control(True)
    pump(stepper(ctx), lambda: echo.count(Reason.CLOSED), "CLOSED after resuming")
    assert got == [b"one", b"two"]
    assert ctx.connection_count == 0


def test_peer_rst(make_ctx, client) -> None:
    echo = Echo()
    ctx = make_ctx([Protocol("p", echo.callback)])
    c = client(ctx.port)
    handshake(ctx, c)
    c.abort()
    pump(stepper(ctx), lambda: echo.count(Reason.CLOSED), "CLOSED after RST")
    settle(stepper(ctx), 0.05)
    assert echo.count(Reason.CLOSED) == 1
    assert ctx.connection_count == 0 and len(ctx.fds) == 2


def test_peer_rst_with_output_queued(make_ctx, client) -> None:
    """RST while the server has unsent data: a write error, still one CLOSED."""
    echo = Echo()
    ctx = make_ctx([Protocol("p", echo.callback)])
    c = client(ctx.port, rcvbuf=4096)
    handshake(ctx, c)
    conn = ctx.all_connections()[0]
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    for _ in range(30):
        c.send(text(b"y" * 60000))
    settle(stepper(ctx), 0.1)
    c.abort()
    pump(stepper(ctx), lambda: echo.count(Reason.CLOSED), "CLOSED after RST")
    settle(stepper(ctx), 0.05)
    assert echo.count(Reason.CLOSED) == 1


def test_callback_exception_closes_only_that_connection(make_ctx, client, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="lwsbridge")

    class Boom(Echo):
        def callback(self, conn, reason, user, payload):
            if reason is Reason.RECEIVE and payload == b"boom":
                raise RuntimeError("kaboom")
            return super().callback(conn, reason, user, payload)

    echo = Boom()
    ctx = make_ctx([Protocol("p", echo.callback)])
    c1, c2 = client(ctx.port), client(ctx.port)
    handshake(ctx, c1)
    handshake(ctx, c2)
    conn1 = echo.conns()[0]
    c1.send(text("boom"))
    f = wait_frame(ctx, c1)
    assert (f.opcode, f.close_code) == (CLOSE, 1000)
    c1.send(close_frame(1000))
    wait_eof(ctx, c1)
    # The other connection keeps echoing.
    for i in range(3):
        c2.send(text(f"still {i}"))
        f = wait_frame(ctx, c2)
        assert (f.opcode, f.payload) == (TEXT, f"still {i}".encode())
    assert echo.count(Reason.CLOSED) == 1
    assert echo.count(Reason.CLOSED, conn1) == 1
    errs = [r for r in caplog.records if r.name == "lwsbridge" and r.levelno >= logging.ERROR]
    assert len(errs) == 1
    rec = errs[0]
    assert rec.exc_info is not None and rec.exc_info[0] is RuntimeError
    assert "RECEIVE" in rec.getMessage()
    assert "kaboom" in caplog.text and "Traceback" in caplog.text


def test_echo_with_websockets_client_in_thread(make_ctx) -> None:
    """A real third-party client (websockets, sync, in a helper thread)."""
    from websockets.sync.client import connect

    echo = Echo()
    ctx = make_ctx([Protocol("echo", echo.callback)])
    result: dict[str, object] = {}

    def run() -> None:
        try:
            with connect(f"ws://127.0.0.1:{ctx.port}/", subprotocols=["echo"]) as ws:
                out = []
                for m in ("one", "two", "three" * 1000):
                    ws.send(m)
                    out.append(ws.recv(timeout=5))
                result["out"] = out
                result["sub"] = ws.subprotocol
        except BaseException as exc:
            result["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    pump(stepper(ctx), lambda: not t.is_alive(), "the websockets client")
    assert "error" not in result, result
    assert result["out"] == ["one", "two", "three" * 1000]
    assert result["sub"] == "echo"
    pump(stepper(ctx), lambda: echo.count(Reason.CLOSED), "CLOSED")
    assert echo.count(Reason.CLOSED) == 1
