"""RFC 6455 §5.3 masking."""

from __future__ import annotations

import os

import pytest
from helpers import xor

from lwsbridge.core.buffer import FRAME_BUFFERS
from lwsbridge.core.mask import apply_mask, apply_mask_py


@pytest.mark.parametrize("fn", [apply_mask, apply_mask_py])
@pytest.mark.parametrize(
    "n",
    [
        0,
        1,
        2,
        3,
        4,
        5,
        7,
        8,
        9,
        31,
        32,
        33,
        63,
        65,
        125,
        126,
        1000,
        2047,
        2048,
        2049,
        2050,
        2051,
        65537,
    ],
)
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


@pytest.mark.parametrize("fn", [apply_mask, apply_mask_py])
@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
@pytest.mark.parametrize("n", [6, 5000])
def test_mask_accepts_buffer_types(fn, kind, n: int) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(n)
    assert fn(kind(data), b"\xff\x00\xff\x01") == xor(data, b"\xff\x00\xff\x01")


def test_c_speedup_built_in_ci() -> None:
    # CI machines have a compiler: the optional extension must have been built there.
    from lwsbridge.core import mask

    if os.environ.get("CI") and not os.environ.get("LWSBRIDGE_NO_SPEEDUPS"):
        assert mask.SPEEDUPS, "lwsbridge.core._speedups was not built"
    if mask.SPEEDUPS:
        with pytest.raises(ValueError):
            apply_mask(b"abc", b"\x00")


def test_mask_leading_zero_bytes_preserved() -> None:
    key = b"\x01\x02\x03\x04"
    assert apply_mask(key * 3, key) == b"\x00" * 12


# The C FrameBuffer: a frame's payload received into the bytes it is delivered as.
requires_frame_buffer = pytest.mark.skipif(not FRAME_BUFFERS, reason="the C speedup's FrameBuffer")


@requires_frame_buffer
@pytest.mark.parametrize("n", [0, 1, 3, 31, 32, 33, 100_001])
def test_frame_buffer_unmasks_in_place_into_plain_bytes(n: int) -> None:
    from lwsbridge.core._speedups import FrameBuffer

    data, key = os.urandom(n), os.urandom(4)
    fb = FrameBuffer(n)
    assert len(fb) == n
    with memoryview(fb) as view:
        assert not view.readonly
        view[:] = xor(data, key)  # as recv_into writes it: still masked
    out = fb.take(key)
    assert type(out) is bytes and out == data
    assert hash(out) == hash(data)  # no stale hash cached while it was being written


@requires_frame_buffer
def test_frame_buffer_unmasked_take_and_the_bytes_cannot_be_written_after() -> None:
    from lwsbridge.core._speedups import FrameBuffer

    fb = FrameBuffer(5)
    view = memoryview(fb)
    view[:] = b"hello"
    with pytest.raises(BufferError):
        fb.take(b"")  # a writable view is alive: the bytes are not handed out yet
    view.release()
    out = fb.take(b"")
    assert out == b"hello" and len(fb) == 0
    with pytest.raises(BufferError):
        memoryview(fb)  # no way back to write into what was delivered
    with pytest.raises(ValueError, match="already taken"):
        fb.take(b"")
    assert out == b"hello"


@requires_frame_buffer
def test_frame_buffer_bad_arguments() -> None:
    from lwsbridge.core._speedups import FrameBuffer

    with pytest.raises(ValueError):
        FrameBuffer(-1)
    fb = FrameBuffer(8)
    with pytest.raises(ValueError, match="4 bytes"):
        fb.take(b"abc")
    assert len(fb.take(b"abcd")) == 8  # still usable after the refusal
