"""RFC 6455 §5.3 payload masking: one function, pure Python, replaceable by a C speedup."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["SPEEDUPS", "apply_mask", "apply_mask_py", "speedup"]

_BYTEORDER = sys.byteorder
_TRANSLATE_FROM = 2048  # below: one big-int XOR is fastest; above: 4 strided translates
_TABLES: list[bytes] = []


def _tables() -> list[bytes]:
    # 256 translation tables, one per mask byte value: table[k][b] == b ^ k.
    if not _TABLES:
        _TABLES.extend(bytes(b ^ k for b in range(256)) for k in range(256))
    return _TABLES


def apply_mask_py(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` repeated; the mask starts at data[0].

    No per-byte Python loop (gevent-websocket's per-byte loop made it 100x slower):
    small payloads become one big int XORed in C; large ones are four strided
    ``bytes.translate`` calls, each a C loop over a quarter of the data.
    """
    n = len(data)
    if n == 0:
        return b""
    if n < _TRANSLATE_FROM:
        full = mask * (n >> 2) + mask[: n & 3]
        return (int.from_bytes(data, _BYTEORDER) ^ int.from_bytes(full, _BYTEORDER)).to_bytes(
            n, _BYTEORDER
        )
    tables = _tables()
    src = bytes(data) if not isinstance(data, bytes) else data
    out = bytearray(n)
    for i in range(4):
        out[i::4] = src[i::4].translate(tables[mask[i]])
    return bytes(out)


# The C speedup slot: lwsbridge/core/_speedups.c, built when a compiler is there.
# LWSBRIDGE_NO_SPEEDUPS=1 forces the pure-Python path (tests run both).
# Typed by position only: the C function (core/_speedups.pyi) takes no keywords.
apply_mask: Callable[[bytes | bytearray | memoryview, bytes], bytes] = apply_mask_py
SPEEDUPS = False
if not os.environ.get("LWSBRIDGE_NO_SPEEDUPS"):
    try:
        from lwsbridge.core._speedups import (  # type: ignore[import-not-found,unused-ignore]
            apply_mask as _c_apply_mask,
        )
    except ImportError:  # pragma: no cover - depends on the build
        pass
    else:
        apply_mask = _c_apply_mask
        SPEEDUPS = True


def speedup(name: str) -> Any:
    """The C speedup's ``name``, or None: without the module, with
    LWSBRIDGE_NO_SPEEDUPS=1 (the one switch, :data:`SPEEDUPS`), or from an older build
    that lacks it.  Each core module takes its C piece through this."""
    if not SPEEDUPS:
        return None
    import lwsbridge.core._speedups as c_module  # type: ignore[import-not-found,unused-ignore]

    return getattr(c_module, name, None)
