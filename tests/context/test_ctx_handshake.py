"""Bad input, header access windows, FILTER_PROTOCOL_CONNECTION, subprotocol choice."""

from __future__ import annotations

import logging

import pytest
from support.servicing import pump, settle, stepper
from wsclient import CLOSE, HOST, TEXT, Echo, encode_frame, handshake, text, wait_eof, wait_frame

from lwsbridge.context import Protocol, Reason
from lwsbridge.core.errors import LocalProtocolError

NOTICE = 25


def notices(caplog) -> list[logging.LogRecord]:
    """NOTICE records about connections (not the context's start-up line)."""
    return [
        r
        for r in caplog.records
        if r.name == "lwsbridge"
        and r.levelno == NOTICE
        and not r.getMessage().startswith("connection limit")
    ]


@pytest.mark.parametrize(
    ("head", "needle"),
    [
        # No Sec-WebSocket-Key.
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n",
            b"key",
        ),
        # Not HTTP at all.
        (b"\x16\x03\x01\x00\xa5garbage\r\n\r\n", b""),
        # Both body lengths (RFC 9112 §6.1, request smuggling): 400, not 501, and the
        # request hidden behind it is never read.
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n",
            b"Content-Length and Transfer-Encoding",
        ),
    ],
)
def test_malformed_handshake_400(make_ctx, client, caplog, head, needle) -> None:
    caplog.set_level(logging.DEBUG, logger="lwsbridge")
    echo = Echo()
    ctx = make_ctx([Protocol("echo", echo.callback)])
    good = client(ctx.port)
    handshake(ctx, good)
    bad = client(ctx.port)
    bad.send(head)
    resp = pump(stepper(ctx), bad.take_response, "the 400")
    assert resp.status == 400
    assert resp.headers.get("connection") == "close"
    assert resp.body.strip(), "the 400 says why"
    assert needle.lower() in resp.body.lower()
    wait_eof(ctx, bad, "the bad socket to close")
    assert bytes(bad.buf) == b"", "one response, then the close: nothing after it is read"
    # The good connection keeps working.
    good.send(text("fine"))
    assert wait_frame(ctx, good).payload == b"fine"
    settle(stepper(ctx), 0.05)
    assert len(notices(caplog)) == 1, [r.getMessage() for r in notices(caplog)]
    assert "400" in notices(caplog)[0].getMessage()
    assert echo.count(Reason.ESTABLISHED) == 1
    assert echo.count(Reason.CLOSED) == 0


def test_unmasked_frame_gets_1002(make_ctx, client, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="lwsbridge")
    echo = Echo()
    ctx = make_ctx([Protocol("echo", echo.callback)])
    good, bad = client(ctx.port), client(ctx.port)
    handshake(ctx, good)
    handshake(ctx, bad)
    bad.send(encode_frame(TEXT, b"no mask", mask=False))
    f = wait_frame(ctx, bad, "the close frame")
    assert (f.opcode, f.close_code) == (CLOSE, 1002)
    wait_eof(ctx, bad)
    assert echo.received == [], "the unmasked payload was not delivered"
    good.send(text("fine"))
    assert wait_frame(ctx, good).payload == b"fine"
    settle(stepper(ctx), 0.05)
    ns = notices(caplog)
    assert len(ns) == 1, [r.getMessage() for r in ns]
    assert "1002" in ns[0].getMessage()
    assert echo.count(Reason.CLOSED) == 1


def test_headers_window(make_ctx, client) -> None:
    seen: dict[str, object] = {}

    def cb(conn, reason, user, payload):
        if reason is Reason.FILTER_PROTOCOL_CONNECTION:
            seen["filter"] = conn.header("host")
            seen["filter_target"] = payload
            seen["missing"] = conn.header("x-nope")
        elif reason is Reason.ESTABLISHED:
            seen["established"] = conn.header("HOST")
            seen["custom"] = conn.header("x-custom")
        elif reason is Reason.RECEIVE:
            try:
                conn.header("host")
            except LocalProtocolError as exc:
                seen["error"] = exc
        return 0

    ctx = make_ctx([Protocol("p", cb)])
    c = client(ctx.port)
    handshake(ctx, c, path="/chat?room=1", extra=(("X-Custom", "yes"),))
    host = f"{HOST}:{ctx.port}"
    assert seen["filter"] == host and seen["established"] == host
    assert seen["filter_target"] == "/chat?room=1"
    assert seen["missing"] is None and seen["custom"] == "yes"
    conn = ctx.all_connections()[0]
    # After ESTABLISHED returned, from outside a callback too.
    with pytest.raises(LocalProtocolError, match="FILTER_PROTOCOL_CONNECTION"):
        conn.header("host")
    c.send(text("x"))
    pump(stepper(ctx), lambda: "error" in seen, "RECEIVE")
    assert "FILTER_PROTOCOL_CONNECTION" in str(seen["error"])


def test_filter_protocol_connection_refuses_403(make_ctx, client) -> None:
    calls: list[Reason] = []

    def cb(conn, reason, user, payload):
        if conn is not None:
            calls.append(reason)
        if reason is Reason.FILTER_PROTOCOL_CONNECTION:
            return 1 if conn.header("x-let-me-in") != "please" else 0
        return 0

    ctx = make_ctx([Protocol("p", cb)])
    c = client(ctx.port)
    c.send_upgrade()
    resp = pump(stepper(ctx), c.take_response, "the 403")
    assert resp.status == 403
    wait_eof(ctx, c)
    assert Reason.ESTABLISHED not in calls and Reason.CLOSED not in calls
    c2 = client(ctx.port)
    handshake(ctx, c2, extra=(("X-Let-Me-In", "please"),))
    assert Reason.ESTABLISHED in calls


def test_subprotocol_first_supported_from_clients_list(make_ctx, client) -> None:
    http, a, b = Echo(), Echo(), Echo()
    ctx = make_ctx(
        [Protocol("http", http.callback), Protocol("a", a.callback), Protocol("b", b.callback)]
    )
    c = client(ctx.port)
    resp = handshake(ctx, c, protocols=("x", "b", "a"))
    assert resp.headers["sec-websocket-protocol"] == "b"
    assert b.count(Reason.ESTABLISHED) == 1 and a.count(Reason.ESTABLISHED) == 0
    conn = b.conns()[0]
    assert conn.protocol.name == "b"
    c.send(text("to b"))
    assert wait_frame(ctx, c).payload == b"to b"
    assert b.received == [b"to b"] and a.received == []

    c2 = client(ctx.port)
    resp = handshake(ctx, c2, protocols=("a", "b"))
    assert resp.headers["sec-websocket-protocol"] == "a"
    assert a.count(Reason.ESTABLISHED) == 1


def test_unknown_subprotocols_refused_400(make_ctx, client, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="lwsbridge")
    http, a = Echo(), Echo()
    ctx = make_ctx([Protocol("http", http.callback), Protocol("a", a.callback)])
    c = client(ctx.port)
    c.send_upgrade(protocols=("nope", "nada"))
    resp = pump(stepper(ctx), c.take_response, "the 400")
    assert resp.status == 400
    assert b"nope" in resp.body
    wait_eof(ctx, c)
    assert http.count(Reason.ESTABLISHED) == 0 and a.count(Reason.ESTABLISHED) == 0
    # No subprotocol at all: protocol 0, no Sec-WebSocket-Protocol header.
    c2 = client(ctx.port)
    resp = handshake(ctx, c2)
    assert "sec-websocket-protocol" not in resp.headers
    assert http.count(Reason.ESTABLISHED) == 1


def test_data_in_same_segment_as_handshake(make_ctx, client) -> None:
    """Frames sent right behind the request are delivered after ESTABLISHED."""
    order: list[object] = []

    def cb(conn, reason, user, payload):
        if reason in (Reason.ESTABLISHED, Reason.RECEIVE):
            order.append((reason, payload))
        return 0

    ctx = make_ctx([Protocol("p", cb)])
    c = client(ctx.port)
    import base64
    import os

    key = base64.b64encode(os.urandom(16)).decode()
    c.send(
        (
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        + text("early")
    )
    pump(stepper(ctx), lambda: len(order) == 2, "ESTABLISHED and RECEIVE")
    assert order == [(Reason.ESTABLISHED, None), (Reason.RECEIVE, b"early")]
