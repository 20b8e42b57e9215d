"""``SelectLoop``: the context on ``select.select``.

select() cannot watch fds from FD_SETSIZE (1024) up.  Such an fd is refused with an
error naming it: at attach time :class:`SelectLoop` raises ``ValueError``; a
connection accepted later on such an fd is logged and closed (the context gets
POLLNVAL for it), and the loop goes on.  Use :class:`~lwsbridge.adapters.poll_loop.PollLoop`
or :class:`~lwsbridge.adapters.epoll_loop.EpollLoop` beyond that.
"""

from __future__ import annotations

import select
import threading

from lwsbridge.adapters._array import ArrayLoop, ForeignCallback
from lwsbridge.adapters._base import POLLIN, POLLOUT, run_until
from lwsbridge.vocabulary import Serviceable

__all__ = ["FD_SETSIZE", "ForeignCallback", "SelectLoop", "serve"]

FD_SETSIZE = 1024


class SelectLoop(ArrayLoop):
    """``SelectLoop(context)``: ``run_once(timeout_ms)``, ``run_forever()``, ``stop()``."""

    name = "select"

    def _kopen(self) -> None:
        self._r: set[int] = set()
        self._w: set[int] = set()

    def _kclose(self) -> None:
        self._r.clear()
        self._w.clear()

    def _check_attach(self, fd: int) -> None:
        if fd >= FD_SETSIZE:
            raise ValueError(
                f"select: fd {fd} is >= FD_SETSIZE ({FD_SETSIZE}); select() cannot watch it "
                "(use the poll or epoll loop)"
            )

    def _refuse(self, fd: int) -> bool:
        return fd >= FD_SETSIZE

    def _kset(self, fd: int, old: int, new: int) -> None:
        r, w = self._r, self._w
        if (old & POLLIN and fd not in r) or (old & POLLOUT and fd not in w):
            raise KeyError(fd)  # the sets are the kernel's view here: they disagree
        if new & POLLIN:
            r.add(fd)
        else:
            r.discard(fd)
        if new & POLLOUT:
            w.add(fd)
        else:
            w.discard(fd)

    def _kwait(self, timeout: float | None) -> list[tuple[int, int]]:
        # select() puts an errored or hung-up socket in the sets it was asked about:
        # the revents rule (adapters/__init__) holds with no translation.
        r, w, _x = select.select(list(self._r), list(self._w), [], timeout)
        if not w:
            return [(fd, POLLIN) for fd in r]
        out: dict[int, int] = dict.fromkeys(r, POLLIN)
        for fd in w:
            out[fd] = out.get(fd, 0) | POLLOUT
        return list(out.items())


def serve(context: Serviceable, stop_event: threading.Event | None = None) -> None:
    """Serve ``context`` on select() in this thread until ``stop_event`` is set."""
    run_until(SelectLoop(context), stop_event)
