"""``EpollLoop``: the context on ``select.epoll`` (Linux)."""

from __future__ import annotations

import select
import threading

from lwsbridge.adapters._array import ArrayLoop, ForeignCallback
from lwsbridge.adapters._base import POLLERR, POLLHUP, POLLIN, POLLOUT, run_until
from lwsbridge.vocabulary import Serviceable

__all__ = ["EpollLoop", "ForeignCallback", "serve"]

# Linux gives epoll the pollfd bit values, so masks go in and out untranslated
# (no per-event work on the built-in loop's hot path).
if (select.EPOLLIN, select.EPOLLOUT, select.EPOLLERR, select.EPOLLHUP) != (
    POLLIN,
    POLLOUT,
    POLLERR,
    POLLHUP,
):  # pragma: no cover - not Linux
    raise ImportError("epoll event bits differ from poll's here")


class EpollLoop(ArrayLoop):
    """``EpollLoop(context)``: ``run_once(timeout_ms)``, ``run_forever()``, ``stop()``.

    Level-triggered, like poll.  The context reports DEL before it closes an fd, so
    the fd leaves the epoll set while it is still open.
    """

    name = "epoll"

    def _kopen(self) -> None:
        self._ep = select.epoll()
        # The wait is the epoll object's own poll(): seconds, None = no limit, as
        # _kwait's contract says; no Python frame per pass (the method below is the
        # same thing, for the reader and the type checker).
        self._kwait = self._ep.poll  # type: ignore[method-assign]

    def _kclose(self) -> None:
        self._ep.close()

    def _kset(self, fd: int, old: int, new: int) -> None:
        # modify()/unregister() of an unknown fd raise FileNotFoundError (ENOENT)
        if new:
            if old:
                self._ep.modify(fd, new)
            else:
                self._ep.register(fd, new)
        elif old:
            self._ep.unregister(fd)

    # The sink calls of every connection's ADD and DEL, with ArrayLoop's _refuse /
    # _set / _kset levels folded in (epoll refuses no fd): the same kernel calls and
    # the same errors (_kfailed), three call levels fewer each.

    def add_fd(self, fd: int, events: int) -> None:
        if fd in self._foreign:
            raise ValueError(f"{self.name}: ADD for fd {fd}, which is already watched")
        if events:
            try:
                self._ep.register(fd, events)
            except OSError as exc:
                self._kfailed(exc, fd, "ADD")

    def del_fd(self, fd: int, events: int) -> None:
        self._closed_in_pass.add(fd)  # _gone: stale for the rest of this pass
        if events:  # (epoll refuses no fd at ADD: nothing is on _refused)
            try:
                self._ep.unregister(fd)
            except OSError as exc:
                self._kfailed(exc, fd, "DEL")

    def _kwait(self, timeout: float | None) -> list[tuple[int, int]]:
        return self._ep.poll(-1 if timeout is None else timeout)


def serve(context: Serviceable, stop_event: threading.Event | None = None) -> None:
    """Serve ``context`` on epoll in this thread until ``stop_event`` is set."""
    run_until(EpollLoop(context), stop_event)
