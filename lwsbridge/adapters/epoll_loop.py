"""``EpollLoop``: the context on ``select.epoll`` (Linux), a host-owned fd dict."""

from __future__ import annotations

import contextlib
import select

from lwsbridge.adapters._array import ArrayLoop, ForeignCallback
from lwsbridge.adapters._common import POLLERR, POLLHUP, POLLIN, POLLOUT

__all__ = ["EpollLoop", "ForeignCallback"]


def _to_epoll(events: int) -> int:
    return (select.EPOLLIN if events & POLLIN else 0) | (select.EPOLLOUT if events & POLLOUT else 0)


def _from_epoll(mask: int) -> int:
    return (
        (POLLIN if mask & select.EPOLLIN else 0)
        | (POLLOUT if mask & select.EPOLLOUT else 0)
        | (POLLERR if mask & select.EPOLLERR else 0)
        | (POLLHUP if mask & select.EPOLLHUP else 0)
    )


class EpollLoop(ArrayLoop):
    """``EpollLoop(context)``: ``run_once(timeout_ms)``, ``run_forever()``, ``stop()``.

    Level-triggered, like poll.  The context reports DEL before it closes an fd, so
    the fd leaves the epoll set while it is still open.
    """

    name = "epoll"

    def _kopen(self) -> None:
        self._ep = select.epoll()

    def _kclose(self) -> None:
        self._ep.close()

    def _kset(self, fd: int, old: int, new: int) -> None:
        if new:
            if old:
                self._ep.modify(fd, _to_epoll(new))
            else:
                self._ep.register(fd, _to_epoll(new))
        elif old:
            # Already closed (a host fd closed before unwatch): the kernel dropped it.
            with contextlib.suppress(FileNotFoundError, OSError):
                self._ep.unregister(fd)

    def _kwait(self, timeout: float | None) -> list[tuple[int, int]]:
        events = self._ep.poll(-1 if timeout is None else timeout)
        return [(fd, _from_epoll(mask)) for fd, mask in events]
