"""``SelectLoop``: the context on ``select.select``.

select() cannot watch fds from FD_SETSIZE (1024) up.  So that a busy server answers
503 instead of accepting connections it cannot watch, attaching lowers the context's
``max_connections`` to what fits below FD_SETSIZE (FD_SETSIZE less the fds open then
and a margin for the host; :func:`connection_cap`), and detaching puts the old limit
back.  An fd at or above FD_SETSIZE is still refused with an error naming it: at
attach time :class:`SelectLoop` raises ``ValueError``; a connection accepted later on
such an fd (the host opened more files meanwhile) is logged and closed (the context
gets POLLNVAL for it), and the loop goes on.  Use :class:`~lwsbridge.adapters.poll_loop.PollLoop`
or :class:`~lwsbridge.adapters.epoll_loop.EpollLoop` beyond that.
"""

from __future__ import annotations

import os
import select
import threading
from typing import Protocol, runtime_checkable

from lwsbridge.adapters._array import ArrayLoop, ForeignCallback
from lwsbridge.adapters._base import POLLIN, POLLOUT, run_until
from lwsbridge.log import NOTICE, logger
from lwsbridge.vocabulary import Serviceable

__all__ = ["FD_SETSIZE", "ForeignCallback", "SelectLoop", "connection_cap", "serve"]

FD_SETSIZE = 1024
#: fds below FD_SETSIZE kept free for the host (its files, a resolver, a 503's socket)
HEADROOM = 16


@runtime_checkable
class _Limited(Protocol):
    """A context with a settable connection limit (``Context.max_connections``)."""

    max_connections: int


def connection_cap() -> int:
    """How many connections fit below FD_SETSIZE with the fds open now.

    The kernel gives a new socket the lowest free fd, so with ``open`` fds in use,
    ``n`` connections reach fd ``open + n - 1`` at most.
    """
    try:
        in_use = len(os.listdir("/proc/self/fd")) - 1  # less the listing's own fd
    except OSError:
        in_use = 3
    return max(1, FD_SETSIZE - in_use - HEADROOM)


class SelectLoop(ArrayLoop):
    """``SelectLoop(context)``: ``run_once(timeout_ms)``, ``run_forever()``, ``stop()``."""

    name = "select"
    add_is_final = False  # an fd from FD_SETSIZE up is taken, then refused (POLLNVAL)

    def _attach(self) -> None:
        self._lowered: tuple[int, int] | None = None
        ctx = self.context
        if isinstance(ctx, _Limited):
            cap = connection_cap()
            old = ctx.max_connections
            if old > cap:
                ctx.max_connections = cap
                self._lowered = (old, cap)
                logger.log(
                    NOTICE,
                    "select: connection limit %d (was %d): select() watches fds below "
                    "FD_SETSIZE (%d) only; above it new connections get a 503 -- use the "
                    "poll or epoll loop for more",
                    cap,
                    old,
                    FD_SETSIZE,
                )
        super()._attach()

    def _release(self) -> None:
        super()._release()
        ctx = self.context
        if self._lowered is not None and isinstance(ctx, _Limited):
            old, cap = self._lowered
            self._lowered = None
            if ctx.max_connections == cap:  # not changed by the host meanwhile
                ctx.max_connections = old

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
