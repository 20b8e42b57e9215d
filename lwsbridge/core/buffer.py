"""The one receive buffer: a bytearray consumed from the front, remembering its search."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lwsbridge.core import mask as _mask_module

if TYPE_CHECKING:
    from lwsbridge.core._speedups import FrameBuffer

__all__ = ["FRAME_BUFFERS", "FramePool", "ReceiveBuffer"]

# The C speedup's FrameBuffer (a frame received into the very bytes delivered); None
# without it, and with LWSBRIDGE_NO_SPEEDUPS=1.
_FrameBuffer: type[FrameBuffer] | None = _mask_module.speedup("FrameBuffer")
#: :meth:`FramePool.take_bytes` is there: frames are gathered in their own bytes object
FRAME_BUFFERS = _FrameBuffer is not None


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
        # The first blank line is whichever of "\n\r\n" and "\n\n" starts first (they
        # cannot start at the same LF): two scans in C, not a Python step per line.
        crlf = data.find(b"\n\r\n", start)
        lf = data.find(b"\n\n", start, crlf + 1 if crlf >= 0 else len(data))
        if lf >= 0:
            self._searched = 0
            return lf + 2
        if crlf >= 0:
            self._searched = 0
            return crlf + 3
        self._searched = len(data)
        return -1


class FramePool:
    """Buffers lent to frame readers to gather a large data frame whole (one per context).

    A data frame of at least ``min_size`` and at most ``max_size`` payload bytes is
    gathered in a buffer taken from here and handed to the application in one piece
    (unmasked into a fresh ``bytes``, so the application never sees the buffer).  The
    buffer is lent to one frame from :meth:`take` until :meth:`give`: never to two at
    once.  At most ``max_buffers`` exist; when all are lent, :meth:`take` returns None
    and the frame is delivered in pieces as it arrives, as without a pool.

    With the C speedup (:data:`FRAME_BUFFERS`) frame readers use :meth:`take_bytes`
    instead: a fresh buffer per frame that becomes the delivered ``bytes`` itself, so
    the payload is not copied out of a pooled buffer; the pool then only counts them
    against ``max_buffers`` (a peer's header alone must not make it allocate more).

    Why a pool: a 1 MiB message received in pieces and joined by the application made
    glibc grow and trim the top of the heap for every message (200-300 page faults per
    1 MiB echo); a reused buffer is faulted in once.  (A frame received into its own
    bytes object allocates what the unmasked copy allocated before: no more churn.)
    """

    __slots__ = ("_free", "_lent", "max_buffers", "max_size", "min_size")

    def __init__(
        self, max_size: int = 1 << 20, *, max_buffers: int = 4, min_size: int = 64 * 1024
    ) -> None:
        if max_buffers < 1 or min_size < 1:
            raise ValueError("a frame pool needs max_buffers >= 1 and min_size >= 1")
        #: largest frame gathered whole (payload bytes)
        self.max_size = max_size
        #: smallest frame gathered whole: smaller ones nearly always arrive in one read
        self.min_size = min_size
        self.max_buffers = max_buffers
        self._free: list[bytearray] = []
        self._lent = 0

    @property
    def lent(self) -> int:
        """Buffers lent out now."""
        return self._lent

    @property
    def idle_bytes(self) -> int:
        """Bytes held by the buffers not lent out (kept for the next large frame)."""
        return sum(len(b) for b in self._free)

    def take(self, n: int) -> bytearray | None:
        """A buffer of at least ``n`` bytes, lent until :meth:`give`; None when all are lent."""
        free = self._free
        for i, buf in enumerate(free):
            if len(buf) >= n:
                del free[i]
                self._lent += 1
                return buf
        if self._lent + len(free) >= self.max_buffers:
            if not free:
                return None
            free.pop()  # too small for this frame: replace it with one that fits
        # A power of two (at least min_size, at most max_size) so that frames of
        # similar sizes reuse the same buffer.
        size = self.min_size
        while size < n:
            size <<= 1
        self._lent += 1
        return bytearray(max(n, min(size, self.max_size)))

    def take_bytes(self, n: int) -> FrameBuffer | None:
        """A fresh C ``FrameBuffer`` of exactly ``n`` bytes, lent until :meth:`give` (its
        bytes are handed to the application, so it is not kept); None when
        ``max_buffers`` are lent, and always without the C speedup (see :meth:`take`).
        """
        if _FrameBuffer is None or self._lent + len(self._free) >= self.max_buffers:
            return None
        self._lent += 1
        return _FrameBuffer(n)

    def give(self, buf: bytearray | FrameBuffer) -> None:
        """Take back a buffer lent by :meth:`take` or :meth:`take_bytes`."""
        if not isinstance(buf, bytearray):
            self._lent -= 1  # a FrameBuffer: used up, not kept
            return
        if any(b is buf for b in self._free):
            raise ValueError("this buffer is already back in the pool")
        self._lent -= 1
        self._free.append(buf)
