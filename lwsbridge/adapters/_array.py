"""The host-owned array loops (select, poll, epoll): one base, three kernel backends.

The loop keeps its own ``fd -> events`` dict, fed by the context's ADD/DEL/CHANGE
reports, and mirrors it into one kernel object.  An fd with no events is kept in the
dict but not in the kernel set, so a hung-up socket whose reading is paused does not
make the wait return at once for ever.  Host fds can be watched beside the context's
with :meth:`watch`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from lwsbridge.adapters._common import POLLNVAL, UnknownFdError
from lwsbridge.log import logger

if TYPE_CHECKING:
    from lwsbridge.context import Context

__all__ = ["ArrayLoop", "ForeignCallback"]

#: ``callback(fd, revents)`` for a host fd watched with :meth:`ArrayLoop.watch`
ForeignCallback = Callable[[int, int], None]


class ArrayLoop:
    """Base of SelectLoop/PollLoop/EpollLoop; subclasses supply the ``_k*`` backend."""

    name = "array"

    def __init__(self, context: Context) -> None:
        self.context = context
        #: what the context wants watched, per fd (Linux pollfd bits)
        self.events: dict[int, int] = {}
        self._foreign: dict[int, tuple[int, ForeignCallback]] = {}
        self._refused: list[int] = []
        self._closed_in_pass: set[int] = set()
        self._servicing = False
        self._stopping = False
        self._thread = threading.get_ident()
        for fd, _events in context.fds:
            self._check_attach(fd)
        self._kopen()
        self._attached = True
        try:
            context.set_poll_sink(self)
        except BaseException:
            self._attached = False
            context.set_poll_sink(None)
            self._kclose()
            raise

    # -- the kernel backend (subclasses) -------------------------------------------------

    def _kopen(self) -> None:
        raise NotImplementedError

    def _kclose(self) -> None:
        raise NotImplementedError

    def _kset(self, fd: int, old: int, new: int) -> None:
        """Make the kernel watch ``new`` (0: nothing) where it watched ``old``."""
        raise NotImplementedError

    def _kwait(self, timeout: float | None) -> list[tuple[int, int]]:
        """Wait up to ``timeout`` seconds; ready ``(fd, revents)`` in pollfd bits."""
        raise NotImplementedError

    def _check_attach(self, fd: int) -> None:
        """Refuse (raise) an fd this backend cannot watch, before anything is attached."""

    def _refuse(self, fd: int) -> bool:
        """True when the backend cannot watch ``fd`` (select's FD_SETSIZE)."""
        return False

    # -- the poll sink -------------------------------------------------------------------

    def add_fd(self, fd: int, events: int) -> None:
        if fd in self.events or fd in self._foreign:
            raise ValueError(f"{self.name}: ADD for fd {fd}, which is already watched")
        self.events[fd] = events
        if self._refuse(fd):
            # Not watchable here: the connection is closed (service_fd with POLLNVAL)
            # as soon as the context is not in the middle of a call.
            self._refused.append(fd)
            return
        self._kset(fd, 0, events)

    def del_fd(self, fd: int, events: int = 0) -> None:
        try:
            old = self.events.pop(fd)
        except KeyError:
            raise UnknownFdError(fd, "DEL", self.name) from None
        self._closed_in_pass.add(fd)
        if fd in self._refused:
            self._refused.remove(fd)
        else:
            self._kset(fd, old, 0)

    def change_fd(self, fd: int, old: int, events: int) -> None:
        try:
            old = self.events[fd]
        except KeyError:
            raise UnknownFdError(fd, "CHANGE", self.name) from None
        self.events[fd] = events
        if fd not in self._refused:
            self._kset(fd, old, events)

    # -- host fds ------------------------------------------------------------------------

    def watch(self, fd: int, events: int, callback: ForeignCallback) -> None:
        """Watch a host fd beside the context's; ``callback(fd, revents)`` when ready."""
        if fd in self.events or fd in self._foreign:
            raise ValueError(f"{self.name}: fd {fd} is already watched")
        self._check_attach(fd)
        self._foreign[fd] = (events, callback)
        self._kset(fd, 0, events)

    def unwatch(self, fd: int) -> None:
        try:
            events, _cb = self._foreign.pop(fd)
        except KeyError:
            raise UnknownFdError(fd, "unwatch", self.name) from None
        self._closed_in_pass.add(fd)
        self._kset(fd, events, 0)

    # -- running -------------------------------------------------------------------------

    def _reap_refused(self) -> None:
        for fd in list(self._refused):
            logger.error(
                "%s: fd %d cannot be watched (select() handles fds below 1024 only); "
                "closing that connection -- use the poll or epoll loop for more fds",
                self.name,
                fd,
            )
            # POLLNVAL (an fd the loop cannot use) closes the connection; its DEL
            # takes the fd off _refused.
            self.context.service_fd(fd, POLLNVAL)
            if fd in self._refused:  # not a connection (the context kept it): forget it
                self._refused.remove(fd)
                self.events.pop(fd, None)

    def run_once(self, timeout_ms: int | None = None) -> int:
        """Wait up to ``timeout_ms`` (None: as long as the context allows) and service.

        Returns the number of ready fds handled (the context's and the host's).
        """
        ctx = self.context
        if self._refused:
            self._reap_refused()
        wait = ctx.next_timeout()
        if wait is None or (timeout_ms is not None and 0 <= timeout_ms < wait):
            wait = timeout_ms
        ready = self._kwait(None if wait is None or wait < 0 else wait / 1000.0)
        closed = self._closed_in_pass
        closed.clear()
        self._servicing = True
        handled = 0
        try:
            for fd, revents in ready:
                if fd in closed:
                    continue  # closed (maybe reused) earlier in this pass: stale
                if fd in self.events:
                    ctx.service_fd(fd, revents)
                    handled += 1
                else:
                    entry = self._foreign.get(fd)
                    if entry is not None:
                        entry[1](fd, revents)
                        handled += 1
            ctx.service_pending()
        finally:
            self._servicing = False
        if self._refused:
            self._reap_refused()
        return handled

    def run_forever(self) -> None:
        """:meth:`run_once` until :meth:`stop`."""
        self._stopping = False
        while not self._stopping:
            self.run_once(None)

    def stop(self) -> None:
        """End :meth:`run_forever` after the current pass; from any thread."""
        self._stopping = True
        if threading.get_ident() != self._thread:
            self.context.cancel_service()  # wakes the wait (EVENT_WAIT_CANCELLED)

    def close(self) -> None:
        """Detach from the context and free the kernel object."""
        if self._attached:
            self._attached = False
            self.context.set_poll_sink(None)
        self.events.clear()
        self._foreign.clear()
        self._kclose()

    def __enter__(self) -> ArrayLoop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
