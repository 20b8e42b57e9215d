"""Output (lws ``core-net/output.c``): a connection's bytes on their way to the kernel.

Chunks queue in order; ``b""`` marks the end of the stream (the core's half-close:
everything before it is written, then the socket is closed).  :meth:`Output.flush`
writes what the kernel takes, with ``sendmsg`` for several chunks at once, and keeps
a partial write's rest as a memoryview, never copying it.  It also remembers whether
the socket is known to be writable, so a WRITEABLE can be delivered without waiting
for POLLOUT.  :meth:`Output.send_now` is a broadcast's write: one shared frame on an
empty output, straight to the kernel.
"""

from __future__ import annotations

import socket

__all__ = ["CORK", "Output"]

#: bytes queued in one service pass before a flush even inside WRITEABLE
CORK = 64 * 1024
_IOV_MAX = 64
_MSG_MORE = getattr(socket, "MSG_MORE", 0)  # Linux; elsewhere the bytes just go at once


class Output:
    __slots__ = ("chunks", "nbytes", "writable")

    def __init__(self) -> None:
        self.chunks: list[bytes | memoryview] = []
        #: bytes queued and not yet taken by the kernel
        self.nbytes = 0
        #: the last write took everything: the socket is known to be writable
        self.writable = True

    def __bool__(self) -> bool:
        return bool(self.chunks)

    def push(self, chunk: bytes | memoryview) -> None:
        self.chunks.append(chunk)
        self.nbytes += len(chunk)

    def clear(self) -> None:
        self.chunks.clear()
        self.nbytes = 0

    def choked(self) -> bool:
        """Output waits and the kernel took no more last time (lws_send_pipe_choked)."""
        return bool(self.chunks) and not self.writable

    def send_now(self, sock: socket.socket, data: bytes) -> bool:
        """Send ``data`` on an empty output, known writable (the caller checks); True when
        the kernel took all of it.

        Otherwise the rest is queued as a memoryview of ``data`` (a broadcast's frame is
        shared by every member: never copied) and the socket marked not writable, so the
        caller asks for POLLOUT and :meth:`flush` finishes it.  A write error is left to
        that flush too (the bytes stay queued; the kernel reports the error again, or
        POLLERR, and the service closes the connection there): a broadcast never closes
        a connection, nor calls a callback, in the middle of its loop.
        """
        try:
            n = sock.send(data)
        except OSError:  # EAGAIN included: queued, POLLOUT brings the flush
            n = 0
        if n == len(data):
            return True
        self.chunks.append(memoryview(data)[n:] if n else data)
        self.nbytes += len(data) - n
        self.writable = False
        return False

    def flush(self, sock: socket.socket) -> str | None:
        """Write what the kernel takes.

        None: carry on.  A string: close the socket now -- "" when the end-of-stream
        marker was reached (a clean close), else the reason (a write error).
        """
        out = self.chunks
        while out:
            first = out[0]
            if not first:  # b"" marks end of stream: everything before it is out
                return ""
            try:
                if len(out) == 1:
                    n = sock.send(first)
                elif not out[1]:
                    # The close follows at once (the b"" marker next): held back with
                    # MSG_MORE, the last bytes leave with the FIN in one segment, not
                    # as a segment of their own and then a bare FIN.
                    n = sock.send(first, _MSG_MORE)
                else:
                    end = 1
                    while end < len(out) and end < _IOV_MAX and out[end]:
                        end += 1
                    n = sock.sendmsg(out[:end])
            except (BlockingIOError, InterruptedError):
                self.writable = False
                break
            except OSError as exc:
                return f"write error: {exc.strerror or exc}"
            self.nbytes -= n
            while n:
                c = out[0]
                if n >= len(c):
                    n -= len(c)
                    out.pop(0)
                else:
                    out[0] = memoryview(c)[n:]
                    n = 0
                    self.writable = False
            if not self.writable:
                break
        if self.nbytes == 0 and not out:
            self.writable = True
        return None
