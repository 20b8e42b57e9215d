"""Sec-WebSocket-Extensions parsing and the Extension hook's defaults."""

from __future__ import annotations

import pytest

from lwsbridge.core import Extension, ExtensionFactory, ExtensionOffer, RemoteProtocolError
from lwsbridge.core.extensions import format_extensions, parse_extensions


def test_parse_extensions() -> None:
    offers = parse_extensions(
        [
            b"permessage-deflate; client_max_window_bits; server_max_window_bits=10",
            b'x-a ; p = "1" , , x-b;q',
        ]
    )
    assert offers == (
        ExtensionOffer(
            "permessage-deflate",
            (("client_max_window_bits", None), ("server_max_window_bits", "10")),
        ),
        ExtensionOffer("x-a", (("p", "1"),)),
        ExtensionOffer("x-b", (("q", None),)),
    )
    assert offers[0].param("server_max_window_bits") == "10"
    assert offers[0].param("nope", "d") == "d"
    assert offers[0].has("client_max_window_bits") and not offers[0].has("x")


def test_parse_extensions_empty() -> None:
    assert parse_extensions([]) == ()
    assert parse_extensions([b"", b" , "]) == ()


@pytest.mark.parametrize(
    "value",
    [b"a b", b"a;", b"a; =1", b"a; b=", b'a; b="x y"', b'a; b="', b"a; b=1 2", b"(a)", b";x"],
)
def test_parse_extensions_rejects(value: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_extensions([value])
    assert info.value.status == 400


def test_format_round_trip() -> None:
    offers = (ExtensionOffer("a", (("x", None), ("y", "2"))), ExtensionOffer("b"))
    text = format_extensions(offers)
    assert text == "a; x; y=2, b"
    assert parse_extensions([text.encode()]) == offers


def test_extension_defaults() -> None:
    ext = Extension()
    assert ext.rsv_mask == 0 and not ext.pending()
    assert ext.decode(b"abc", 0x40, True, None) == b"abc"
    assert ext.encode(b"abc", True, True) == (b"abc", 0)
    assert ext.response() == ExtensionOffer("")
    fac = ExtensionFactory()
    assert fac.accept([ExtensionOffer("x")]) is None
    assert fac.offer() == ExtensionOffer("")
    with pytest.raises(RemoteProtocolError):
        fac.finalize(ExtensionOffer("x"))
