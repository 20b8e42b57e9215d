"""The wakeup (lws ``lws_cancel_service``'s pipe): how other threads reach the service thread.

One object owns the self-pipe.  Its read end sits in the poll set; :meth:`Wakeup.wake`
is the only call allowed from any thread.  It closes the pipe once, and after that a
wake is a no-op: a lock orders wake and close, so a resolver thread that finishes
after ``destroy()`` can never write into an fd number the host has since reused.
"""

from __future__ import annotations

import contextlib
import os
import threading

__all__ = ["RESOLVED", "TIMER", "USER", "Wakeup"]

#: wake reasons, one byte each
USER = b"u"  # cancel_service() from the user
RESOLVED = b"r"  # a host name was resolved off-thread
TIMER = b"t"  # a callback timer became the earliest: the loop must ask next_timeout again


class Wakeup:
    __slots__ = ("_closed", "_lock", "_r", "_w")

    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        self._lock = threading.Lock()
        self._closed = False

    @property
    def fd(self) -> int:
        """The read end, for the poll set."""
        return self._r

    @property
    def closed(self) -> bool:
        return self._closed

    def wake(self, why: bytes = USER) -> bool:
        """Wake the service thread (any thread); False once closed."""
        with self._lock:
            if self._closed:
                return False
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self._w, why)  # a full pipe already wakes it
            return True

    def drain(self) -> bytes:
        """Read every pending wake byte (service thread)."""
        data = b""
        with contextlib.suppress(BlockingIOError, OSError):
            while chunk := os.read(self._r, 4096):
                data += chunk
        return data

    def close(self) -> None:
        """Close both ends, once; later wakes do nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            os.close(self._r)
            os.close(self._w)
