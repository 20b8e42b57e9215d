"""RESP2 parsing sans-IO: the pure-Python reader alone (whole, byte by byte, split
anywhere, trailing data, errors), and hiredis.Reader giving the same answers."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lwsbridge.backplane.resp import (
    ProtocolError,
    PyReader,
    Reader,
    ReplyError,
    encode_command,
    make_reader,
)

CASES: list[tuple[bytes, Any]] = [
    (b"+OK\r\n", b"OK"),
    (b":42\r\n", 42),
    (b":-7\r\n", -7),
    (b"$5\r\nhello\r\n", b"hello"),
    (b"$0\r\n\r\n", b""),
    (b"$-1\r\n", None),
    (b"*-1\r\n", None),
    (b"*0\r\n", []),
    (b"$4\r\na\r\nb\r\n", b"a\r\nb"),  # CRLF inside a bulk string is data
    (
        b"*3\r\n$7\r\nmessage\r\n$4\r\nroom\r\n$3\r\n\x00\xff\x01\r\n",
        [b"message", b"room", b"\x00\xff\x01"],
    ),
    (b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n", [b"subscribe", b"a", 1]),
    (b"*2\r\n*1\r\n:1\r\n*2\r\n$-1\r\n+x\r\n", [[1], [None, b"x"]]),
]


def readers() -> list[Any]:
    out: list[Any] = [pytest.param(PyReader, id="python")]
    try:
        import hiredis  # noqa: F401
    except ImportError:
        out.append(pytest.param(None, id="hiredis", marks=pytest.mark.skip("no hiredis")))
    else:
        out.append(pytest.param(lambda: make_reader(pure=False), id="hiredis"))
    return out


@pytest.fixture(params=readers())
def reader(request: pytest.FixtureRequest) -> Reader:
    r: Reader = request.param()
    return r


def all_replies(r: Reader) -> list[Any]:
    out = []
    while (x := r.gets()) is not False:
        out.append(x)
    return out


@pytest.mark.parametrize(("wire", "value"), CASES)
def test_whole(reader: Reader, wire: bytes, value: Any) -> None:
    reader.feed(wire)
    assert all_replies(reader) == [value]


@pytest.mark.parametrize(("wire", "value"), CASES)
def test_byte_by_byte(wire: bytes, value: Any) -> None:
    r = PyReader()
    got = []
    for i in range(len(wire)):
        r.feed(wire[i : i + 1])
        got.extend(all_replies(r))
        if i < len(wire) - 1:
            assert got == [], f"a reply before its last byte ({i})"
    assert got == [value]


def test_all_at_once_with_trailing_partial(reader: Reader) -> None:
    wire = b"".join(w for w, _ in CASES)
    reader.feed(wire + b"*2\r\n$3\r\nab")
    assert all_replies(reader) == [v for _, v in CASES]
    reader.feed(b"c\r\n:9\r\n")
    assert all_replies(reader) == [[b"abc", 9]]


@given(st.lists(st.integers(min_value=1, max_value=len(b"".join(w for w, _ in CASES)))))
def test_any_split(cuts: list[int]) -> None:
    wire = b"".join(w for w, _ in CASES)
    points = sorted({0, len(wire), *cuts})
    r = PyReader()
    got = []
    for a, b in itertools.pairwise(points):
        r.feed(wire[a:b])
        got.extend(all_replies(r))
    assert got == [v for _, v in CASES]


def test_error_reply_is_a_value(reader: Reader) -> None:
    reader.feed(b"-ERR unknown command 'FOO'\r\n:1\r\n")
    err = reader.gets()
    assert isinstance(err, ReplyError)
    assert "unknown command" in str(err)
    assert reader.gets() == 1


@pytest.mark.parametrize("wire", [b"?what\r\n", b":12x\r\n", b"$-5\r\n", b"*-2\r\n"])
def test_not_resp_raises(reader: Reader, wire: bytes) -> None:
    reader.feed(wire)
    with pytest.raises(ProtocolError):
        reader.gets()


def test_pure_checks_the_crlf_after_a_bulk_string() -> None:
    # (hiredis skips those two bytes unchecked; the pure reader is stricter)
    r = PyReader()
    r.feed(b"$3\r\nabcXY")
    with pytest.raises(ProtocolError, match="CRLF"):
        r.gets()


def test_pure_bounds_a_line_without_end() -> None:
    r = PyReader()
    r.feed(b"+" + b"x" * (70 * 1024))
    with pytest.raises(ProtocolError, match="longer"):
        r.gets()


def test_pure_bounds_nesting() -> None:
    r = PyReader()
    r.feed(b"*1\r\n" * 40 + b":1\r\n")
    with pytest.raises(ProtocolError, match="nested"):
        r.gets()


def test_encode_command() -> None:
    assert encode_command(b"PUBLISH", "ch", b"\x00\r\n") == (
        b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$3\r\n\x00\r\n\r\n"
    )
    r = PyReader()
    r.feed(encode_command("SUBSCRIBE", "a", "é", 5))
    assert r.gets() == [b"SUBSCRIBE", b"a", "é".encode(), b"5"]


def test_no_speedups_picks_the_pure_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LWSBRIDGE_NO_SPEEDUPS", "1")
    assert isinstance(make_reader(), PyReader)
