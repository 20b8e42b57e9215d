"""RFC 6455 §5.3 masking."""

from __future__ import annotations

import os

import pytest
from helpers import xor

from lwsbridge.core.mask import apply_mask, apply_mask_py


@pytest.mark.parametrize("fn", [apply_mask, apply_mask_py])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 7, 8, 125, 126, 1000, 65537])
def test_mask_matches_naive(fn, n: int) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(n)
    key = os.urandom(4)
    out = fn(data, key)
    assert isinstance(out, bytes)
    assert out == xor(data, key)
    assert fn(out, key) == data  # involution


def test_mask_rfc_example() -> None:
    # RFC 6455 §5.7: masked "Hello"
    key = bytes([0x37, 0xFA, 0x21, 0x3D])
    assert apply_mask(b"Hello", key) == bytes([0x7F, 0x9F, 0x4D, 0x51, 0x58])


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_mask_accepts_buffer_types(kind) -> None:  # type: ignore[no-untyped-def]
    data = b"\x00\x01\x02\x03\x04\x05"
    assert apply_mask(kind(data), b"\xff\x00\xff\x00") == xor(data, b"\xff\x00\xff\x00")


def test_mask_leading_zero_bytes_preserved() -> None:
    key = b"\x01\x02\x03\x04"
    assert apply_mask(key * 3, key) == b"\x00" * 12
