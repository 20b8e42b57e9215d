"""Incremental UTF-8 validation of text messages (RFC 6455 §8.1), failing at the first bad byte.

Text arrives in pieces cut anywhere, mid-character included (Chromium does so).  The
validator keeps what the next byte must be across pieces.  With the C speedup it walks
the bytes once without building a ``str``; the pure-Python path uses the stdlib's
incremental decoder (C as well, but it makes the text).
"""

from __future__ import annotations

import codecs
from collections.abc import Callable

from lwsbridge.core import mask as _mask_module

__all__ = ["Utf8Validator", "c_check", "utf8_valid"]

_Decoder = codecs.getincrementaldecoder("utf-8")
# The C validator (None without the speedup); tests set it to None for the Python path.
c_check: Callable[[bytes, int], int] | None = _mask_module.speedup("utf8_check")


class Utf8Validator:
    """Feed pieces; ``feed`` returns False at the first piece holding an invalid byte."""

    __slots__ = ("_decoder", "_state")

    def __init__(self) -> None:
        self._state = 0
        self._decoder = None if c_check is not None else _Decoder("strict")

    @property
    def pending(self) -> bool:
        """True when the last piece ended inside a character."""
        if self._decoder is None:
            return self._state != 0
        return bool(self._decoder.getstate()[0])

    def feed(self, data: bytes, final: bool) -> bool:
        if self._decoder is None:
            assert c_check is not None
            self._state = c_check(data, self._state)
            return self._state == 0 or (self._state > 0 and not final)
        try:
            self._decoder.decode(data, final)
        except UnicodeDecodeError:
            return False
        held: bytes = self._decoder.getstate()[0]
        # CPython's decoder holds ED A0-BF (the start of a UTF-16 surrogate) until its
        # third byte; fail fast here like every other invalid prefix.
        return not (held[:1] == b"\xed" and len(held) > 1 and held[1] >= 0xA0)


def utf8_valid(data: bytes) -> bool:
    """Is ``data`` a complete, well-formed UTF-8 text (no surrogates, nothing over U+10FFFF)?"""
    if data.isascii():
        return True
    if c_check is not None:
        return bool(c_check(data, 0) == 0)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
