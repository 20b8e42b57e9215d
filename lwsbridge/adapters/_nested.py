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

from lwsbridge.adapters._base import POLLERR, POLLHUP, POLLIN, POLLOUT, UnknownFdError

__all__ = ["AVAILABLE", "NestedEpoll"]

#: epoll is here and speaks pollfd bits
AVAILABLE = hasattr(select, "epoll") and (
    select.EPOLLIN,
    select.EPOLLOUT,
    select.EPOLLERR,
    select.EPOLLHUP,
) == (POLLIN, POLLOUT, POLLERR, POLLHUP)


class NestedEpoll:
    __slots__ = ("_ep", "fd")

    def __init__(self) -> None:
        self._ep = select.epoll()
        #: the one fd the host's loop watches for readability
        self.fd = self._ep.fileno()

    def set(self, fd: int, old: int, new: int, adapter: str, what: str) -> None:
        """Watch ``new`` where ``old`` was watched (0: not registered)."""
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

    def ready(self) -> list[tuple[int, int]]:
        """The fds ready now, with their revents (pollfd bits)."""
        return self._ep.poll(0)

    def close(self) -> None:
        self._ep.close()
