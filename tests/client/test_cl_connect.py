"""client_connect: returns at once, usable after CLIENT_ESTABLISHED, and every way it can
fail before that gives exactly one CLIENT_CONNECTION_ERROR with a readable reason."""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Any

import pytest
from clientutil import (
    RawServer,
    Recorder,
    assert_only_connection_error,
    closed_port,
    raw_server,
    upgrade_response,
)
from support.servicing import pump, settle, stepper

from lwsbridge.context import ClientConnectInfo, Protocol, Reason
from lwsbridge.core.errors import LocalProtocolError

# ---------------------------------------------------------------------------- helpers


def _client(make_ctx: Any, rec: Recorder, **kw: Any):
    return make_ctx([Protocol("test-proto", rec.callback)], **kw)


def _fail_once(ctx: Any, rec: Recorder, conn: Any, what: str, timeout: float = 5.0) -> str:
    """Service until ``conn`` ends, then a little longer; it must have failed exactly once."""
    pump(stepper(ctx), lambda: rec.ended(conn), what, timeout)
    settle(stepper(ctx), 0.2)  # nothing more may arrive for it
    return assert_only_connection_error(rec, conn)


def _hold(s: socket.socket) -> None:
    """Keep the connection until the client closes it (bounded by the socket timeout)."""
    with contextlib.suppress(OSError):
        while s.recv(4096):
            pass


def _answer(response: Any) -> Any:
    """A raw-server handler: read the request, send ``response(headers)``, hold."""

    def handler(s: socket.socket, srv: RawServer) -> None:
        _line, headers = srv.read_request(s)
        s.sendall(response(headers))
        _hold(s)

    return handler


# ---------------------------------------------------------------------------- requirement 1


@pytest.mark.parametrize("address", ["127.0.0.1", "localhost"])
def test_connect_returns_at_once_usable_after_established(
    make_ctx: Any, test_server: Any, address: str
) -> None:
    rec = Recorder()
    ctx = make_ctx([Protocol("dumb-increment-protocol", rec.callback)])
    t0 = time.perf_counter()
    conn = ctx.client_connect(
        ClientConnectInfo(address, test_server.port, protocol="dumb-increment-protocol")
    )
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.05, f"client_connect took {elapsed * 1000:.1f} ms"
    assert conn is not None and conn.protocol.name == "dumb-increment-protocol"
    # Not usable yet: writing is refused, and a writeable request made now brings no
    # CLIENT_WRITEABLE before CLIENT_ESTABLISHED.
    with pytest.raises(LocalProtocolError):
        conn.write(b"too early")
    if address == "127.0.0.1":  # see test_callback_on_writable_while_resolving
        conn.callback_on_writable()
    assert not rec.has(conn, Reason.CLIENT_ESTABLISHED)
    step = stepper(ctx, test_server, ms=2)
    pump(step, lambda: rec.has(conn, Reason.CLIENT_ESTABLISHED), "CLIENT_ESTABLISHED")
    reasons = rec.reasons(conn)
    before = reasons[: reasons.index(Reason.CLIENT_ESTABLISHED)]
    assert set(before) <= {
        Reason.CLIENT_APPEND_HANDSHAKE_HEADER,
        Reason.CLIENT_FILTER_PRE_ESTABLISH,
    }, reasons
    assert rec.first(conn, Reason.CLIENT_ESTABLISHED) == "dumb-increment-protocol"
    pump(step, lambda: len(rec.received(conn)) >= 2, "two numbers")
    assert rec.count(conn, Reason.CLIENT_CONNECTION_ERROR) == 0


def test_callback_on_writable_while_resolving(make_ctx: Any, test_server: Any) -> None:
    rec = Recorder()
    ctx = make_ctx([Protocol("dumb-increment-protocol", rec.callback)])
    conn = ctx.client_connect(
        ClientConnectInfo("localhost", test_server.port, protocol="dumb-increment-protocol")
    )
    conn.callback_on_writable()  # too early: must be ignored (or kept), never crash
    step = stepper(ctx, test_server, ms=2)
    pump(step, lambda: rec.has(conn, Reason.CLIENT_ESTABLISHED), "CLIENT_ESTABLISHED", 2.0)
    reasons = rec.reasons(conn)
    assert reasons.index(Reason.CLIENT_ESTABLISHED) < (
        reasons.index(Reason.CLIENT_WRITEABLE) if Reason.CLIENT_WRITEABLE in reasons else 1 << 30
    )


def test_connect_does_not_block_on_many_names(make_ctx: Any) -> None:
    """Ten name lookups in a row still return at once (resolution is off-thread)."""
    rec = Recorder()
    ctx = _client(make_ctx, rec)
    port = closed_port()
    t0 = time.perf_counter()
    conns = [ctx.client_connect(ClientConnectInfo("localhost", port)) for _ in range(10)]
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.05 * 10, f"10 client_connect took {elapsed * 1000:.1f} ms"
    pump(stepper(ctx), lambda: all(rec.ended(c) for c in conns), "10 refusals")
    for c in conns:
        assert_only_connection_error(rec, c)


# ---------------------------------------------------------------------------- requirement 3


def test_refused(make_ctx: Any) -> None:
    rec = Recorder()
    ctx = _client(make_ctx, rec)
    conn = ctx.client_connect(ClientConnectInfo("127.0.0.1", closed_port()))
    why = _fail_once(ctx, rec, conn, "the refusal")
    assert "refused" in why.lower(), why


def test_silent_listener_times_out_not_before(make_ctx: Any) -> None:
    rec = Recorder()
    ctx = _client(make_ctx, rec)
    with raw_server(None) as srv:  # accepts, reads nothing, answers nothing
        t0 = time.monotonic()
        conn = ctx.client_connect(ClientConnectInfo("127.0.0.1", srv.port, timeout=0.5))
        pump(stepper(ctx), lambda: rec.ended(conn), "the timeout", 3.0)
        elapsed = time.monotonic() - t0
        assert srv.accepted, "the listener never accepted"
        why = _fail_once(ctx, rec, conn, "the timeout")
    assert 0.45 <= elapsed < 2.0, elapsed
    assert "timed out" in why.lower(), why


def test_unaccepted_backlog_times_out(make_ctx: Any) -> None:
    """TCP connects (the kernel's backlog) but nobody accepts: the same timeout."""
    rec = Recorder()
    ctx = _client(make_ctx, rec)
    with raw_server(None, accept=False) as srv:
        t0 = time.monotonic()
        conn = ctx.client_connect(ClientConnectInfo("127.0.0.1", srv.port, timeout=0.5))
        pump(stepper(ctx), lambda: rec.ended(conn), "the timeout", 3.0)
        elapsed = time.monotonic() - t0
        why = _fail_once(ctx, rec, conn, "the timeout")
    assert 0.45 <= elapsed < 2.0, elapsed
    assert "timed out" in why.lower(), why


def _bad_accept(headers: dict[str, str]) -> bytes:
    good = upgrade_response(headers).decode()
    start = good.index("Sec-WebSocket-Accept: ") + len("Sec-WebSocket-Accept: ")
    bad = "AAAAAAAAAAAAAAAAAAAAAAAAAAA="
    return (good[:start] + bad + good[start + len(bad) :]).encode()


BAD_ANSWERS = {
    "wrong-accept": _bad_accept,
    "http-200": lambda h: (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\nhello"
    ),
    "garbage": lambda h: bytes(range(256)) * 4 + b"\r\n\r\n",
    "garbage-huge": lambda h: bytes(range(256)) * 40,
    "not-http": lambda h: b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
    "101-no-upgrade-header": lambda h: (
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n"
    ),
}


@pytest.mark.parametrize("kind", sorted(BAD_ANSWERS))
def test_bad_handshake_answers(make_ctx: Any, kind: str) -> None:
    rec = Recorder()
    ctx = _client(make_ctx, rec)
    with raw_server(_answer(BAD_ANSWERS[kind])) as srv:
        conn = ctx.client_connect(ClientConnectInfo("127.0.0.1", srv.port, timeout=3.0))
        t0 = time.monotonic()
        why = _fail_once(ctx, rec, conn, f"the failure on {kind}")
        # It fails on the answer, not by waiting for the timeout.
        assert time.monotonic() - t0 < 2.0
        assert srv.requests, "the server saw no request"
        assert not srv.errors, srv.errors
    assert "timed out" not in why.lower(), why
    expect = {"wrong-accept": "accept", "http-200": "200", "not-http": "status line"}
    assert expect.get(kind, "").lower() in why.lower(), why


def test_garbage_without_end_of_head(make_ctx: Any) -> None:
    """Garbage with no blank line: the client waits for the head (up to its size
    limit or the timeout); still exactly one CLIENT_CONNECTION_ERROR."""
    rec = Recorder()
    ctx = _client(make_ctx, rec)
    with raw_server(_answer(lambda h: bytes(range(256)) * 4)) as srv:
        conn = ctx.client_connect(ClientConnectInfo("127.0.0.1", srv.port, timeout=0.5))
        _fail_once(ctx, rec, conn, "the failure", 3.0)


def test_101_without_requested_subprotocol(make_ctx: Any) -> None:
    rec = Recorder()
    ctx = make_ctx([Protocol("zero", rec.callback), Protocol("wanted-proto", rec.callback)])
    with raw_server(_answer(lambda h: upgrade_response(h))) as srv:
        conn = ctx.client_connect(
            ClientConnectInfo("127.0.0.1", srv.port, protocol="wanted-proto", timeout=3.0)
        )
        why = _fail_once(ctx, rec, conn, "the subprotocol failure")
        assert srv.requests[0][1].get("sec-websocket-protocol") == "wanted-proto"
    assert "timed out" not in why.lower(), why
    assert "protocol" in why.lower(), why


def test_101_with_other_subprotocol(make_ctx: Any) -> None:
    rec = Recorder()
    ctx = make_ctx([Protocol("zero", rec.callback), Protocol("wanted-proto", rec.callback)])
    with raw_server(_answer(lambda h: upgrade_response(h, protocol="other-proto"))) as srv:
        conn = ctx.client_connect(
            ClientConnectInfo("127.0.0.1", srv.port, protocol="wanted-proto", timeout=3.0)
        )
        why = _fail_once(ctx, rec, conn, "the subprotocol failure")
    assert "timed out" not in why.lower(), why


@pytest.mark.parametrize("sent", [b"", b"HTTP/1.1 101 Switching Pro"])
def test_server_closes_mid_handshake(make_ctx: Any, sent: bytes) -> None:
    def handler(s: socket.socket, srv: RawServer) -> None:
        srv.read_request(s)
        if sent:
            s.sendall(sent)
        s.close()

    rec = Recorder()
    ctx = _client(make_ctx, rec)
    with raw_server(handler) as srv:
        conn = ctx.client_connect(ClientConnectInfo("127.0.0.1", srv.port, timeout=3.0))
        t0 = time.monotonic()
        why = _fail_once(ctx, rec, conn, "the failure")
        assert time.monotonic() - t0 < 2.0
    assert "timed out" not in why.lower(), why


def test_filter_pre_establish_nonzero_aborts(make_ctx: Any, test_server: Any) -> None:
    seen: list[Any] = []

    def refuse(conn: Any, payload: Any) -> int:
        seen.append(payload)
        return 1

    rec = Recorder(hooks={Reason.CLIENT_FILTER_PRE_ESTABLISH: refuse})
    ctx = make_ctx([Protocol("dumb-increment-protocol", rec.callback)])
    conn = ctx.client_connect(
        ClientConnectInfo("127.0.0.1", test_server.port, protocol="dumb-increment-protocol")
    )
    pump(stepper(ctx, test_server, ms=2), lambda: rec.ended(conn), "the abort")
    settle(stepper(ctx, test_server, ms=2), 0.2)
    why = assert_only_connection_error(rec, conn)
    assert rec.count(conn, Reason.CLIENT_FILTER_PRE_ESTABLISH) == 1
    assert "PRE_ESTABLISH" in why, why
    assert len(seen) == 1
    # the server's test-server protocols forget the connection too
    pump(
        stepper(ctx, test_server, ms=2),
        lambda: test_server.connection_count == 0,
        "the server side close",
    )


def test_filter_pre_establish_sees_response_headers(make_ctx: Any) -> None:
    def answer(h: dict[str, str]) -> bytes:
        resp = upgrade_response(h)
        return resp[:-2] + b"X-From-Server: hello\r\n\r\n"

    seen: list[Any] = []

    def pre(conn: Any, payload: Any) -> int:
        seen.append(conn.header("x-from-server"))
        return 0

    rec = Recorder(hooks={Reason.CLIENT_FILTER_PRE_ESTABLISH: pre})
    ctx = _client(make_ctx, rec)
    with raw_server(_answer(answer)) as srv:
        conn = ctx.client_connect(ClientConnectInfo("127.0.0.1", srv.port))
        pump(stepper(ctx), lambda: rec.ended(conn) or rec.has(conn, Reason.CLIENT_ESTABLISHED), "")
    assert rec.has(conn, Reason.CLIENT_ESTABLISHED), rec.reasons(conn)
    assert seen == ["hello"]


def test_append_handshake_header(make_ctx: Any) -> None:
    def add(conn: Any, payload: Any) -> int:
        assert isinstance(payload, list)
        payload.append(("X-Client-Test", "forty-two"))
        return 0

    rec = Recorder(hooks={Reason.CLIENT_APPEND_HANDSHAKE_HEADER: add})
    ctx = _client(make_ctx, rec)
    with raw_server(_answer(lambda h: upgrade_response(h))) as srv:
        conn = ctx.client_connect(
            ClientConnectInfo("127.0.0.1", srv.port, headers=[("X-Given", "in-info")])
        )
        pump(
            stepper(ctx),
            lambda: rec.ended(conn) or rec.has(conn, Reason.CLIENT_ESTABLISHED),
            "CLIENT_ESTABLISHED",
        )
        assert rec.has(conn, Reason.CLIENT_ESTABLISHED), rec.of(conn)
        _line, headers = srv.requests[0]
    assert headers.get("x-client-test") == "forty-two", headers
    assert headers.get("x-given") == "in-info", headers
    assert rec.count(conn, Reason.CLIENT_APPEND_HANDSHAKE_HEADER) == 1
    # the payload already held the info's headers when the callback saw it
    assert rec.first(conn, Reason.CLIENT_APPEND_HANDSHAKE_HEADER)[0] == ("X-Given", "in-info")


def test_append_handshake_header_nonzero_aborts(make_ctx: Any) -> None:
    rec = Recorder(hooks={Reason.CLIENT_APPEND_HANDSHAKE_HEADER: lambda c, p: 1})
    ctx = _client(make_ctx, rec)
    with raw_server(_answer(lambda h: upgrade_response(h))) as srv:
        conn = ctx.client_connect(ClientConnectInfo("127.0.0.1", srv.port))
        _fail_once(ctx, rec, conn, "the abort")


def test_unresolvable_name(make_ctx: Any) -> None:
    rec = Recorder()
    ctx = _client(make_ctx, rec)
    t0 = time.perf_counter()
    conn = ctx.client_connect(ClientConnectInfo("nonexistent.invalid", 80))
    assert time.perf_counter() - t0 < 0.05
    why = _fail_once(ctx, rec, conn, "the resolution failure", timeout=10.0)
    assert "nonexistent.invalid" in why, why


def test_errors_are_independent(make_ctx: Any, test_server: Any) -> None:
    """A failing connection does not disturb a good one in the same context."""
    rec = Recorder()
    ctx = make_ctx([Protocol("dumb-increment-protocol", rec.callback)])
    bad = ctx.client_connect(ClientConnectInfo("127.0.0.1", closed_port()))
    good = ctx.client_connect(
        ClientConnectInfo("127.0.0.1", test_server.port, protocol="dumb-increment-protocol")
    )
    step = stepper(ctx, test_server, ms=2)
    pump(step, lambda: len(rec.received(good)) >= 3 and rec.ended(bad), "numbers and a refusal")
    assert_only_connection_error(rec, bad)
    assert rec.count(good, Reason.CLIENT_CONNECTION_ERROR) == 0


@pytest.mark.parametrize("address", ["127.0.0.1", "localhost"])
def test_writeable_asked_before_established_comes_once_after(
    make_ctx: Any, test_server: Any, address: str
) -> None:
    """A callback_on_writable made right after client_connect is kept: one CLIENT_WRITEABLE
    follows CLIENT_ESTABLISHED, whichever path flushed the upgrade request."""
    rec = Recorder()
    ctx = make_ctx([Protocol("dumb-increment-protocol", rec.callback)])
    conn = ctx.client_connect(
        ClientConnectInfo(address, test_server.port, protocol="dumb-increment-protocol")
    )
    conn.callback_on_writable()
    step = stepper(ctx, test_server, ms=2)
    pump(step, lambda: rec.has(conn, Reason.CLIENT_WRITEABLE), "CLIENT_WRITEABLE")
    reasons = rec.reasons(conn)
    assert reasons.index(Reason.CLIENT_ESTABLISHED) < reasons.index(Reason.CLIENT_WRITEABLE)
    assert reasons.count(Reason.CLIENT_WRITEABLE) == 1
