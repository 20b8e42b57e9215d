"""HTTP/1.1 heads: the stand-alone parsers, and incremental parsing inside a connection.

Every connection-level parser test runs three ways (``FEED_MODES``): the head whole,
byte by byte, and whole with trailing bytes after it in the same ``receive_data``.
"""

from __future__ import annotations

import pytest
from helpers import FEED_MODES, HEAD_LINES, TRAILING, feed, of_type, take

from lwsbridge.core import (
    Closed,
    HandshakeFailed,
    Headers,
    HTTPBody,
    HTTPRequest,
    LocalProtocolError,
    RemoteProtocolError,
    RequestRejected,
    Role,
    State,
    WSConnection,
)
from lwsbridge.core.buffer import ReceiveBuffer
from lwsbridge.core.http11 import (
    build_head,
    build_response,
    parse_request_head,
    parse_response_head,
)

# --------------------------------------------------------------------------- stand-alone


def test_parse_request_head_basic() -> None:
    method, target, version, headers = parse_request_head(
        b"GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nX-Thing:   padded \t\r\nX-Thing: two\r\n\r\n"
    )
    assert (method, target, version) == ("GET", "/a?b=c", (1, 1))
    assert headers.get("host") == b"example.com"
    assert headers.get(b"HOST") == b"example.com"
    assert headers.get_all("x-thing") == [b"padded", b"two"]
    assert headers.get("X-Thing") == b"padded, two"
    assert next(iter(headers)) == (b"host", b"example.com")
    assert "Host" in headers and "nope" not in headers and 3 not in headers


def test_parse_request_head_bare_lf_and_leading_blank_line() -> None:
    m, t, v, h = parse_request_head(b"\r\nPOST * HTTP/1.0\nA: 1\n\n")
    assert (m, t, v, h.get("a")) == ("POST", "*", (1, 0), b"1")


def test_parse_response_head() -> None:
    version, status, reason, headers = parse_response_head(
        b"HTTP/1.1 404 Not Found Here\r\nContent-Length: 0\r\n\r\n"
    )
    assert (version, status, reason) == ((1, 1), 404, "Not Found Here")
    assert headers.get("content-length") == b"0"
    assert parse_response_head(b"HTTP/1.1 200\r\n\r\n")[1:3] == (200, "")
    assert parse_response_head(b"HTTP/1.1 200 \r\n\r\n")[1:3] == (200, "")


BAD_REQUEST_HEADS = {
    "double space": b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
    "missing target": b"GET HTTP/1.1\r\nHost: a\r\n\r\n",
    "extra token": b"GET / HTTP/1.1 x\r\nHost: a\r\n\r\n",
    "bad method char": b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
    "lowercase http": b"GET / http/1.1\r\nHost: a\r\n\r\n",
    "control in target": b"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n  folded\r\n\r\n",
    "obs-fold tab": b"GET / HTTP/1.1\r\nHost: a\r\n\tfolded\r\n\r\n",
    "space before colon": b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
    "no colon": b"GET / HTTP/1.1\r\nHost a\r\n\r\n",
    "empty name": b"GET / HTTP/1.1\r\n: a\r\n\r\n",
    "NUL in value": b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n",
    "DEL in value": b"GET / HTTP/1.1\r\nHost: a\x7fb\r\n\r\n",
    "bare CR in value": b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
    "ctl in value": b"GET / HTTP/1.1\r\nHost: a\x1bb\r\n\r\n",
    "non-token name": b"GET / HTTP/1.1\r\nHo\xffst: a\r\n\r\n",
    "empty": b"\r\n\r\n",
}


@pytest.mark.parametrize("head", BAD_REQUEST_HEADS.values(), ids=BAD_REQUEST_HEADS.keys())
def test_parse_request_head_rejects(head: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_request_head(head)
    assert info.value.status == 400
    assert info.value.reason


def test_parse_request_head_http2_is_505() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_request_head(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n")
    assert info.value.status == 505


@pytest.mark.parametrize(
    "head",
    [b"HTTP/1.1 10 OK\r\n\r\n", b"HTTX/1.1 101 OK\r\n\r\n", b"HTTP/1.1 101 a\x00b\r\n\r\n", b""],
)
def test_parse_response_head_rejects(head: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_response_head(head)


def test_obs_text_allowed_in_values() -> None:
    _, _, _, h = parse_request_head(b"GET / HTTP/1.1\r\nX: caf\xe9\tok\r\n\r\n")
    assert h.get("x") == b"caf\xe9\tok"


def test_build_head_and_response() -> None:
    assert build_head("HTTP/1.1 200 OK", [("A", "b"), (b"C", b"d")]) == (
        b"HTTP/1.1 200 OK\r\nA: b\r\nC: d\r\n\r\n"
    )
    resp = build_response(404, [("X", "y")], b"nope")
    assert resp == b"HTTP/1.1 404 Not Found\r\nX: y\r\nContent-Length: 4\r\n\r\nnope"
    assert build_response(599, reason="Odd") == b"HTTP/1.1 599 Odd\r\n\r\n"


@pytest.mark.parametrize(
    "field", [("X", "a\r\nInjected: 1"), ("X\n", "a"), ("X:Y", "a"), ("X", "a\rb")]
)
def test_build_head_refuses_injection(field: tuple[str, str]) -> None:
    with pytest.raises(ValueError):
        build_head("HTTP/1.1 200 OK", [field])


def test_headers_get_list_and_equality() -> None:
    h = Headers([(b"Connection", b"keep-alive, Upgrade"), (b"connection", b" ,x,")])
    assert h.get_list("connection") == [b"keep-alive", b"Upgrade", b"x"]
    assert h == Headers([(b"connection", b"keep-alive, Upgrade"), (b"CONNECTION", b" ,x,")])
    assert hash(h) == hash(Headers(list(h)))
    assert h.get("missing", b"dflt") == b"dflt"
    assert len(h) == 2 and "Headers(" in repr(h)


def test_headers_fields_is_the_lowered_fields_read_only() -> None:
    h = Headers([(b"Upgrade", b"websocket"), (b"HOST", b"a")])
    assert h.fields == ((b"upgrade", b"websocket"), (b"host", b"a")) == tuple(h)
    with pytest.raises(AttributeError):
        h.fields = ()  # type: ignore[misc]


# --------------------------------------------------------------------------- server role

GET = b"GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n"


def server() -> WSConnection:
    return WSConnection(Role.SERVER)


@pytest.mark.parametrize("mode", FEED_MODES)
def test_server_plain_request(mode: str) -> None:
    buf = ReceiveBuffer()  # ours, to see what waits unparsed
    conn = WSConnection(Role.SERVER, receive_buffer=buf)
    feed(conn, GET, mode)
    events = conn.events()
    assert len(events) == 1
    req = events[0]
    assert isinstance(req, HTTPRequest)
    assert (req.method, req.target, req.keep_alive, req.content_length) == (
        "GET",
        "/index.html?q=1",
        True,
        0,
    )
    assert req.headers.get("host") == b"example.com"
    assert conn.state is State.HTTP_RESPONDING
    assert take(conn).chunks == []
    # trailing bytes are not part of the head: they wait for the next request
    assert bytes(buf.data) == (TRAILING if mode == "trailing" else b"")
    conn.send_http_response(200, [("Content-Type", "text/plain")], b"hi")
    out = take(conn)
    assert out.data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Length: 2\r\n" in out.data and out.data.endswith(b"\r\n\r\nhi")
    assert not out.eof
    assert conn.state is State.HTTP_HEAD


@pytest.mark.parametrize("mode", ["whole", "bytewise"])
def test_two_pipelined_gets_each_get_a_response(mode: str) -> None:
    conn = server()
    r1 = b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n"
    r2 = b"GET /two HTTP/1.1\r\nHost: a\r\n\r\n"
    feed(conn, r1 + r2, mode)
    (e1,) = conn.events()
    assert isinstance(e1, HTTPRequest) and e1.target == "/one"
    conn.send_http_response(200, body=b"1")
    assert take(conn).data.endswith(b"\r\n\r\n1")
    (e2,) = conn.events()
    assert isinstance(e2, HTTPRequest) and e2.target == "/two"
    conn.send_http_response(200, body=b"2")
    out = take(conn)
    assert out.data.endswith(b"\r\n\r\n2") and not out.eof
    assert conn.state is State.HTTP_HEAD
    assert conn.events() == []


@pytest.mark.parametrize("mode", FEED_MODES)
def test_connection_close_request_closes_after_response(mode: str) -> None:
    conn = server()
    feed(conn, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, Close\r\n\r\n", mode)
    (req,) = conn.events()
    assert isinstance(req, HTTPRequest) and not req.keep_alive
    conn.send_http_response(404)
    out = take(conn)
    assert b"Connection: close\r\n" in out.data and b"Content-Length: 0\r\n" in out.data
    assert out.ends_with_eof
    assert conn.state is State.CLOSED
    assert conn.events() == [Closed(1000, "HTTP response complete", True)]


@pytest.mark.parametrize(
    ("version", "conn_header", "keep"),
    [("1.0", None, False), ("1.0", "keep-alive", True), ("1.1", None, True)],
)
def test_keep_alive_rules(version: str, conn_header: str | None, keep: bool) -> None:
    conn = server()
    head = f"GET / HTTP/{version}\r\nHost: a\r\n"
    if conn_header:
        head += f"Connection: {conn_header}\r\n"
    conn.receive_data((head + "\r\n").encode())
    (req,) = conn.events()
    assert isinstance(req, HTTPRequest) and req.keep_alive is keep


@pytest.mark.parametrize("mode", FEED_MODES)
def test_request_body(mode: str) -> None:
    buf = ReceiveBuffer()  # ours, to see what waits unparsed
    conn = WSConnection(Role.SERVER, receive_buffer=buf)
    feed(conn, b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", mode)
    events = conn.events()
    req = events[0]
    assert isinstance(req, HTTPRequest) and req.content_length == 5
    bodies = of_type(events, HTTPBody)
    assert b"".join(b.data for b in bodies) == b"hello"  # type: ignore[attr-defined]
    assert [b.final for b in bodies] == [False] * (len(bodies) - 1) + [True]  # type: ignore[attr-defined]
    assert bytes(buf.data) == (TRAILING if mode == "trailing" else b"")
    conn.send_http_response(201, body=b"")
    assert conn.state is State.HTTP_HEAD


def test_streamed_response_body() -> None:
    conn = server()
    conn.receive_data(GET)
    conn.events()
    with pytest.raises(LocalProtocolError):
        conn.send_http_body(b"x")
    conn.send_http_response(200, [("Content-Length", "6")], b"ab", end=False)
    with pytest.raises(LocalProtocolError):
        conn.send_http_response(200)
    conn.send_http_body(b"cd")
    conn.send_http_body(b"ef", end=True)
    out = take(conn)
    assert out.data.endswith(b"\r\n\r\nabcdef") and out.data.count(b"Content-Length") == 1
    assert conn.state is State.HTTP_HEAD
    with pytest.raises(LocalProtocolError):
        conn.send_http_response(200)


def test_send_http_response_without_request_raises() -> None:
    conn = server()
    with pytest.raises(LocalProtocolError):
        conn.send_http_response(200)


def rejected(conn: WSConnection, status: int) -> bytes:
    out = take(conn)
    assert out.ends_with_eof
    assert out.data.startswith(f"HTTP/1.1 {status} ".encode())
    assert b"Connection: close" in out.data
    events = conn.events()
    assert isinstance(events[0], RequestRejected) and events[0].status == status
    assert isinstance(events[-1], Closed) and len(of_type(events, Closed)) == 1
    assert conn.state is State.CLOSED
    body = out.data.split(b"\r\n\r\n", 1)[1]
    assert body.strip(), "a reject must say why"
    assert body.decode().strip() == events[0].reason  # type: ignore[attr-defined]
    return body


@pytest.mark.parametrize("mode", FEED_MODES)
@pytest.mark.parametrize("head", BAD_REQUEST_HEADS.values(), ids=BAD_REQUEST_HEADS.keys())
def test_malformed_head_gets_400_with_reason(mode: str, head: bytes) -> None:
    conn = server()
    feed(conn, head, mode)
    rejected(conn, 400)
    # anything after is ignored
    conn.receive_data(GET)
    assert conn.events() == [] and take(conn).chunks == []


@pytest.mark.parametrize("mode", FEED_MODES)
def test_http2_request_gets_505(mode: str) -> None:
    conn = server()
    feed(conn, b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", mode)
    rejected(conn, 505)


@pytest.mark.parametrize("mode", FEED_MODES)
@pytest.mark.parametrize("limit", [None, 200])
def test_oversized_head_gets_431(mode: str, limit: int | None) -> None:
    conn = server() if limit is None else WSConnection(Role.SERVER, max_head_size=limit)
    size = limit or 8192
    head = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"x" * size + b"\r\n\r\n"
    feed(conn, head, mode)
    rejected(conn, 431)


@pytest.mark.parametrize("mode", FEED_MODES)
def test_head_just_under_limit_is_fine(mode: str) -> None:
    head = b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"x" * 100 + b"\r\n\r\n"
    conn = WSConnection(Role.SERVER, max_head_size=len(head))
    feed(conn, head, mode)
    assert isinstance(conn.events()[0], HTTPRequest)


def test_incomplete_oversized_head_rejected_early() -> None:
    conn = WSConnection(Role.SERVER, max_head_size=100)
    conn.receive_data(b"GET / HTTP/1.1\r\nX: " + b"y" * 200)  # no end of head yet
    rejected(conn, 431)


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    ],
)
def test_bad_bodies_rejected(head: bytes, status: int) -> None:
    conn = server()
    conn.receive_data(head)
    rejected(conn, status)


# RFC 9112 §6.1/§6.3: ambiguous or unknowable body framing is a 400 and a closed
# connection (request smuggling), not a 501 "not implemented".
SMUGGLING = [
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: chunked\r\ncontent-length: 0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
    b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
]


@pytest.mark.parametrize("mode", FEED_MODES)
@pytest.mark.parametrize("head", SMUGGLING)
def test_ambiguous_body_framing_is_400_and_closes(head: bytes, mode: str) -> None:
    conn = server()
    # What a front proxy that believed the other header would forward as a second request.
    smuggled = b"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n"
    feed(conn, head + smuggled, mode)
    body = rejected(conn, 400)
    assert b"RFC 9112" in body
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert conn.events() == [] and take(conn).chunks == []  # nothing after it is read


def test_upgrade_request_with_both_lengths_is_400() -> None:
    conn = server()
    conn.receive_data(
        b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    body = rejected(conn, 400)
    assert b"Content-Length and Transfer-Encoding" in body


def test_eof_while_waiting_for_head() -> None:
    conn = server()
    conn.receive_data(b"GET / HT")
    conn.receive_eof()
    assert conn.events() == [Closed(1006, "connection closed without a close frame", False)]
    assert conn.closed


# --------------------------------------------------------------------------- client role


def client() -> WSConnection:
    conn = WSConnection(Role.CLIENT)
    conn.initiate("example.com", "/ws")
    conn.data_to_send()
    return conn


@pytest.mark.parametrize("mode", FEED_MODES)
def test_client_non_101_response(mode: str) -> None:
    conn = client()
    feed(conn, b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\n", mode)
    events = conn.events()
    assert isinstance(events[0], HandshakeFailed)
    assert events[0].status == 404 and events[0].headers.get("content-length") == b"3"
    assert isinstance(events[1], Closed) and len(events) == 2
    assert take(conn).chunks == [b""]
    assert conn.state is State.CLOSED


@pytest.mark.parametrize("mode", FEED_MODES)
@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 1011 Odd\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade : websocket\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n folded\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
    ],
)
def test_client_malformed_response(mode: str, head: bytes) -> None:
    conn = client()
    feed(conn, head, mode)
    events = conn.events()
    assert isinstance(events[0], HandshakeFailed) and events[0].status is None
    assert events[0].reason
    assert isinstance(events[-1], Closed) and not events[-1].clean
    assert take(conn).chunks == [b""]


@pytest.mark.parametrize("mode", FEED_MODES)
def test_client_oversized_response_head(mode: str) -> None:
    conn = WSConnection(Role.CLIENT, max_head_size=300)
    conn.initiate("example.com")
    conn.data_to_send()
    feed(conn, b"HTTP/1.1 101 Switching Protocols\r\nX: " + b"z" * 400 + b"\r\n\r\n", mode)
    events = conn.events()
    assert isinstance(events[0], HandshakeFailed)
    assert "larger than 300" in events[0].reason
    assert take(conn).chunks == [b""]


# ------------------------------------------------------- fast path == line-by-line path

_LINE_PIECES = HEAD_LINES
_ENDS = [b"\r\n", b"\n", b"\r\r\n"]


def _parse_or_error(head: bytes) -> object:
    try:
        return parse_request_head(head)
    except RemoteProtocolError as exc:
        return (exc.status, exc.reason)


@pytest.mark.parametrize("seed", range(40))
def test_fast_head_path_agrees_with_line_path(seed: int) -> None:
    # A leading empty line always takes the line-by-line path (RFC 9112 §2.2 lets it be
    # ignored), so it is the oracle for the one-regex path: same result, same error.
    import random

    rng = random.Random(seed)
    for _ in range(50):
        lines = [rng.choice(_LINE_PIECES[:4])]
        lines += [rng.choice(_LINE_PIECES) for _ in range(rng.randrange(0, 6))]
        head = b"".join(line + rng.choice(_ENDS) for line in lines) + rng.choice(_ENDS)
        if rng.random() < 0.2:
            head += rng.choice([b"\r\n", b"x", b""])
        assert _parse_or_error(head) == _parse_or_error(b"\r\n" + head), head
