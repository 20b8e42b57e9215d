"""The RFC 6455 §4 opening handshake, server and client side."""

from __future__ import annotations

import base64

import pytest
from helpers import (
    FEED_MODES,
    RFC_ACCEPT,
    RFC_KEY,
    accept_for,
    build_frame,
    client_key,
    feed,
    of_type,
    response_101,
    take,
    upgrade_request,
)
from hypothesis import given
from hypothesis import strategies as st

from lwsbridge.core import (
    Closed,
    DataReceived,
    Established,
    Extension,
    ExtensionFactory,
    ExtensionOffer,
    HandshakeFailed,
    Headers,
    HTTPRequest,
    LocalProtocolError,
    RemoteProtocolError,
    RequestRejected,
    Role,
    State,
    UpgradeRequest,
    WSConnection,
)
from lwsbridge.core.handshake import (
    accept_key,
    make_key,
    upgrade_lists_websocket,
    validate_upgrade,
)
from lwsbridge.core.http11 import parse_request_head, parse_response_head

CLIENT_TEXT = build_frame(0x1, b"early")  # masked, as a client sends
SERVER_TEXT = build_frame(0x1, b"early", mask=None)


def test_accept_key_rfc_example() -> None:
    assert accept_key(RFC_KEY) == RFC_ACCEPT


def test_make_key_is_base64_of_16_random_bytes() -> None:
    keys = {make_key() for _ in range(20)}
    assert len(keys) == 20
    for key in keys:
        assert len(base64.b64decode(key, validate=True)) == 16


# --------------------------------------------------------------------------- server


@pytest.mark.parametrize("mode", FEED_MODES)
def test_server_upgrade_and_accept(mode: str) -> None:
    conn = WSConnection(Role.SERVER)
    req = upgrade_request(
        extra=["Sec-WebSocket-Protocol: chat, superchat", "Origin: http://example.com"]
    )
    feed(conn, req, mode, trailing=CLIENT_TEXT)
    (ev,) = conn.events()
    assert isinstance(ev, UpgradeRequest)
    assert ev.target == "/chat" and ev.key == RFC_KEY
    assert ev.subprotocols == ("chat", "superchat")
    assert ev.extensions == ()
    assert ev.headers.get("origin") == b"http://example.com"
    assert conn.state is State.UPGRADE_PENDING
    assert take(conn).chunks == []  # nothing until the caller decides
    conn.accept("superchat", extra_headers=[("X-Server", "lws")])
    assert conn.state is State.OPEN and conn.subprotocol == "superchat"
    out = take(conn).data
    version, status, _, headers = parse_response_head(out)
    assert (version, status) == ((1, 1), 101)
    assert headers.get("sec-websocket-accept") == RFC_ACCEPT
    assert headers.get("upgrade").lower() == b"websocket"  # type: ignore[union-attr]
    assert b"upgrade" in headers.get("connection").lower()  # type: ignore[union-attr]
    assert headers.get("sec-websocket-protocol") == b"superchat"
    assert headers.get("x-server") == b"lws"
    events = conn.events()
    assert isinstance(events[0], Established)
    assert events[0].subprotocol == "superchat" and events[0].headers is ev.headers
    if mode == "trailing":
        # Frames pipelined behind the request are parsed once the caller accepts.
        (data,) = of_type(events[1:], DataReceived)
        assert data.data == b"early"  # type: ignore[attr-defined]
    else:
        assert len(events) == 1


def test_accept_without_subprotocol_sends_no_protocol_header() -> None:
    conn = WSConnection(Role.SERVER)
    conn.receive_data(upgrade_request(extra=["Sec-WebSocket-Protocol: chat"]))
    conn.accept()
    _, _, _, headers = parse_response_head(take(conn).data)
    assert "sec-websocket-protocol" not in headers


@pytest.mark.parametrize(
    "extra",
    [
        ["Sec-WebSocket-Protocol: chat"],
        ["Sec-WebSocket-Protocol: superchat, chat"],
        [],
    ],
)
def test_accept_unoffered_subprotocol_raises_and_keeps_state(extra: list[str]) -> None:
    conn = WSConnection(Role.SERVER)
    conn.receive_data(upgrade_request(extra=extra))
    conn.events()
    with pytest.raises(LocalProtocolError, match="not offered"):
        conn.accept("chat2")
    assert conn.state is State.UPGRADE_PENDING
    assert take(conn).chunks == [] and conn.events() == []
    conn.accept()
    assert conn.state is State.OPEN


def test_accept_twice_and_reject_after_accept_raise() -> None:
    conn = WSConnection(Role.SERVER)
    conn.receive_data(upgrade_request())
    conn.accept()
    with pytest.raises(LocalProtocolError, match="accept"):
        conn.accept()
    with pytest.raises(LocalProtocolError, match="reject"):
        conn.reject()
    assert conn.state is State.OPEN


def test_accept_and_reject_without_request_raise() -> None:
    conn = WSConnection(Role.SERVER)
    with pytest.raises(LocalProtocolError):
        conn.accept()
    with pytest.raises(LocalProtocolError):
        conn.reject()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")  # plain HTTP, not an upgrade
    with pytest.raises(LocalProtocolError):
        conn.accept()
    assert conn.state is State.HTTP_RESPONDING


def test_accept_two_extensions_raises_and_keeps_state() -> None:
    conn = WSConnection(Role.SERVER)
    conn.receive_data(upgrade_request())
    with pytest.raises(LocalProtocolError, match="one extension"):
        conn.accept(extensions=[Extension(), Extension()])
    assert conn.state is State.UPGRADE_PENDING and take(conn).chunks == []


def test_accept_header_injection_raises_and_keeps_state() -> None:
    conn = WSConnection(Role.SERVER)
    conn.receive_data(upgrade_request())
    with pytest.raises(LocalProtocolError):
        conn.accept(extra_headers=[("X", "a\r\nSet-Cookie: evil")])
    assert conn.state is State.UPGRADE_PENDING and take(conn).chunks == []
    with pytest.raises(LocalProtocolError):
        conn.reject(403, extra_headers=[("X\r\n", "a")])
    assert conn.state is State.UPGRADE_PENDING and take(conn).chunks == []


def test_reject() -> None:
    conn = WSConnection(Role.SERVER)
    conn.receive_data(upgrade_request() + CLIENT_TEXT)
    conn.events()
    conn.reject(403, "go away", [("X-Why", "policy")])
    out = take(conn)
    assert out.ends_with_eof
    assert out.data.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert b"X-Why: policy\r\n" in out.data and out.data.endswith(b"\r\n\r\ngo away\n")
    assert conn.events() == [Closed(1006, "rejected with HTTP 403", False)]
    assert conn.state is State.CLOSED


def test_extension_offers_exposed() -> None:
    conn = WSConnection(Role.SERVER)
    conn.receive_data(
        upgrade_request(
            extra=[
                "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, x-foo",
                'Sec-WebSocket-Extensions: x-bar; a=1; b="two"',
            ]
        )
    )
    (ev,) = conn.events()
    assert isinstance(ev, UpgradeRequest)
    assert ev.extensions == (
        ExtensionOffer("permessage-deflate", (("client_max_window_bits", None),)),
        ExtensionOffer("x-foo"),
        ExtensionOffer("x-bar", (("a", "1"), ("b", "two"))),
    )


class Echo(Extension):
    name = "x-echo"

    def response(self) -> ExtensionOffer:
        return ExtensionOffer("x-echo", (("level", "1"),))


def test_accept_with_extension_sends_response() -> None:
    conn = WSConnection(Role.SERVER)
    conn.receive_data(upgrade_request(extra=["Sec-WebSocket-Extensions: x-echo"]))
    ext = Echo()
    conn.accept(extensions=[ext])
    _, _, _, headers = parse_response_head(take(conn).data)
    assert headers.get("sec-websocket-extensions") == b"x-echo; level=1"
    (est,) = conn.events()[1:]
    assert isinstance(est, Established) and est.extensions == (ext.response(),)
    assert conn.extension is ext


GOOD_VARIANTS = {
    "upgrade any case": {"replace": {"Upgrade": "WebSocket"}},
    "upgrade list": {"replace": {"Upgrade": "h2c, websocket"}},
    "connection list any case": {"replace": {"Connection": "keep-alive, UPGRADE"}},
    "connection two fields": {
        "replace": {"Connection": "keep-alive"},
        "extra": ["Connection: upgrade"],
    },
    "http/1.2": {"version": "1.2"},
}


@pytest.mark.parametrize("mode", FEED_MODES)
@pytest.mark.parametrize("kw", GOOD_VARIANTS.values(), ids=GOOD_VARIANTS.keys())
def test_upgrade_variants_accepted(mode: str, kw: dict) -> None:  # type: ignore[type-arg]
    conn = WSConnection(Role.SERVER)
    feed(conn, upgrade_request(**kw), mode)
    events = conn.events()
    assert len(events) == 1 and isinstance(events[0], UpgradeRequest)


BAD_UPGRADES = {
    "POST": ({"method": "POST"}, 405),
    "PUT": ({"method": "PUT"}, 405),
    "HTTP/1.0": ({"version": "1.0"}, 400),
    "no host": ({"omit": ["Host"]}, 400),
    "two hosts": ({"extra": ["Host: other.example.com"]}, 400),
    "no connection": ({"omit": ["Connection"]}, 400),
    "connection without upgrade": ({"replace": {"Connection": "keep-alive"}}, 400),
    "connection upgrades": ({"replace": {"Connection": "upgrades"}}, 400),
    "no key": ({"omit": ["Sec-WebSocket-Key"]}, 400),
    "two keys": ({"extra": ["Sec-WebSocket-Key: " + make_key().decode()]}, 400),
    "key not base64": ({"replace": {"Sec-WebSocket-Key": "not base64 at all!!!!!!"}}, 400),
    "key 15 bytes": (
        {"replace": {"Sec-WebSocket-Key": base64.b64encode(b"x" * 15).decode()}},
        400,
    ),
    "key 17 bytes": (
        {"replace": {"Sec-WebSocket-Key": base64.b64encode(b"x" * 17).decode()}},
        400,
    ),
    "key empty": ({"replace": {"Sec-WebSocket-Key": ""}}, 400),
    "version 8": ({"replace": {"Sec-WebSocket-Version": "8"}}, 426),
    "version 14": ({"replace": {"Sec-WebSocket-Version": "14"}}, 426),
    "no version": ({"omit": ["Sec-WebSocket-Version"]}, 426),
    "bad extension header": ({"extra": ["Sec-WebSocket-Extensions: a b"]}, 400),
    "bad extension param": ({"extra": ["Sec-WebSocket-Extensions: deflate; x=a b"]}, 400),
    "bad quoted param": ({"extra": ['Sec-WebSocket-Extensions: deflate; x="a b"']}, 400),
}


@pytest.mark.parametrize("mode", FEED_MODES)
@pytest.mark.parametrize(("kw", "status"), BAD_UPGRADES.values(), ids=BAD_UPGRADES.keys())
def test_bad_upgrades_rejected(mode: str, kw: dict, status: int) -> None:  # type: ignore[type-arg]
    conn = WSConnection(Role.SERVER)
    feed(conn, upgrade_request(**kw), mode, trailing=CLIENT_TEXT)
    out = take(conn)
    assert out.ends_with_eof
    head_end = out.data.index(b"\r\n\r\n") + 4
    _, got, _, headers = parse_response_head(out.data[:head_end])
    assert got == status
    body = out.data[head_end:]
    assert len(body) == int(headers.get("content-length"))  # type: ignore[arg-type]
    events = conn.events()
    assert isinstance(events[0], RequestRejected) and events[0].status == status
    assert body.decode().strip() == events[0].reason
    assert isinstance(events[1], Closed) and len(events) == 2
    if status == 426:
        assert headers.get("sec-websocket-version") == b"13"
        assert b"\r\nSec-WebSocket-Version: 13\r\n" in out.data
    else:
        assert "sec-websocket-version" not in headers
    assert conn.state is State.CLOSED


def test_upgrade_header_other_protocol_is_plain_http() -> None:
    conn = WSConnection(Role.SERVER)
    conn.receive_data(upgrade_request(replace={"Upgrade": "h2c"}))
    (ev,) = conn.events()
    assert isinstance(ev, HTTPRequest)


# --------------------------------------------------------------------------- client


def test_client_request() -> None:
    conn = WSConnection(Role.CLIENT)
    assert conn.state is State.IDLE
    conn.initiate(
        "example.com:8080",
        "/chat?x=1",
        subprotocols=["chat", "superchat"],
        origin="http://example.com",
        extra_headers=[("Authorization", "Bearer t")],
    )
    assert conn.state is State.HTTP_HEAD
    req = take(conn).data
    method, target, version, headers = parse_request_head(req)
    assert (method, target, version) == ("GET", "/chat?x=1", (1, 1))
    assert headers.get_all("host") == [b"example.com:8080"]
    assert headers.get("upgrade") == b"websocket"
    assert headers.get("connection") == b"Upgrade"
    assert headers.get("sec-websocket-version") == b"13"
    assert len(base64.b64decode(headers.get("sec-websocket-key"), validate=True)) == 16  # type: ignore[arg-type]
    assert headers.get("sec-websocket-protocol") == b"chat, superchat"
    assert headers.get("origin") == b"http://example.com"
    assert headers.get("authorization") == b"Bearer t"
    # The server side of this library accepts what the client side sends.
    server = WSConnection(Role.SERVER)
    server.receive_data(req)
    (ev,) = server.events()
    assert isinstance(ev, UpgradeRequest) and ev.subprotocols == ("chat", "superchat")


def test_client_misuse() -> None:
    conn = WSConnection(Role.CLIENT)
    with pytest.raises(LocalProtocolError):
        conn.initiate("h", "no-slash")
    assert conn.state is State.IDLE and take(conn).chunks == []
    with pytest.raises(LocalProtocolError):
        conn.initiate("h", extra_headers=[("X", "a\nb")])
    assert conn.state is State.IDLE and take(conn).chunks == []
    with pytest.raises(LocalProtocolError):
        conn.send_data(b"x")
    with pytest.raises(LocalProtocolError):
        conn.accept()
    conn.initiate("h")
    with pytest.raises(LocalProtocolError, match="initiate"):
        conn.initiate("h")
    server = WSConnection(Role.SERVER)
    with pytest.raises(LocalProtocolError):
        server.initiate("h")


def new_client(subprotocols: tuple[str, ...] = (), **kw: object) -> tuple[WSConnection, bytes]:
    conn = WSConnection(Role.CLIENT, **kw)  # type: ignore[arg-type]
    conn.initiate("example.com", "/", subprotocols=subprotocols)
    return conn, client_key(take(conn).data)


@pytest.mark.parametrize("mode", FEED_MODES)
def test_client_established(mode: str) -> None:
    conn, key = new_client(("chat", "superchat"))
    feed(conn, response_101(key, ["Sec-WebSocket-Protocol: chat"]), mode, trailing=SERVER_TEXT)
    events = conn.events()
    est = events[0]
    assert isinstance(est, Established)
    assert est.subprotocol == "chat" and est.status == 101
    assert est.headers.get("sec-websocket-accept") == accept_for(key)
    assert conn.request_headers is est.headers
    assert conn.state is State.OPEN and conn.subprotocol == "chat"
    if mode == "trailing":
        assert events[1] == DataReceived(b"early", False, True, True, 0, True)
    else:
        assert len(events) == 1
    assert take(conn).chunks == []


def test_client_rfc_example_key() -> None:
    conn = WSConnection(Role.CLIENT)
    # pin the random key to check against the RFC's accept value
    conn.initiate("example.com", key=RFC_KEY)
    assert client_key(take(conn).data) == RFC_KEY
    conn.receive_data(response_101(RFC_KEY, accept=RFC_ACCEPT))
    assert isinstance(conn.events()[0], Established)


BAD_101 = {
    "wrong accept": ((), {"accept": RFC_ACCEPT}),
    "accept of other key": ((), {"accept": accept_for(make_key())}),
    "no protocol picked": (("chat",), {}),
    "unoffered protocol": (("chat",), {"extra": ["Sec-WebSocket-Protocol: other"]}),
    "protocol when none offered": ((), {"extra": ["Sec-WebSocket-Protocol: chat"]}),
    "two protocols": (("a", "b"), {"extra": ["Sec-WebSocket-Protocol: a, b"]}),
    "unoffered extension": ((), {"extra": ["Sec-WebSocket-Extensions: x-foo"]}),
    "two accepts": ((), {"extra": ["Sec-WebSocket-Accept: AAAA"]}),
}


@pytest.mark.parametrize("mode", FEED_MODES)
@pytest.mark.parametrize(("protocols", "kw"), BAD_101.values(), ids=BAD_101.keys())
def test_client_bad_101(mode: str, protocols: tuple[str, ...], kw: dict) -> None:  # type: ignore[type-arg]
    conn, key = new_client(protocols)
    feed(conn, response_101(key, **kw), mode, trailing=SERVER_TEXT)
    events = conn.events()
    assert isinstance(events[0], HandshakeFailed) and events[0].status == 101
    assert events[0].reason
    assert isinstance(events[1], Closed) and len(events) == 2
    assert take(conn).chunks == [b""]
    assert conn.state is State.CLOSED


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: {a}\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Accept: {a}\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    ],
    ids=["no upgrade", "no connection", "no accept"],
)
def test_client_101_missing_fields(head: bytes) -> None:
    conn, key = new_client()
    conn.receive_data(head.replace(b"{a}", accept_for(key)))
    assert isinstance(conn.events()[0], HandshakeFailed)


class FooFactory(ExtensionFactory):
    name = "x-foo"

    def finalize(self, response: ExtensionOffer) -> Extension:
        if response.has("bad"):
            raise RemoteProtocolError("bad parameter")
        ext = Extension()
        ext.name = "x-foo"
        return ext


def test_client_extension_negotiation() -> None:
    conn = WSConnection(Role.CLIENT)
    conn.initiate("h", extensions=[FooFactory()])
    req = take(conn).data
    assert b"\r\nSec-WebSocket-Extensions: x-foo\r\n" in req
    conn.receive_data(response_101(client_key(req), ["Sec-WebSocket-Extensions: x-foo; p=1"]))
    (est,) = conn.events()
    assert isinstance(est, Established)
    assert est.extensions == (ExtensionOffer("x-foo", (("p", "1"),)),)
    assert conn.extension is not None and conn.extension.name == "x-foo"

    conn = WSConnection(Role.CLIENT)
    conn.initiate("h", extensions=[FooFactory()])
    req = take(conn).data
    conn.receive_data(response_101(client_key(req), ["Sec-WebSocket-Extensions: x-foo; bad"]))
    ev = conn.events()[0]
    assert isinstance(ev, HandshakeFailed) and ev.reason == "bad parameter"


def test_client_eof_during_handshake() -> None:
    conn, _ = new_client()
    conn.receive_data(b"HTTP/1.1 101 Swi")
    conn.receive_eof()
    (ev,) = conn.events()
    assert ev == Closed(1006, "connection closed without a close frame", False)


# ------------------------------------- token lists: the one-call checks, as the two-step


def _old_lists(values: list[bytes], token: bytes) -> bool:
    # what the checks were: the items (split on commas, stripped, empties dropped), then
    # any item equal to the token, lower-cased
    items = [i.strip() for v in values for i in v.split(b",") if i.strip()]
    return any(i.lower() == token for i in items)


_TOKENISH = st.lists(
    st.lists(
        st.sampled_from(
            [b"websocket", b"WebSocket", b"upgrade", b"h2c", b"13", b" ", b",", b"\t", b""]
        )
    ).map(b"".join),
    max_size=3,
)


@given(values=_TOKENISH)
def test_token_list_checks_agree_with_the_two_step(values: list[bytes]) -> None:
    assert upgrade_lists_websocket(values) == _old_lists(values, b"websocket")
    key = b"dGhlIHNhbXBsZSBub25jZQ=="
    # as Connection: accepted exactly when an item is "upgrade"
    fields = [(b"host", b"h"), (b"sec-websocket-key", key), (b"sec-websocket-version", b"13")]
    headers = Headers(fields + [(b"connection", v) for v in values])
    try:
        validate_upgrade("GET", (1, 1), headers)
        ok = True
    except RemoteProtocolError:
        ok = False
    assert ok == _old_lists(values, b"upgrade")
    # as Sec-WebSocket-Version: accepted exactly when the items are ["13"]
    fields = [(b"host", b"h"), (b"sec-websocket-key", key), (b"connection", b"upgrade")]
    headers = Headers(fields + [(b"sec-websocket-version", v) for v in values])
    items = [i.strip() for v in values for i in v.split(b",") if i.strip()]
    try:
        validate_upgrade("GET", (1, 1), headers)
        status = 0
    except RemoteProtocolError as exc:
        status = exc.status
    assert status == (0 if items == [b"13"] else 426)
