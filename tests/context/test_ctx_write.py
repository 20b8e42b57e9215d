"""Write discipline, a slow reader's bounded buffering, and rx flow control."""

from __future__ import annotations

import socket
import time

from support.servicing import pump, settle, stepper
from wsclient import BINARY, TEXT, handshake, text, wait_frame

from lwsbridge.context import POLLIN, Protocol, Reason, WriteKind
from lwsbridge.core.errors import LocalProtocolError

MSG = 64 * 1024


def test_write_outside_writeable_raises(make_ctx, client) -> None:
    errors: list[BaseException] = []
    writeables: list[float] = []

    def cb(conn, reason, user, payload):
        if reason is Reason.RECEIVE:
            try:
                conn.write(b"not now")
            except LocalProtocolError as exc:
                errors.append(exc)
            conn.callback_on_writable()
            conn.callback_on_writable()  # asking twice still means one callback
        elif reason is Reason.SERVER_WRITEABLE:
            writeables.append(time.monotonic())
            conn.write(b"first")
            try:
                conn.write(b"second")
            except LocalProtocolError as exc:
                errors.append(exc)
        return 0

    ctx = make_ctx([Protocol("p", cb)])
    c = client(ctx.port)
    handshake(ctx, c)
    conn = ctx.all_connections()[0]
    # Outside any callback.
    try:
        conn.write(b"x")
    except LocalProtocolError as exc:
        assert "WRITEABLE" in str(exc)
    else:
        raise AssertionError("write() outside a callback must raise")
    c.send(text("go"))
    f = wait_frame(ctx, c)
    assert (f.opcode, f.payload) == (TEXT, b"first")
    settle(stepper(ctx), 0.15)
    assert len(writeables) == 1, "callback_on_writable must give exactly one WRITEABLE"
    assert len(errors) == 2
    assert "WRITEABLE" in str(errors[0])
    assert "one write()" in str(errors[1])
    # Nothing else was sent: not "not now", not "second".
    c.pull()
    assert c.take_frame() is None

    # Asked again from outside a callback (the service thread): one more WRITEABLE.
    conn.callback_on_writable()
    f = wait_frame(ctx, c)
    assert f.payload == b"first"
    settle(stepper(ctx), 0.1)
    assert len(writeables) == 2


def test_slow_reader_bounded_buffer_and_writeable_stops(make_ctx, client) -> None:
    """A peer that does not read: the context buffers at most one message."""
    state = {"writes": 0, "max_out": 0, "entry_out": []}
    payload = bytes(range(256)) * (MSG // 256)

    def cb(conn, reason, user, payload_):
        if reason is Reason.ESTABLISHED:
            conn.callback_on_writable()
        elif reason is Reason.SERVER_WRITEABLE:
            state["entry_out"].append(conn.buffered_bytes)
            conn.write(payload, WriteKind.BINARY)
            state["writes"] += 1
            state["max_out"] = max(state["max_out"], conn.buffered_bytes)
            conn.callback_on_writable()
        return 0

    ctx = make_ctx([Protocol("p", cb)])
    c = client(ctx.port, rcvbuf=65536)
    handshake(ctx, c)
    conn = ctx.all_connections()[0]
    bound = MSG + 16

    def step() -> None:
        ctx.service(10)
        state["max_out"] = max(state["max_out"], conn.buffered_bytes)

    # Keep servicing until WRITEABLE stops coming: the kernel buffers are full.
    last = -1
    stalled_since = time.monotonic()
    deadline = time.monotonic() + 5
    while True:
        step()
        if state["writes"] != last:
            last = state["writes"]
            stalled_since = time.monotonic()
        elif time.monotonic() - stalled_since > 0.3:
            break
        assert time.monotonic() < deadline, "WRITEABLE never stopped for a non-reading peer"
    stalled = state["writes"]
    assert stalled >= 2
    assert conn.buffered_bytes > 0, "the stall is a partial write waiting for POLLOUT"
    assert state["max_out"] <= bound, state["max_out"]
    assert all(n == 0 for n in state["entry_out"]), "WRITEABLE with unsent bytes buffered"
    assert ctx.fds and dict(ctx.fds)[conn.fd] & 0x4  # POLLOUT wanted

    # Still stalled a while later.
    settle(step, 0.2)
    assert state["writes"] == stalled

    # The client reads: WRITEABLE resumes.
    def resumed() -> bool:
        c.pull()
        c.buf.clear()  # (the frames are checked in the test below; here only counts)
        return state["writes"] > stalled + 2

    pump(step, resumed, "WRITEABLE to resume after the client read")
    assert state["max_out"] <= bound, state["max_out"]


def test_slow_reader_stream_is_intact(make_ctx, client) -> None:
    """Stalling and resuming loses or reorders nothing: N whole frames, in order."""
    n_msgs = 40
    count = {"n": 0}

    def cb(conn, reason, user, payload):
        if reason is Reason.ESTABLISHED:
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
            conn.callback_on_writable()
        elif reason is Reason.SERVER_WRITEABLE and count["n"] < n_msgs:
            i = count["n"]
            conn.write(bytes([i]) * MSG, WriteKind.BINARY)
            count["n"] += 1
            conn.callback_on_writable()
        return 0

    ctx = make_ctx([Protocol("p", cb)])
    c = client(ctx.port, rcvbuf=65536)
    handshake(ctx, c)
    settle(stepper(ctx), 0.2)  # fill the buffers without reading
    assert count["n"] < n_msgs, "the kernel should not hold all 2.5 MB"
    frames = []

    def all_in() -> bool:
        while (f := c.take_frame()) is not None:
            frames.append(f)
        return len(frames) == n_msgs

    pump(stepper(ctx), all_in, "every message")
    for i, f in enumerate(frames):
        assert (f.fin, f.opcode, len(f.payload)) == (True, BINARY, MSG)
        assert f.payload == bytes([i]) * MSG


def test_rx_flow_control(make_ctx, client) -> None:
    got: list[bytes] = []
    polls: list[tuple[Reason, int, int, int]] = []

    def cb(conn, reason, user, payload):
        if conn is None:
            if reason in (Reason.SET_MODE_POLL_FD, Reason.CLEAR_MODE_POLL_FD):
                polls.append((reason, payload.fd, payload.events, payload.prev_events))
            return 0
        if reason is Reason.RECEIVE:
            got.append(bytes(payload))
            if payload == b"stop":
                conn.rx_flow_control(False)
        return 0

    ctx = make_ctx([Protocol("p", cb)])
    c = client(ctx.port)
    handshake(ctx, c)
    conn = ctx.all_connections()[0]
    # "stop" and two more in one TCP write: the two are parsed but held.
    c.send(text("stop") + text("a") + text("b"))
    pump(stepper(ctx), lambda: got, "stop")
    settle(stepper(ctx), 0.1)
    assert got == [b"stop"]
    assert (Reason.CLEAR_MODE_POLL_FD, conn.fd, 0, POLLIN) in polls
    assert dict(ctx.fds)[conn.fd] & POLLIN == 0
    # More data while stopped stays in the kernel.
    c.send(text("c") + text("d"))
    settle(stepper(ctx), 0.15)
    assert got == [b"stop"]
    assert not [p for p in polls if p[0] is Reason.SET_MODE_POLL_FD]

    conn.rx_flow_control(True)
    pump(stepper(ctx), lambda: len(got) >= 5, "held messages after resuming")
    settle(stepper(ctx), 0.05)
    assert got == [b"stop", b"a", b"b", b"c", b"d"]
    assert (Reason.SET_MODE_POLL_FD, conn.fd, POLLIN, 0) in polls
    assert dict(ctx.fds)[conn.fd] & POLLIN
    # And it keeps receiving.
    c.send(text("e"))
    pump(stepper(ctx), lambda: len(got) == 6, "e")
    assert got[-1] == b"e"


def test_rx_flow_control_with_echo_app(make_ctx, client) -> None:
    """The test-echo app pauses reading at its high-water mark; nothing is lost."""
    from lwsbridge.apps.echo_protocol import EchoSession, echo_callback

    ctx = make_ctx([Protocol("lws-echo", echo_callback, EchoSession)], any_subprotocol=True)
    c = client(ctx.port)
    handshake(ctx, c)
    msgs = [f"m{i}".encode() for i in range(100)]
    c.send(b"".join(text(m) for m in msgs))
    out = []

    def done() -> bool:
        while (f := c.take_frame()) is not None:
            out.append(f.payload)
        return len(out) == len(msgs)

    pump(stepper(ctx), done, "100 echoes")
    assert out == msgs


def test_deferred_writeable_mode_waits_for_pollout(make_ctx, client) -> None:
    """writeable_same_pass=False: WRITEABLE only after the loop reports POLLOUT (lws's way)."""
    order: list[str] = []
    poll_events: list[tuple[Reason, int]] = []

    def cb(conn, reason, user, payload):
        if reason in (Reason.SET_MODE_POLL_FD, Reason.CLEAR_MODE_POLL_FD):
            poll_events.append((reason, payload.events))
        elif reason is Reason.RECEIVE:
            order.append("receive")
            conn.callback_on_writable()
        elif reason is Reason.SERVER_WRITEABLE:
            order.append("writeable")
            conn.write(payload or b"pong", 1)  # a plain int kind, as C code passes
        return 0

    ctx = make_ctx([Protocol("p", cb)], writeable_same_pass=False)
    c = client(ctx.port)
    handshake(ctx, c)
    c.send(text("go"))
    f = wait_frame(ctx, c)
    assert (f.opcode, f.payload) == (BINARY, b"pong")
    assert order == ["receive", "writeable"]
    # The request for WRITEABLE went through the poll set: POLLOUT set, then cleared.
    assert [r for r, _ in poll_events] == [Reason.SET_MODE_POLL_FD, Reason.CLEAR_MODE_POLL_FD]


def test_same_pass_mode_touches_no_poll_state(make_ctx, client) -> None:
    """The default: WRITEABLE in the same pass, no SET/CLEAR_MODE round trip."""
    poll_events: list[Reason] = []

    def cb(conn, reason, user, payload):
        if reason in (Reason.SET_MODE_POLL_FD, Reason.CLEAR_MODE_POLL_FD):
            poll_events.append(reason)
        elif reason is Reason.RECEIVE:
            conn.callback_on_writable()
        elif reason is Reason.SERVER_WRITEABLE:
            conn.write(b"pong", WriteKind.TEXT)
        return 0

    ctx = make_ctx([Protocol("p", cb)])
    c = client(ctx.port)
    handshake(ctx, c)
    for _ in range(5):
        c.send(text("go"))
        f = wait_frame(ctx, c)
        assert (f.opcode, f.payload) == (TEXT, b"pong")
    assert poll_events == []
