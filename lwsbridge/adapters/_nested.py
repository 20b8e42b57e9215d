"""A nested epoll set: the context's fds in one epoll fd that the host's loop watches.

For loops whose own fd registry is costly per fd -- ``zmq.Poller`` keeps a list whose
``unregister`` renumbers every later entry and whose every ``poll`` converts the whole
list, so a close storm of 20,000 connections cost O(n^2), seconds of a stuck loop --
the adapter keeps the context's fds in an epoll set of its own and registers only that
epoll fd with the host (readable when any of them is ready), as the libwebsockets
event-lib design allows.  Linux gives epoll the pollfd bit values, so masks go in and
come out untranslated.  Level-triggered: what is left unread makes the epoll fd
readable again.
"""

from __future__ import annotations

import errno
import select

from lwsbridge.adapters._base import POLLERR, POLLHUP, POLLIN, POLLOUT, UnknownFdError, fold
from lwsbridge.vocabulary import Serviceable

__all__ = ["AVAILABLE", "NestedEpoll"]

#: epoll is here and speaks pollfd bits
AVAILABLE = hasattr(select, "epoll") and (
    select.EPOLLIN,
    select.EPOLLOUT,
    select.EPOLLERR,
    select.EPOLLHUP,
) == (POLLIN, POLLOUT, POLLERR, POLLHUP)


class NestedEpoll:
    __slots__ = ("_ep", "_gone", "fd")

    def __init__(self) -> None:
        self._ep = select.epoll()
        #: fds DEL'd during the batch being serviced (the stale-fd guard)
        self._gone: set[int] = set()
        #: the one fd the host's loop watches for readability
        self.fd = self._ep.fileno()

    def set(self, fd: int, old: int, new: int, adapter: str, what: str) -> None:
        """Watch ``new`` where ``old`` was watched (0: not registered; both 0: nothing)."""
        if not (old or new):
            return
        try:
            if not new:
                self._ep.unregister(fd)
            elif old:
                self._ep.modify(fd, new)
            else:
                self._ep.register(fd, new)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.EBADF):
                raise UnknownFdError(fd, what, adapter) from None
            raise

    def drop(self, fd: int, events: int, adapter: str) -> None:
        """The context's DEL: ``fd`` is closing, and stale for the rest of the batch."""
        self._gone.add(fd)
        self.set(fd, events, 0, adapter, "DEL")

    def service(self, context: Serviceable) -> None:
        """Service every fd ready now (call when the host says :attr:`fd` is readable).

        An fd DEL'd earlier in this batch is skipped: it was closed, and its number may
        already be a new connection's.  Level-triggered: what the batch leaves makes
        :attr:`fd` readable again, and the host runs its other work in between.
        """
        gone = self._gone
        gone.clear()
        for fd, revents in self._ep.poll(0):
            if fd not in gone:
                context.service_fd(fd, fold(revents))

    def close(self) -> None:
        self._ep.close()
