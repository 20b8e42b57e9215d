"""MessageAssembler: whole messages from partial deliveries, with its size limit."""

from __future__ import annotations

import pytest
from helpers import build_frame, open_server

from lwsbridge.core import (
    DataReceived,
    Message,
    MessageAssembler,
    MessageTooBig,
    RemoteProtocolError,
)


def piece(data: bytes, binary: bool, first: bool, final: bool) -> DataReceived:
    return DataReceived(data, binary, first, final)


def test_single_piece_messages() -> None:
    asm = MessageAssembler()
    assert asm.feed(piece(b"hi", False, True, True)) == Message("hi")
    assert asm.feed(piece(b"\x00\xff", True, True, True)) == Message(b"\x00\xff")
    assert Message(b"x").is_binary and not Message("x").is_binary
    assert asm.feed(piece(b"", False, True, True)) == Message("")


def test_multi_piece_message_and_utf8_split() -> None:
    asm = MessageAssembler()
    euro = "€".encode()
    assert asm.feed(piece(b"a" + euro[:1], False, True, False)) is None
    assert asm.feed(piece(euro[1:2], False, False, False)) is None
    assert asm.feed(piece(euro[2:] + b"b", False, False, True)) == Message("a€b")
    # the next message starts clean
    assert asm.feed(piece(b"x", True, True, False)) is None
    assert asm.feed(piece(b"y", True, False, True)) == Message(b"xy")


def test_size_limit() -> None:
    asm = MessageAssembler(max_size=10)
    assert asm.feed(piece(b"a" * 10, True, True, True)) == Message(b"a" * 10)
    assert asm.feed(piece(b"a" * 6, True, True, False)) is None
    with pytest.raises(MessageTooBig) as info:
        asm.feed(piece(b"a" * 5, True, False, False))
    assert info.value.code == 1009 and isinstance(info.value, RemoteProtocolError)
    assert "10" in info.value.reason
    # after the error a new message is accepted
    assert asm.feed(piece(b"ok", False, True, True)) == Message("ok")


def test_size_limit_single_piece_and_unlimited() -> None:
    with pytest.raises(MessageTooBig):
        MessageAssembler(max_size=3).feed(piece(b"abcd", True, True, True))
    big = b"z" * (3 << 20)
    assert MessageAssembler(max_size=0).feed(piece(big, True, True, True)) == Message(big)


def test_limit_counts_per_message() -> None:
    asm = MessageAssembler(max_size=4)
    for _ in range(5):
        assert asm.feed(piece(b"abc", True, True, True)) == Message(b"abc")


def test_assembles_connection_output() -> None:
    conn = open_server()
    frames = (
        build_frame(0x1, "héllo ".encode(), fin=False)
        + build_frame(0x9, b"ping")
        + build_frame(0x0, "wörld".encode())
        + build_frame(0x2, b"\x01\x02")
    )
    asm = MessageAssembler()
    msgs = []
    for i in range(len(frames)):  # byte by byte: many partial pieces
        conn.receive_data(frames[i : i + 1])
        for ev in conn.events():
            if isinstance(ev, DataReceived) and (m := asm.feed(ev)) is not None:
                msgs.append(m)
    assert msgs == [Message("héllo wörld"), Message(b"\x01\x02")]
