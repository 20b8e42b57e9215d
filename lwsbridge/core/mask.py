"""RFC 6455 §5.3 payload masking: one function, pure Python, replaceable by a C speedup."""

from __future__ import annotations

import sys

__all__ = ["apply_mask", "apply_mask_py"]

_BYTEORDER = sys.byteorder


def apply_mask_py(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` repeated; the mask starts at data[0].

    The fastest pure-Python way: both operands become one big int, XOR runs in C,
    no per-byte Python loop (gevent-websocket's per-byte loop made it 100x slower).
    """
    n = len(data)
    if n == 0:
        return b""
    # Build the repeated mask with sequence repetition (C speed), trimmed to n.
    full = mask * (n >> 2) + mask[: n & 3]
    return (int.from_bytes(data, _BYTEORDER) ^ int.from_bytes(full, _BYTEORDER)).to_bytes(
        n, _BYTEORDER
    )


try:  # The C speedup slot: lwsbridge/core/_speedups.c may provide the same function.
    from lwsbridge.core._speedups import apply_mask  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - depends on the build
    apply_mask = apply_mask_py
