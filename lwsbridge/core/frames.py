"""RFC 6455 §5 frames: opcodes, close codes, and serializing frames (parsing is in connection)."""

from __future__ import annotations

import os
import struct
from enum import IntEnum

from lwsbridge.core.mask import apply_mask

__all__ = [
    "CONTROL_OPCODES",
    "DATA_OPCODES",
    "Opcode",
    "build_close_payload",
    "close_code_is_valid",
    "encode_frame",
]


class Opcode(IntEnum):
    """Frame opcodes (§5.2); 3-7 and 0xB-0xF are reserved."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


DATA_OPCODES = frozenset({0x0, 0x1, 0x2})
CONTROL_OPCODES = frozenset({0x8, 0x9, 0xA})

_PACK_H = struct.Struct("!BB").pack
_PACK_H16 = struct.Struct("!BBH").pack
_PACK_H64 = struct.Struct("!BBQ").pack


def close_code_is_valid(code: int) -> bool:
    """May this code appear in a close frame on the wire? (§7.4.1, §7.4.2, IANA registry)

    1000-1003 and 1007-1014 are defined; 1004 is reserved, 1005/1006/1015 must never be
    sent; 1016-2999 are unassigned; 3000-4999 are for libraries and applications.
    """
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def build_close_payload(code: int | None, reason: str = "") -> bytes:
    if code is None:
        return b""
    data = struct.pack("!H", code) + reason.encode("utf-8")
    if len(data) > 125:
        raise ValueError("close reason too long: code + reason must fit 125 bytes")
    return data


def encode_frame(
    opcode: int,
    payload: bytes,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = False,
    mask_key: bytes | None = None,
) -> list[bytes]:
    """Serialize one frame as ``[header, payload]`` chunks (no copy of a large payload).

    The length is always the minimal encoding (§5.2).  With ``mask`` a fresh random
    key is used per frame (§5.3) unless ``mask_key`` is given.
    """
    n = len(payload)
    b0 = (0x80 if fin else 0) | rsv | opcode
    mbit = 0x80 if mask else 0
    if n < 126:
        header = _PACK_H(b0, mbit | n)
    elif n < 65536:
        header = _PACK_H16(b0, mbit | 126, n)
    else:
        header = _PACK_H64(b0, mbit | 127, n)
    # Never an empty chunk: b"" in an output list means end of stream.
    if mask:
        key = mask_key if mask_key is not None else os.urandom(4)
        if n < 1024:
            return [header + key + apply_mask(payload, key)]
        return [header + key, apply_mask(payload, key)]
    if n < 1024:
        # Small frames: one chunk is cheaper to write than two.
        return [header + payload]
    return [header, payload]
