"""ServerExchange on its own: request heads and bodies from a buffer, response heads out.

Fed whole, byte by byte, and with trailing bytes; the exchange must consume exactly the
head (and the declared body) and leave the rest for the next request.
"""

from __future__ import annotations

import pytest
from helpers import RFC_KEY, upgrade_request

from lwsbridge.core import (
    HTTPBody,
    HTTPRequest,
    LocalProtocolError,
    RemoteProtocolError,
    UpgradeRequest,
)
from lwsbridge.core.buffer import ReceiveBuffer
from lwsbridge.core.http_server import ServerExchange

GET = b"GET /a?b HTTP/1.1\r\nHost: h\r\n\r\n"
POST = b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n"
NEXT = b"GET /next HTTP/1.1\r\n"


def read_head(
    ex: ServerExchange, data: bytes, bytewise: bool, limit: int = 8192
) -> tuple[HTTPRequest | UpgradeRequest | None, ReceiveBuffer]:
    buf = ReceiveBuffer()
    result = None
    pieces = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
    for piece in pieces:
        buf.append(piece)
        if result is None:
            result = ex.read_head(buf, limit)
    return result, buf


@pytest.mark.parametrize("bytewise", [False, True])
def test_plain_request_head_then_trailing_bytes_wait(bytewise: bool) -> None:
    ex = ServerExchange()
    req, buf = read_head(ex, GET + NEXT, bytewise)
    assert isinstance(req, HTTPRequest)
    assert (req.method, req.target, req.keep_alive, req.content_length) == ("GET", "/a?b", True, 0)
    assert bytes(buf.data) == NEXT
    assert ex.body_remaining == 0


def test_incomplete_head_is_none_and_nothing_is_consumed() -> None:
    ex = ServerExchange()
    buf = ReceiveBuffer()
    buf.append(GET[:-2])
    assert ex.read_head(buf, 8192) is None
    assert bytes(buf.data) == GET[:-2]


@pytest.mark.parametrize("bytewise", [False, True])
def test_upgrade_request(bytewise: bool) -> None:
    ex = ServerExchange()
    req, buf = read_head(ex, upgrade_request(), bytewise)
    assert isinstance(req, UpgradeRequest)
    assert req.key == RFC_KEY and len(buf) == 0


@pytest.mark.parametrize("bytewise", [False, True])
def test_body_pieces_then_the_next_request(bytewise: bool) -> None:
    ex = ServerExchange()
    req, buf = read_head(ex, POST, bytewise=False)
    assert isinstance(req, HTTPRequest) and req.content_length == 5
    bodies: list[HTTPBody] = []
    rest = b"hello" + NEXT
    for piece in [rest[i : i + 1] for i in range(len(rest))] if bytewise else [rest]:
        buf.append(piece)
        body = ex.read_body(buf)
        if body is not None:
            bodies.append(body)
    assert b"".join(b.data for b in bodies) == b"hello"
    assert [b.final for b in bodies][-1] is True and not any(b.final for b in bodies[:-1])
    assert ex.body_remaining == 0 and bytes(buf.data) == NEXT
    assert ex.read_body(buf) is None


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"\x16\x03\x01", 400),  # TLS on a plain port: refused at the first byte
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 100 + b"\r\n\r\n", 431),
    ],
)
def test_bad_requests_carry_their_status(head: bytes, status: int) -> None:
    ex = ServerExchange()
    buf = ReceiveBuffer()
    buf.append(head)
    with pytest.raises(RemoteProtocolError) as info:
        ex.read_head(buf, 64)
    assert info.value.status == status


@pytest.mark.parametrize(
    ("request_head", "keep"),
    [
        (GET, True),
        (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", False),
        (b"GET / HTTP/1.0\r\n\r\n", False),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", True),
    ],
)
def test_response_head_and_keep_alive(request_head: bytes, keep: bool) -> None:
    ex = ServerExchange()
    read_head(ex, request_head, bytewise=False)
    head = ex.response_head(200, [("X-A", "1")], b"hi", True, None)
    assert head.startswith(b"HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 2\r\n")
    assert (b"Connection: close\r\n" not in head) is keep
    assert head.endswith(b"\r\n\r\n")
    assert ex.responding
    with pytest.raises(LocalProtocolError):
        ex.response_head(200, [], b"", True, None)  # one response per request
    assert ex.end_response() is keep
    assert not ex.responding


def test_no_keep_alive_while_the_request_body_is_unread() -> None:
    ex = ServerExchange()
    read_head(ex, POST, bytewise=False)
    ex.response_head(413, [], b"", True, None)
    assert ex.end_response() is False


def test_response_head_refuses_header_injection() -> None:
    ex = ServerExchange()
    read_head(ex, GET, bytewise=False)
    with pytest.raises(LocalProtocolError):
        ex.response_head(200, [("X", "a\r\nSet-Cookie: b")], b"", True, None)
    assert not ex.responding  # nothing went out: the caller may answer again
    assert ex.response_head(200, [], b"", True, "Fine").startswith(b"HTTP/1.1 200 Fine\r\n")
