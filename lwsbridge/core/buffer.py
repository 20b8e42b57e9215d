"""The one receive buffer: a bytearray consumed from the front, remembering its search."""

from __future__ import annotations

__all__ = ["ReceiveBuffer"]


class ReceiveBuffer:
    """Bytes received but not yet parsed.

    Data is appended at the end and consumed from the front with ``del buf[:n]``
    (amortised O(1) in CPython for front deletion of a bytearray).  ``find_head_end``
    remembers how far it already looked, so a head fed one byte at a time costs O(n)
    in total rather than O(n^2).
    """

    __slots__ = ("_searched", "data")

    def __init__(self, data: bytearray | None = None) -> None:
        # ``data``: the bytearray to use (a subclass lets a test count the bytes scanned).
        #: the raw bytearray (for zero-copy parsing with memoryview; do not keep views,
        #: do not rebind): a plain attribute, read on every receive
        self.data = data if data is not None else bytearray()
        self._searched = 0

    def __len__(self) -> int:
        return len(self.data)

    def __bool__(self) -> bool:
        return bool(self.data)

    @property
    def searched(self) -> int:
        """How far :meth:`find_head_end` has looked without finding the end (0 after)."""
        return self._searched

    def append(self, data: bytes | bytearray | memoryview) -> None:
        self.data += data

    def consume(self, n: int) -> bytes:
        """Remove and return the first ``n`` bytes."""
        out = bytes(self.data[:n])
        del self.data[:n]
        self._searched = 0
        return out

    def discard(self, n: int) -> None:
        del self.data[:n]
        self._searched = 0

    def clear(self) -> None:
        self.data.clear()
        self._searched = 0

    def find_head_end(self) -> int:
        """Index just past the blank line ending an HTTP head, or -1 if not yet there.

        Accepts CRLF CRLF and, leniently (RFC 9112 §2.2), bare LF LF.
        """
        data = self.data
        # Step back 3 bytes so a terminator split across appends is still found.
        start = max(0, self._searched - 3)
        i = data.find(b"\n", start)
        while i != -1:
            # A blank line: "\n\n" or "\n\r\n"
            if data[i + 1 : i + 2] == b"\n":
                self._searched = 0
                return i + 2
            if data[i + 1 : i + 3] == b"\r\n":
                self._searched = 0
                return i + 3
            if i + 2 >= len(data):
                # Cannot decide yet; resume from here next time.
                break
            i = data.find(b"\n", i + 1)
        self._searched = len(data)
        return -1
