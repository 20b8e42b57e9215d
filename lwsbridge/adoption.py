"""Adopted fds (lws ``lws_adopt_descriptor_vhost``, the raw-file role): others' fds in our poll set.

The owner (a backplane's Redis or ZeroMQ socket, say) keeps its fd and closes it; the
context only watches it with its own, reports it to protocol 0 and the adapter like a
socket, and hands readiness to the owner's ``on_ready(fd, revents)`` in the service
thread.  A handler that raises is logged and costs nothing else: the fd stays adopted
and every connection lives on.
"""

from __future__ import annotations

from collections.abc import Callable

from lwsbridge.core.errors import LocalProtocolError
from lwsbridge.log import logger
from lwsbridge.pollreport import PollReporter

__all__ = ["AdoptedFds", "FdHandler"]

#: ``on_ready(fd, revents)``: the owner of an adopted fd
FdHandler = Callable[[int, int], None]


class AdoptedFds:
    __slots__ = ("_handlers", "_poll")

    def __init__(self, poll: PollReporter) -> None:
        self._poll = poll
        self._handlers: dict[int, FdHandler] = {}

    def __contains__(self, fd: object) -> bool:
        return fd in self._handlers

    def adopt(self, fd: int, events: int, on_ready: FdHandler) -> None:
        if fd in self._poll:
            raise LocalProtocolError(f"fd {fd} is already in this context's poll set")
        self._handlers[fd] = on_ready
        try:
            self._poll.add(fd, events)
        except Exception:
            # The host's loop refused it (select() and fd >= 1024): not adopted.
            del self._handlers[fd]
            self._poll.forget(fd)
            raise

    def change(self, fd: int, events: int) -> None:
        if fd not in self._handlers:
            raise LocalProtocolError(f"fd {fd} was not adopted with adopt_fd()")
        self._poll.want(fd, events)

    def release(self, fd: int) -> None:
        if self._handlers.pop(fd, None) is not None:
            self._poll.discard(fd)

    def release_all(self) -> None:
        for fd in list(self._handlers):
            self.release(fd)

    def dispatch(self, fd: int, revents: int) -> bool:
        """Hand readiness to the owner; False when ``fd`` is not adopted."""
        handler = self._handlers.get(fd)
        if handler is None:
            return False
        try:
            handler(fd, revents)
        except Exception:
            logger.exception("handler of adopted fd %d raised", fd)
        return True
