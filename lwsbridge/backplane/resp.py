"""RESP2 (the Redis protocol), sans-IO: command encoding and a reply parser.

:func:`make_reader` gives ``hiredis.Reader`` (the C parser redis-py uses) when hiredis
is installed, else :class:`PyReader`, a pure-Python parser with the same interface:
``feed(data)``, then ``gets()`` for each reply until it returns False (incomplete).
An error reply comes back as a :class:`ReplyError` instance (not raised); bytes that
are not RESP raise :class:`ProtocolError`.  ``LWSBRIDGE_NO_SPEEDUPS=1`` picks the pure
parser, as it does for the WebSocket core.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

__all__ = ["ProtocolError", "PyReader", "Reader", "ReplyError", "encode_command", "make_reader"]


class ProtocolError(Exception):
    """The bytes from the server are not RESP."""


class ReplyError(Exception):
    """An error reply (``-ERR ...``), returned by ``gets()`` as a value."""


class Reader(Protocol):
    def feed(self, data: bytes, /) -> None: ...

    def gets(self) -> Any: ...


def encode_command(*args: bytes | str | int) -> bytes:
    """One command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode("utf-8")
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class _Incomplete(Exception):
    pass


_INCOMPLETE = _Incomplete()
#: bounds that keep a hostile or broken peer from making us allocate without limit
_MAX_BULK = 512 * 1024 * 1024
_MAX_ARRAY = 1 << 24
_MAX_DEPTH = 16
_MAX_LINE = 64 * 1024


class PyReader:
    """Pure-Python RESP2 reply parser (hiredis.Reader's interface, replies as bytes)."""

    __slots__ = ("_buf", "_pos")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0

    def feed(self, data: bytes | bytearray | memoryview, /) -> None:
        if self._pos:
            # Drop what was parsed, now rather than on every reply.
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def gets(self) -> Any:
        """The next complete reply, or False when more bytes are needed."""
        try:
            value, end = self._parse(self._pos, 0)
        except _Incomplete:
            return False
        self._pos = end
        return value

    def _line(self, pos: int) -> tuple[bytes, int]:
        buf = self._buf
        i = buf.find(b"\r\n", pos)
        if i < 0:
            if len(buf) - pos > _MAX_LINE:
                raise ProtocolError(f"RESP line longer than {_MAX_LINE} bytes")
            raise _INCOMPLETE
        return bytes(buf[pos:i]), i + 2

    def _int(self, line: bytes) -> int:
        try:
            return int(line)
        except ValueError:
            raise ProtocolError(f"bad RESP integer {line[:40]!r}") from None

    def _parse(self, pos: int, depth: int) -> tuple[Any, int]:
        buf = self._buf
        if pos >= len(buf):
            raise _INCOMPLETE
        kind = buf[pos]
        line, end = self._line(pos + 1)
        if kind == 0x2B:  # '+' simple string
            return line, end
        if kind == 0x2D:  # '-' error
            return ReplyError(line.decode("utf-8", "replace")), end
        if kind == 0x3A:  # ':' integer
            return self._int(line), end
        if kind == 0x24:  # '$' bulk string
            n = self._int(line)
            if n == -1:
                return None, end
            if n < 0 or n > _MAX_BULK:
                raise ProtocolError(f"bad RESP bulk length {n}")
            if len(buf) < end + n + 2:
                raise _INCOMPLETE
            if buf[end + n : end + n + 2] != b"\r\n":
                raise ProtocolError("RESP bulk string not followed by CRLF")
            return bytes(buf[end : end + n]), end + n + 2
        if kind == 0x2A:  # '*' array
            n = self._int(line)
            if n == -1:
                return None, end
            if n < 0 or n > _MAX_ARRAY:
                raise ProtocolError(f"bad RESP array length {n}")
            if depth >= _MAX_DEPTH:
                raise ProtocolError(f"RESP arrays nested deeper than {_MAX_DEPTH}")
            items = []
            for _ in range(n):
                item, end = self._parse(end, depth + 1)
                items.append(item)
            return items, end
        raise ProtocolError(f"bad RESP type byte {bytes([kind])!r}")


def hiredis_available() -> bool:
    if os.environ.get("LWSBRIDGE_NO_SPEEDUPS") == "1":
        return False
    try:
        import hiredis  # type: ignore[import-not-found, unused-ignore]  # noqa: F401
    except ImportError:
        return False
    return True


def make_reader(pure: bool = False) -> Reader:
    """hiredis.Reader when installed (and not ``pure``), else :class:`PyReader`."""
    if not pure and hiredis_available():
        import hiredis

        reader: Reader = hiredis.Reader(protocolError=ProtocolError, replyError=ReplyError)
        return reader
    return PyReader()
