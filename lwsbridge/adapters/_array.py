"""The host-owned array loops (select, poll, epoll): one base, three kernel backends.

The context's ADD/DEL/CHANGE reports go straight to one kernel object: the old mask
each report carries says whether to register, modify or unregister, so the loop
keeps no copy of the interest set.  An fd with no events is not in the kernel set,
so a hung-up socket whose reading is paused does not make the wait return at once
for ever.  Host fds can be watched beside the context's with :meth:`ArrayLoop.watch`.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Callable

from lwsbridge.adapters._base import BOTH, KEEP, POLLNVAL, TROUBLE, PassLoop, UnknownFdError
from lwsbridge.log import logger
from lwsbridge.vocabulary import Serviceable

__all__ = ["ArrayLoop", "ForeignCallback"]

#: ``callback(fd, revents)`` for a host fd watched with :meth:`ArrayLoop.watch`
ForeignCallback = Callable[[int, int], None]


class ArrayLoop(PassLoop):
    """Base of SelectLoop/PollLoop/EpollLoop; subclasses supply the ``_k*`` backend."""

    name = "array"
    #: an add_fd that returns has the fd in the kernel set (a failure raises), so the
    #: context may read a socket it just accepted without waiting a round (select: no,
    #: it takes an fd above FD_SETSIZE and refuses it later, see ``_refuse``)
    add_is_final = True

    def __init__(self, context: Serviceable) -> None:
        super().__init__(context)
        self._foreign: dict[int, tuple[int, ForeignCallback]] = {}
        self._refused: list[int] = []
        for fd, _events in context.fds:
            self._check_attach(fd)
        self._kopen()
        self._attach()

    # -- the kernel backend (subclasses) -------------------------------------------------

    def _kopen(self) -> None:
        raise NotImplementedError

    def _kclose(self) -> None:
        raise NotImplementedError

    def _kset(self, fd: int, old: int, new: int) -> None:
        """Make the kernel watch ``new`` (0: nothing) where it watched ``old``.

        Raises KeyError when ``old`` is not what the kernel has for ``fd``.
        """
        raise NotImplementedError

    def _kwait(self, timeout: float | None) -> list[tuple[int, int]]:
        """Wait up to ``timeout`` seconds; ready ``(fd, revents)`` in pollfd bits."""
        raise NotImplementedError

    def _check_attach(self, fd: int) -> None:
        """Refuse (raise) an fd this backend cannot watch, before anything is attached."""

    def _refuse(self, fd: int) -> bool:
        """True when the backend cannot watch ``fd`` (select's FD_SETSIZE)."""
        return False

    def _release(self) -> None:
        self._foreign.clear()
        self._kclose()

    # -- the poll sink -------------------------------------------------------------------

    def add_fd(self, fd: int, events: int) -> None:
        if fd in self._foreign:
            raise ValueError(f"{self.name}: ADD for fd {fd}, which is already watched")
        if self._refuse(fd):
            # Not watchable here: the connection is closed (service_fd with POLLNVAL)
            # as soon as the context is not in the middle of a call.
            self._refused.append(fd)
            return
        self._set(fd, "ADD", 0, events)

    def del_fd(self, fd: int, events: int) -> None:
        self._gone(fd)
        if fd in self._refused:
            self._refused.remove(fd)
        else:
            self._set(fd, "DEL", events, 0)

    def change_fd(self, fd: int, old: int, new: int) -> None:
        if fd not in self._refused:
            self._set(fd, "CHANGE", old, new)

    def _set(self, fd: int, what: str, old: int, new: int) -> None:
        try:
            self._kset(fd, old, new)
        except (KeyError, OSError) as exc:
            self._kfailed(exc, fd, what)

    def _kfailed(self, exc: KeyError | OSError, fd: int, what: str) -> None:
        """Raise what a failed ``_kset`` means for the sink call ``what`` (from ``except``)."""
        if isinstance(exc, FileExistsError):
            raise ValueError(f"{self.name}: ADD for fd {fd}, which is already watched") from None
        # ENOENT: not in the kernel set; EBADF: not even open (closed before its DEL)
        if isinstance(exc, KeyError) or exc.errno in (errno.ENOENT, errno.EBADF):
            raise UnknownFdError(fd, what, self.name) from None
        raise exc

    # -- host fds ------------------------------------------------------------------------

    def watch(self, fd: int, events: int, callback: ForeignCallback) -> None:
        """Watch a host fd beside the context's; ``callback(fd, revents)`` when ready."""
        if fd in self._foreign or any(f == fd for f, _ in self.context.fds):
            raise ValueError(f"{self.name}: fd {fd} is already watched")
        self._check_attach(fd)
        self._foreign[fd] = (events, callback)
        self._kset(fd, 0, events)

    def unwatch(self, fd: int) -> None:
        try:
            events, _cb = self._foreign.pop(fd)
        except KeyError:
            raise UnknownFdError(fd, "unwatch", self.name) from None
        self._gone(fd)
        # The host may have closed it before unwatch: the kernel dropped it already.
        with contextlib.suppress(OSError):
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
        foreign = self._foreign
        service_fd = ctx.service_fd
        handled = 0
        for fd, revents in ready:
            if fd in closed:
                continue  # closed (maybe reused) earlier in this pass: stale
            if foreign and fd in foreign:
                foreign[fd][1](fd, revents)
                handled += 1
                continue
            # _base.fold, inlined: this is the hot path of ctx.service()
            rev = revents & KEEP
            if not rev:
                if not revents & TROUBLE:
                    continue
                rev = BOTH
            service_fd(fd, rev)
            handled += 1
        ctx.service_pending()
        if self._refused:
            self._reap_refused()
        return handled
