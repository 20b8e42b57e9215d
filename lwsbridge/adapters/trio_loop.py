"""``run_trio``: the context inside a trio nursery.

Where there is epoll, the context's fds live in one nested epoll set
(``adapters/_nested.py``) and one task waits with ``trio.lowlevel.wait_readable`` for
its fd, then services every fd ready in it (the stale-fd guard skips an fd DEL'd
earlier in the batch).  Measured, trio's per-fd machinery -- a task, a cancel scope
and an epoll re-arm per wait, a cancel and ``notify_closing`` per close -- made a
close storm of 19,900 connections take 5.4 s; one task for all of them costs a
batch of ``epoll.poll`` per pass instead.  Without epoll: one task per fd and
direction waits with ``wait_readable`` / ``wait_writable`` and services the fd; a
change of events cancels or starts those tasks, and before a DEL (the context closes
the fd right after it) ``trio.lowlevel.notify_closing(fd)`` wakes any waiter.  The
context's next timeout is the deadline of one cancel scope, moved after every
service call.  ``cancel_service()`` works from other threads: its wakeup pipe is one
of the fds watched.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
from typing import TYPE_CHECKING

from lwsbridge.adapters._base import POLLIN, POLLOUT, Adapter, UnknownFdError
from lwsbridge.adapters._nested import AVAILABLE as NESTED
from lwsbridge.adapters._nested import NestedEpoll
from lwsbridge.vocabulary import Serviceable

if TYPE_CHECKING:
    import trio  # type: ignore[import-not-found, unused-ignore]

__all__ = ["TrioAdapter", "run_trio", "serve"]


class TrioAdapter(Adapter):
    """The poll sink that :func:`run_trio` attaches; tasks live in ``nursery``."""

    name = "trio"

    def __init__(self, context: Serviceable, nursery: trio.Nursery) -> None:
        import trio  # type: ignore[import-not-found, unused-ignore]

        super().__init__(context)
        self._trio = trio
        self.nursery = nursery
        #: the running tasks' cancel scopes, by (fd, direction): the library's registrations
        self._scopes: dict[tuple[int, int], trio.CancelScope] = {}
        self._timer_scope: trio.CancelScope | None = None
        #: the timer scope's deadline as last set (kept here: trio's setter is costly)
        self._deadline = math.inf
        #: the nested epoll set holding the context's fds (None: one task per fd)
        self._ep = NestedEpoll() if NESTED else None
        try:
            self._attach()
        except BaseException:
            self._drop_nested()
            raise
        if self._ep is not None:
            nursery.start_soon(self._nested_task, self._ep)
        nursery.start_soon(self._timer_task)

    @property
    def nested_fd(self) -> int | None:
        """The epoll fd trio waits on for all the context's fds (None: one task per fd)."""
        return self._ep.fd if self._ep is not None else None

    # -- the poll sink -------------------------------------------------------------------

    def add_fd(self, fd: int, events: int) -> None:
        if self._ep is not None:
            self._ep.set(fd, 0, events, self.name, "ADD")
            return
        self._set(fd, "ADD", 0, events)

    def del_fd(self, fd: int, events: int) -> None:
        if self._ep is not None:
            self._ep.drop(fd, events, self.name)
            return
        self._set(fd, "DEL", events, 0)
        if self._attached:  # on detach the fd stays open: nothing is closing
            self._trio.lowlevel.notify_closing(fd)

    def change_fd(self, fd: int, old: int, new: int) -> None:
        if self._ep is not None:
            self._ep.set(fd, old, new, self.name, "CHANGE")
            return
        self._set(fd, "CHANGE", old, new)

    def _set(self, fd: int, what: str, old: int, new: int) -> None:
        for bit in (POLLIN, POLLOUT):
            if (old ^ new) & bit:
                if new & bit:
                    scope = self._scopes[fd, bit] = self._trio.CancelScope()
                    self.nursery.start_soon(self._watch, fd, bit, scope)
                else:
                    gone = self._scopes.pop((fd, bit), None)
                    if gone is None:
                        raise UnknownFdError(fd, what, self.name)
                    gone.cancel()

    # -- tasks ---------------------------------------------------------------------------

    async def _watch(self, fd: int, bit: int, scope: trio.CancelScope) -> None:
        lowlevel = self._trio.lowlevel
        wait = lowlevel.wait_readable if bit == POLLIN else lowlevel.wait_writable
        key = (fd, bit)
        scopes = self._scopes
        with scope:
            while scopes.get(key) is scope:
                try:
                    await wait(fd)
                except self._trio.ClosedResourceError:
                    return  # notify_closing: the fd is going away
                if scopes.get(key) is not scope:
                    return  # stopped (maybe closed and reused) while this task waited
                self.context.service_fd(fd, bit)
                self._reschedule()

    async def _nested_task(self, ep: NestedEpoll) -> None:
        wait = self._trio.lowlevel.wait_readable
        while self._ep is ep:
            try:
                await wait(ep.fd)
            except self._trio.ClosedResourceError:
                return  # notify_closing: detached
            if self._ep is not ep:
                return
            ep.service(self.context)
            self._reschedule()

    async def _timer_task(self) -> None:
        trio = self._trio
        while self._attached:
            with trio.CancelScope() as scope:
                self._timer_scope = scope
                self._deadline = math.inf
                self._reschedule()
                await trio.sleep_forever()
            self._timer_scope = None
            if not self._attached:
                return
            if scope.cancelled_caught:
                self.context.service_pending()

    def _reschedule(self) -> None:
        """The timer follower, trio's way: the timer task's deadline is the timeout.

        The deadline only ever moves earlier here.  A later one is left as it is: the
        timer task then wakes early once, services nothing due and sets the right
        deadline in its new scope.  trio's deadline setter re-files the scope (a
        context manager and a heap update), and after most service calls the timeout
        is unchanged or later (none, or a keepalive pushed back), so this saves that
        on nearly every message.
        """
        scope = self._timer_scope
        if scope is None:
            return
        nt = self.context.next_timeout()
        if nt is None:
            return
        deadline = self._trio.current_time() + nt / 1000.0
        if deadline < self._deadline:
            self._deadline = deadline
            scope.deadline = deadline

    def _release(self) -> None:
        for scope in self._scopes.values():
            scope.cancel()
        self._scopes.clear()
        if self._timer_scope is not None:
            self._timer_scope.cancel()
        self._drop_nested()

    def _drop_nested(self) -> None:
        ep = self._ep
        if ep is None:
            return
        self._ep = None
        # Wakes the nested task (ClosedResourceError) and makes trio forget the fd
        # before it is closed; outside trio.run (RuntimeError) nothing waits on it.
        with contextlib.suppress(RuntimeError):
            self._trio.lowlevel.notify_closing(ep.fd)
        ep.close()


async def run_trio(
    context: Serviceable,
    nursery: trio.Nursery | None = None,
    stop_event: threading.Event | None = None,
) -> TrioAdapter | None:
    """Serve ``context`` with trio.

    With a ``nursery``: attach, start the tasks in it and return the
    :class:`TrioAdapter` at once (``close()`` it to detach; cancelling the nursery
    ends it too).  Without: serve in a nursery of its own until cancelled (or until
    ``stop_event``, a ``threading.Event``, is set), detach, and return None.
    """
    import trio  # type: ignore[import-not-found, unused-ignore]

    if nursery is not None:
        return TrioAdapter(context, nursery)
    async with trio.open_nursery() as own:
        adapter = TrioAdapter(context, own)
        try:
            if stop_event is None:
                await trio.sleep_forever()
            while stop_event is not None and not stop_event.is_set():
                await trio.sleep(0.1)
        finally:
            adapter.close()
    return None


def serve(context: Serviceable, stop_event: threading.Event | None = None) -> None:
    """Serve ``context`` under ``trio.run`` in this thread until ``stop_event`` is set."""
    import trio  # type: ignore[import-not-found, unused-ignore]

    trio.run(functools.partial(run_trio, context, None, stop_event))
