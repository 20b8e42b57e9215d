"""``run_trio``: the context inside a trio nursery.

One task per fd and direction waits with ``trio.lowlevel.wait_readable`` /
``wait_writable`` and services the fd; a change of events cancels or starts those
tasks.  Before a DEL (the context closes the fd right after it)
``trio.lowlevel.notify_closing(fd)`` wakes any waiter.  The context's next timeout
is the deadline of one cancel scope, moved after every service call.
:meth:`Context.cancel_service` works from other threads: its wakeup pipe is one of
the fds watched.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from lwsbridge.adapters._common import POLLIN, POLLOUT, UnknownFdError

if TYPE_CHECKING:
    import threading

    import trio  # type: ignore[import-not-found, unused-ignore]

    from lwsbridge.context import Context

__all__ = ["TrioAdapter", "run_trio"]


class _Fd:
    """One watched fd: its events and the cancel scope of each direction's task."""

    __slots__ = ("events", "fd", "scopes")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.events = 0
        self.scopes: dict[int, trio.CancelScope] = {}


class TrioAdapter:
    """The poll sink that :func:`run_trio` attaches; tasks live in ``nursery``."""

    name = "trio"

    def __init__(self, context: Context, nursery: trio.Nursery) -> None:
        import trio  # type: ignore[import-not-found, unused-ignore]

        self._trio = trio
        self.context = context
        self.nursery = nursery
        self.fds: dict[int, _Fd] = {}
        self._timer_scope: trio.CancelScope | None = None
        self._attached = True
        self._done = trio.Event()
        context.set_poll_sink(self)
        nursery.start_soon(self._timer_task)

    @property
    def events(self) -> dict[int, int]:
        return {fd: rec.events for fd, rec in self.fds.items()}

    # -- the poll sink -------------------------------------------------------------------

    def add_fd(self, fd: int, events: int) -> None:
        if fd in self.fds:
            raise ValueError(f"trio: ADD for fd {fd}, which is already watched")
        rec = _Fd(fd)
        self.fds[fd] = rec
        self._set(rec, events)

    def del_fd(self, fd: int, events: int = 0) -> None:
        rec = self.fds.pop(fd, None)
        if rec is None:
            raise UnknownFdError(fd, "DEL", self.name)
        self._set(rec, 0)
        self._trio.lowlevel.notify_closing(fd)

    def change_fd(self, fd: int, old: int, events: int) -> None:
        rec = self.fds.get(fd)
        if rec is None:
            raise UnknownFdError(fd, "CHANGE", self.name)
        self._set(rec, events)

    def _set(self, rec: _Fd, events: int) -> None:
        old, rec.events = rec.events, events
        for bit in (POLLIN, POLLOUT):
            if (old ^ events) & bit:
                if events & bit:
                    scope = self._trio.CancelScope()
                    rec.scopes[bit] = scope
                    self.nursery.start_soon(self._watch, rec, bit, scope)
                else:
                    gone = rec.scopes.pop(bit, None)
                    if gone is not None:
                        gone.cancel()

    # -- tasks ---------------------------------------------------------------------------

    async def _watch(self, rec: _Fd, bit: int, scope: trio.CancelScope) -> None:
        lowlevel = self._trio.lowlevel
        wait = lowlevel.wait_readable if bit == POLLIN else lowlevel.wait_writable
        fd = rec.fd
        with scope:
            while rec.scopes.get(bit) is scope:
                try:
                    await wait(fd)
                except self._trio.ClosedResourceError:
                    return  # notify_closing: the fd is going away
                if rec.scopes.get(bit) is not scope:
                    return
                self.context.service_fd(fd, bit)
                self._reschedule()

    async def _timer_task(self) -> None:
        trio = self._trio
        while self._attached:
            with trio.CancelScope() as scope:
                self._timer_scope = scope
                self._reschedule()
                await trio.sleep_forever()
            self._timer_scope = None
            if not self._attached:
                return
            if scope.cancelled_caught:
                self.context.service_pending()

    def _reschedule(self) -> None:
        scope = self._timer_scope
        if scope is None:
            return
        nt = self.context.next_timeout()
        scope.deadline = math.inf if nt is None else self._trio.current_time() + nt / 1000.0

    def close(self) -> None:
        """Detach: cancel every task this adapter started."""
        if not self._attached:
            return
        self._attached = False
        for rec in self.fds.values():
            for scope in rec.scopes.values():
                scope.cancel()
            rec.scopes.clear()
        self.fds.clear()
        if self._timer_scope is not None:
            self._timer_scope.cancel()
        self.context.set_poll_sink(None)


async def run_trio(
    context: Context,
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
            while not stop_event.is_set():
                await trio.sleep(0.1)
        finally:
            adapter.close()
    return None
