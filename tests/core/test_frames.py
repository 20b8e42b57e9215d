"""Frame serialisation, opcodes and close codes (frames.py)."""

from __future__ import annotations

import struct

import pytest
from helpers import open_conn, parse_frames, xor

from lwsbridge.core import Opcode, Role
from lwsbridge.core.frames import (
    CONTROL_OPCODES,
    DATA_OPCODES,
    build_close_payload,
    close_code_is_valid,
    encode_frame,
)


def test_opcodes() -> None:
    assert [int(o) for o in Opcode] == [0, 1, 2, 8, 9, 10]
    assert {0, 1, 2} == DATA_OPCODES and {8, 9, 10} == CONTROL_OPCODES


VALID = [*range(1000, 1004), *range(1007, 1015), *range(3000, 5000)]
INVALID = [
    *range(0, 1000),
    1004,
    1005,
    1006,
    1015,
    *range(1016, 3000),
    *range(5000, 5100),
    65535,
]


def test_close_codes() -> None:
    assert all(close_code_is_valid(c) for c in VALID)
    assert not any(close_code_is_valid(c) for c in INVALID)


def test_build_close_payload() -> None:
    assert build_close_payload(None) == b""
    assert build_close_payload(1000) == b"\x03\xe8"
    assert build_close_payload(4000, "é") == struct.pack("!H", 4000) + "é".encode()
    assert len(build_close_payload(1000, "x" * 123)) == 125
    with pytest.raises(ValueError):
        build_close_payload(1000, "x" * 124)


@pytest.mark.parametrize(
    ("n", "header_len", "len_byte"),
    [(0, 2, 0), (125, 2, 125), (126, 4, 126), (65535, 4, 126), (65536, 10, 127)],
)
@pytest.mark.parametrize("masked", [False, True])
def test_minimal_length_encoding(n: int, header_len: int, len_byte: int, masked: bool) -> None:
    payload = bytes(i & 0xFF for i in range(n))
    key = b"\x01\x02\x03\x04"
    data = b"".join(encode_frame(2, payload, mask=masked, mask_key=key if masked else None))
    hl = header_len + (4 if masked else 0)
    assert len(data) == hl + n
    assert data[0] == 0x82
    assert data[1] == (0x80 if masked else 0) | len_byte
    if len_byte == 126:
        assert struct.unpack("!H", data[2:4])[0] == n
    elif len_byte == 127:
        assert struct.unpack("!Q", data[2:10])[0] == n
    if masked:
        assert data[hl - 4 : hl] == key
        assert xor(data[hl:], key) == payload
    else:
        assert data[hl:] == payload
    (frame,), rest = parse_frames(data)
    assert rest == b"" and frame.payload == payload and frame.masked is masked


def test_fin_rsv_and_random_masks() -> None:
    (f,), _ = parse_frames(b"".join(encode_frame(0, b"abc", fin=False, rsv=0x40)))
    assert (f.fin, f.rsv, f.opcode) == (False, 0x40, 0)
    keys = {b"".join(encode_frame(1, b"x", mask=True))[2:6] for _ in range(16)}
    assert len(keys) > 1  # a fresh key per frame


def test_small_frames_one_chunk_large_two() -> None:
    assert len(encode_frame(2, b"x" * 1023)) == 1
    big = b"x" * 4096
    chunks = encode_frame(2, big)
    assert len(chunks) == 2 and chunks[1] is big  # no copy of a large payload


@pytest.mark.parametrize("n", [0, 1, 125, 1023, 1024, 70000])
@pytest.mark.parametrize("mask", [False, True])
def test_encode_frame_never_yields_an_empty_chunk(n: int, mask: bool) -> None:
    # b"" in data_to_send() means "close the transport": a frame must never produce one.
    from lwsbridge.core.frames import encode_frame

    chunks = encode_frame(0x1, b"a" * n, mask=mask)
    assert all(chunks)


@pytest.mark.parametrize("role", [Role.CLIENT, Role.SERVER])
def test_empty_message_output_has_no_eof_marker(role: Role) -> None:
    conn = open_conn(role)
    conn.data_to_send()
    conn.send_data(b"")
    conn.send_data("")
    assert all(conn.data_to_send())
