"""The built-in loop behind ``Context.service()`` (lws ``lws_service``).

It is the best array loop there is (epoll, else poll, else select), found by name in
the :mod:`lwsbridge.loops` registry and made on first use, so that a context that is
driven by an adapter never makes one.  Making it needs an fd (epoll's, or the import
of its module): in a process with none free (EMFILE/ENFILE) that is the host's
condition, not a bug, so it is logged once, the round is served with a one-shot
``select.poll()`` (or ``select()``), which needs no fd, and the next round tries again.
"""

from __future__ import annotations

import errno
import select
from collections.abc import Callable
from typing import Any

from lwsbridge.core.pollset import POLLIN, POLLOUT
from lwsbridge.log import NOTICE, logger
from lwsbridge.loops import best_array_loop
from lwsbridge.loops import load as load_loop
from lwsbridge.vocabulary import Serviceable

__all__ = ["BuiltinLoop"]


class _OwnPass:
    """The context as the built-in loop's array loop sees it.

    That loop runs only inside ``Context.service()``, which has checked the thread
    already, so its calls of every pass, ``next_timeout``, ``service_pending`` and
    ``service_fd`` for each ready fd, go to the service's own (the context's, less the
    check and a call level); the rest is the context's.  The service's ``service_fd``
    guards itself against a bug of ours as the context's does; it takes only the fds
    the context watches, which are all this loop reports besides its host fds (an fd
    closed earlier in the pass is dropped by the loop before it gets there).  Its result
    says whether a connection closed, not the revents left over: the array loop does
    not read it.
    """

    __slots__ = (
        "_context",
        "cancel_service",
        "next_timeout",
        "service_fd",
        "service_pending",
        "set_poll_sink",
    )

    def __init__(
        self,
        context: Serviceable,
        next_timeout: Callable[[], int | None],
        service_pending: Callable[[], None],
        service_fd: Callable[[int, int], int],
    ) -> None:
        self._context = context
        self.next_timeout = next_timeout
        self.service_pending = service_pending
        self.service_fd = service_fd
        self.set_poll_sink = context.set_poll_sink
        self.cancel_service = context.cancel_service

    @property
    def fds(self) -> list[tuple[int, int]]:
        return self._context.fds


class BuiltinLoop:
    __slots__ = ("_context", "_loop", "_name", "_starved", "run_pass")

    def __init__(
        self,
        context: Serviceable,
        *,
        next_timeout: Callable[[], int | None] | None = None,
        service_pending: Callable[[], None] | None = None,
        service_fd: Callable[[int, int], int] | None = None,
    ) -> None:
        """``next_timeout``, ``service_pending`` and ``service_fd``, when given, are the
        context's own without the thread check, for the passes (which only ``service()``
        runs)."""
        if next_timeout is not None and service_pending is not None and service_fd is not None:
            context = _OwnPass(context, next_timeout, service_pending, service_fd)
        self._context = context
        self._name = best_array_loop()
        self._loop: Any = None
        self._starved = False  # running without the loop: logged once
        #: one pass, ``run_pass(timeout_ms)``: :meth:`run_once` until the loop is made,
        #: then the loop's own ``run_once``, so that ``Context.service`` reaches the
        #: array loop without this object's call level in between (once per pass)
        self.run_pass: Callable[[int | None], object] = self.run_once

    def run_once(self, timeout_ms: int | None) -> None:
        loop = self._loop
        if loop is None:
            try:
                loop = self._loop = load_loop(self._name)(self._context)  # attaches as sink
            except OSError as exc:
                if exc.errno not in (errno.EMFILE, errno.ENFILE):
                    raise
                if not self._starved:
                    self._starved = True
                    logger.error(
                        "service(): no free file descriptor to start the %s loop (%s); "
                        "serving with plain poll() until one is free",
                        self._name,
                        exc.strerror,
                    )
                self._run_without_loop(timeout_ms)
                return
            if self._starved:
                self._starved = False
                logger.log(NOTICE, "service(): the %s loop is running now", self._name)
            self.run_pass = loop.run_once
        loop.run_once(timeout_ms)

    def _run_without_loop(self, timeout_ms: int | None) -> None:
        """One round on a one-shot ``select.poll`` (or ``select``): no fd needed."""
        ctx = self._context
        wait = ctx.next_timeout()
        if wait is None or (timeout_ms is not None and 0 <= timeout_ms < wait):
            wait = timeout_ms
        watched = [(fd, ev) for fd, ev in ctx.fds if ev]
        ready: list[tuple[int, int]]
        if hasattr(select, "poll"):
            poller = select.poll()
            for fd, ev in watched:
                poller.register(fd, ev)
            ready = poller.poll(None if wait is None or wait < 0 else wait)
        else:  # no poll(): select(), which needs no fd either
            rl = [fd for fd, ev in watched if ev & POLLIN]
            wl = [fd for fd, ev in watched if ev & POLLOUT]
            r, w, _ = select.select(rl, wl, [], None if wait is None or wait < 0 else wait / 1e3)
            ready = [
                (fd, (POLLIN if fd in r else 0) | (POLLOUT if fd in w else 0)) for fd in {*r, *w}
            ]
        for fd, revents in ready:
            # service_fd() ignores an fd the context closed earlier in this pass.
            ctx.service_fd(fd, revents)
        ctx.service_pending()

    def close(self) -> None:
        if self._loop is not None:
            self._loop.close()
            self._loop = None
            self.run_pass = self.run_once
