"""What every adapter shares: attach/detach, the revents rule, the stale-fd guard,
run/stop, the timer follower and the error for an fd the loop does not know.

An adapter keeps no table of what the context watches: each sink call carries the
old mask (``add_fd``: none, ``change_fd``: old and new, ``del_fd``: the mask it had),
which is all a loop library needs to go from one registration to the next.  A
library's own "no such registration" answer becomes :class:`UnknownFdError`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from lwsbridge.core.pollset import POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT
from lwsbridge.vocabulary import Serviceable

__all__ = [
    "BOTH",
    "KEEP",
    "POLLERR",
    "POLLHUP",
    "POLLIN",
    "POLLNVAL",
    "POLLOUT",
    "TROUBLE",
    "Adapter",
    "PassLoop",
    "TimerFollower",
    "UnknownFdError",
    "fold",
    "run_until",
]

#: POLLIN | POLLOUT: the bits an adapter gives to ``service_fd`` (see :func:`fold`)
BOTH = POLLIN | POLLOUT
#: what :func:`fold` keeps: the directions, and POLLNVAL (an fd the loop cannot use)
KEEP = BOTH | POLLNVAL
TROUBLE = POLLERR | POLLHUP


def fold(revents: int) -> int:
    """The revents rule: kernel pollfd bits -> what ``service_fd`` gets from every loop.

    POLLERR and POLLHUP count as ready in the directions the fd is watched for --
    what CPython's selectors do, and all that asyncio, gevent and trio can see (they
    wake the waiting reader or writer).  Linux already reports a failed or hung-up
    socket as readable and writable within its mask, so those bits are kept and the
    trouble bits dropped; trouble with no direction at all becomes both directions,
    so that a read or a send meets the error instead of the wait spinning on it.
    POLLNVAL (the fd is not usable by this loop) is kept: the context closes that
    connection.
    """
    ready = revents & KEEP
    if ready or not revents & TROUBLE:
        return ready
    return BOTH


class UnknownFdError(LookupError):
    """A DEL or CHANGE for an fd the adapter was never told about (a broken contract)."""

    def __init__(self, fd: int, what: str, adapter: str) -> None:
        super().__init__(f"{adapter}: {what} for fd {fd}, which this adapter does not watch")
        self.fd = fd


class Adapter:
    """Attach to a :class:`~lwsbridge.vocabulary.Serviceable` as its poll sink; detach once.

    Subclasses implement the sink (``add_fd``/``del_fd``/``change_fd``) and
    :meth:`_release` (drop the loop library's registrations on close).
    """

    name = "adapter"

    def __init__(self, context: Serviceable) -> None:
        self.context = context
        self._attached = False
        self._thread = threading.get_ident()

    def _attach(self) -> None:
        """Become the sink (the context replays its fds as ADDs); undo it if that fails."""
        self._attached = True
        try:
            self.context.set_poll_sink(self)
        except BaseException:
            self._attached = False
            self.context.set_poll_sink(None)
            self._release()
            raise

    def _release(self) -> None:
        """Drop every registration in the loop library (no sink call comes after this)."""

    @property
    def events(self) -> dict[int, int]:
        """``fd -> events`` this adapter watches for the context (empty once detached).

        Read from the context (``Serviceable.fds``): the adapter keeps no copy.
        """
        return dict(self.context.fds) if self._attached else {}

    def close(self) -> None:
        """Detach from the context and drop this adapter's registrations; idempotent."""
        if not self._attached:
            return
        self._attached = False
        # DEL every fd first, so the library forgets them while they are open.
        for fd, events in self.context.fds:
            self.del_fd(fd, events)
        self.context.set_poll_sink(None)
        self._release()

    # the sink, per library
    def add_fd(self, fd: int, events: int) -> None:
        raise NotImplementedError

    def del_fd(self, fd: int, events: int) -> None:
        raise NotImplementedError

    def change_fd(self, fd: int, old: int, new: int) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PassLoop(Adapter):
    """A loop that waits, then services a batch of ready fds (array loops, zmq).

    The stale-fd guard: an fd DEL'd during a pass was closed, and its number may
    already belong to a new connection accepted in the same pass, so what the wait
    said about it is not serviced.  :meth:`run_forever` / :meth:`stop` run passes.
    """

    def __init__(self, context: Serviceable) -> None:
        super().__init__(context)
        self._closed_in_pass: set[int] = set()
        self._stopping = False

    def _gone(self, fd: int) -> None:
        """Call from ``del_fd``: ``fd`` is stale for the rest of this pass."""
        self._closed_in_pass.add(fd)

    def run_once(self, timeout_ms: int | None = None) -> Any:
        raise NotImplementedError

    def timeout(self, user_ms: int | None = None) -> int | None:
        """The timeout for ``poller.poll``: the smaller of ``user_ms`` and the context's.

        Runs the context's ``service_pending()`` first when it is due now.  None: no limit.
        """
        ctx = self.context
        nt = ctx.next_timeout()
        if nt == 0:
            ctx.service_pending()
            nt = ctx.next_timeout()
        if nt is None:
            return user_ms
        if user_ms is None or user_ms < 0:
            return nt
        return min(nt, user_ms)

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


def run_until(loop: PassLoop, stop_event: threading.Event | None) -> None:
    """Passes until ``stop_event`` is set (looked at every 100 ms), then close ``loop``."""
    try:
        if stop_event is None:
            loop.run_forever()
        while stop_event is not None and not stop_event.is_set():
            loop.run_once(100)
    finally:
        loop.close()


class TimerFollower:
    """One library timer kept at the context's ``next_timeout()``.

    ``arm(seconds)`` starts the library's timer (which must call :meth:`fired`),
    ``disarm()`` stops it.  :meth:`follow` is called after every service call and
    re-arms only when the deadline moved by a millisecond or more (or is due now).
    """

    __slots__ = ("_arm", "_at", "_clock", "_context", "_disarm", "_on")

    def __init__(
        self,
        context: Serviceable,
        clock: Callable[[], float],
        arm: Callable[[float], object],
        disarm: Callable[[], object],
    ) -> None:
        self._context = context
        self._clock = clock
        self._arm = arm
        self._disarm = disarm
        self._at: float | None = None
        self._on = True

    def follow(self) -> None:
        if not self._on:
            return
        nt = self._context.next_timeout()
        at = self._at
        if nt is None:
            if at is not None:
                self._at = None
                self._disarm()
            return
        when = self._clock() + nt / 1000.0
        if at is not None:
            if (nt > 0 and abs(at - when) < 0.001) or (nt == 0 and at <= when):
                return
            self._disarm()
        self._at = when
        self._arm(nt / 1000.0)

    def fired(self) -> None:
        """The library's timer went off: run the context's timers, then follow again."""
        self._at = None
        self._context.service_pending()
        self.follow()

    def close(self) -> None:
        self._on = False
        if self._at is not None:
            self._at = None
            self._disarm()
