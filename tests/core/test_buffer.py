"""ReceiveBuffer: append/consume, head-end search, and linear-time incremental search."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lwsbridge.core import Role, WSConnection
from lwsbridge.core.buffer import ReceiveBuffer


class CountingBytearray(bytearray):
    """Records how many bytes each ``find`` call could scan."""

    scanned = 0
    calls = 0

    def find(self, sub, start=0, *args):  # type: ignore[no-untyped-def,override]
        CountingBytearray.calls += 1
        CountingBytearray.scanned += max(0, len(self) - start)
        return super().find(sub, start, *args)


@pytest.fixture(autouse=True)
def _reset_counter() -> None:
    CountingBytearray.scanned = 0
    CountingBytearray.calls = 0


def test_append_consume_discard_clear() -> None:
    buf = ReceiveBuffer()
    assert not buf and len(buf) == 0
    buf.append(b"hello ")
    buf.append(bytearray(b"big "))
    buf.append(memoryview(b"world"))
    assert buf and len(buf) == 15
    assert buf.consume(6) == b"hello "
    assert isinstance(buf.consume(0), bytes)
    buf.discard(4)
    assert bytes(buf.data) == b"world"
    buf.clear()
    assert len(buf) == 0


@pytest.mark.parametrize(
    ("data", "end"),
    [
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27),
        (b"GET / HTTP/1.1\nHost: a\n\n", 24),
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest", 27),
        (b"GET / HTTP/1.1\r\nHost: a\n\r\nrest", 26),
        (b"GET / HTTP/1.1\r\nHost: a\r\n", -1),
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r", -1),
        (b"", -1),
    ],
)
def test_find_head_end(data: bytes, end: int) -> None:
    buf = ReceiveBuffer()
    buf.append(data)
    assert buf.find_head_end() == end


@pytest.mark.parametrize(
    "data",
    [b"GET / HTTP/1.1\r\nHost: a\r\n\r\nXYZ", b"GET / HTTP/1.1\nHost: a\n\nXYZ"],
)
def test_find_head_end_bytewise_finds_split_terminator(data: bytes) -> None:
    expected = data.index(b"XYZ")
    buf = ReceiveBuffer()
    found = -1
    for i in range(len(data)):
        buf.append(data[i : i + 1])
        found = buf.find_head_end()
        if found != -1:
            assert i + 1 == expected  # found exactly when the terminator completed
            break
    assert found == expected


def test_find_head_end_remembers_offset() -> None:
    buf = ReceiveBuffer()
    buf.append(b"GET / HTTP/1.1\r\nHost: a")
    assert buf.find_head_end() == -1
    assert buf.searched == len(buf)
    buf.append(b"bc\r\n")
    assert buf.find_head_end() == -1
    assert buf.searched == len(buf)
    buf.append(b"\r\n")
    assert buf.find_head_end() == len(buf)
    # consuming resets the search
    buf.consume(len(buf))
    assert buf.searched == 0


def test_bytewise_head_search_is_linear() -> None:
    buf = ReceiveBuffer(CountingBytearray())
    line = b"X-Filler: " + b"a" * 50 + b"\r\n"
    head = b"GET / HTTP/1.1\r\n" + line * 160 + b"\r\n"
    n = len(head)
    assert n > 8000
    for i in range(n - 2):
        buf.append(head[i : i + 1])
        assert buf.find_head_end() == -1
    buf.append(head[n - 2 : n - 1])
    buf.append(head[n - 1 :])
    assert buf.find_head_end() == n
    # Quadratic rescanning would scan ~n*n/2 (32 million) bytes; remembering the offset
    # keeps the total a small multiple of n.
    assert CountingBytearray.scanned < 10 * n, CountingBytearray.scanned


@pytest.mark.parametrize("role", [Role.SERVER, Role.CLIENT])
def test_connection_bytewise_head_is_linear(role: Role) -> None:
    conn = WSConnection(
        role, max_head_size=1 << 20, receive_buffer=ReceiveBuffer(CountingBytearray())
    )
    if role is Role.CLIENT:
        conn.initiate("h")
        conn.data_to_send()
        head = b"HTTP/1.1 404 Not Found\r\n"
    else:
        head = b"GET / HTTP/1.1\r\nHost: h\r\n"
    head += b"X-Filler: " + b"b" * 60 + b"\r\n"
    head += (b"X-More: " + b"c" * 60 + b"\r\n") * 200
    for i in range(len(head)):
        conn.receive_data(head[i : i + 1])
    n = len(head)
    assert CountingBytearray.scanned < 10 * n, CountingBytearray.scanned
    assert not conn.events()


@given(
    pieces=st.lists(
        st.binary(max_size=5).map(lambda b: bytes(b"\r\na"[c % 3] for c in b)), max_size=12
    )
)
def test_find_head_end_is_the_first_blank_line(pieces: list[bytes]) -> None:
    # Fed in pieces, the answer after each is where the first "\n\n" or "\n\r\n" ends in
    # all the bytes so far (a terminator split across pieces included), else -1.
    buf = ReceiveBuffer()
    for piece in pieces:
        buf.append(piece)
        m = re.search(rb"\n\r?\n", bytes(buf.data))
        assert buf.find_head_end() == (m.end() if m else -1)
