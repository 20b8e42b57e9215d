"""``SelectLoop``: the context on ``select.select``, a host-owned fd dict.

select() cannot watch fds from FD_SETSIZE (1024) up.  Such an fd is refused with an
error naming it: at attach time :class:`SelectLoop` raises ``ValueError``; a
connection accepted later on such an fd is logged and closed (the context gets
POLLNVAL for it), and the loop goes on.  Use :class:`~lwsbridge.adapters.poll_loop.PollLoop`
or :class:`~lwsbridge.adapters.epoll_loop.EpollLoop` beyond that.
"""

from __future__ import annotations

import select

from lwsbridge.adapters._array import ArrayLoop, ForeignCallback
from lwsbridge.adapters._common import POLLIN, POLLOUT

__all__ = ["FD_SETSIZE", "ForeignCallback", "SelectLoop"]

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
        if new & POLLIN:
            self._r.add(fd)
        else:
            self._r.discard(fd)
        if new & POLLOUT:
            self._w.add(fd)
        else:
            self._w.discard(fd)

    def _kwait(self, timeout: float | None) -> list[tuple[int, int]]:
        r, w, _x = select.select(list(self._r), list(self._w), [], timeout)
        if not w:
            return [(fd, POLLIN) for fd in r]
        out: dict[int, int] = dict.fromkeys(r, POLLIN)
        for fd in w:
            out[fd] = out.get(fd, 0) | POLLOUT
        return list(out.items())
