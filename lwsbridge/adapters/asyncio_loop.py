"""``AsyncioAdapter``: the context on an asyncio loop (uvloop too).

Each fd the context watches becomes ``loop.add_reader``/``loop.add_writer``; the
context's next timeout is one ``loop.call_at`` handle, recomputed after every
service call.  Everything runs in the loop's thread, which must be the context's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lwsbridge.adapters._common import POLLIN, POLLOUT, UnknownFdError

if TYPE_CHECKING:
    import asyncio
    import threading

    from lwsbridge.context import Context

__all__ = ["AsyncioAdapter", "run_asyncio"]


class AsyncioAdapter:
    """``AsyncioAdapter(context, loop=None)``: attach now, ``close()`` to detach.

    ``loop`` defaults to the running loop.
    """

    name = "asyncio"

    def __init__(self, context: Context, loop: asyncio.AbstractEventLoop | None = None) -> None:
        import asyncio

        self.context = context
        self.loop = loop if loop is not None else asyncio.get_running_loop()
        self.events: dict[int, int] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._attached = True
        context.set_poll_sink(self)
        self._reschedule()

    # -- the poll sink -------------------------------------------------------------------

    def add_fd(self, fd: int, events: int) -> None:
        if fd in self.events:
            raise ValueError(f"asyncio: ADD for fd {fd}, which is already watched")
        self.events[fd] = 0
        self._set(fd, 0, events)

    def del_fd(self, fd: int, events: int = 0) -> None:
        try:
            old = self.events.pop(fd)
        except KeyError:
            raise UnknownFdError(fd, "DEL", self.name) from None
        self._set(fd, old, 0)

    def change_fd(self, fd: int, old: int, events: int) -> None:
        try:
            old = self.events[fd]
        except KeyError:
            raise UnknownFdError(fd, "CHANGE", self.name) from None
        self._set(fd, old, events)

    def _set(self, fd: int, old: int, new: int) -> None:
        loop = self.loop
        if fd in self.events:
            self.events[fd] = new
        changed = old ^ new
        if changed & POLLIN:
            if new & POLLIN:
                loop.add_reader(fd, self._ready, fd, POLLIN)
            else:
                loop.remove_reader(fd)
        if changed & POLLOUT:
            if new & POLLOUT:
                loop.add_writer(fd, self._ready, fd, POLLOUT)
            else:
                loop.remove_writer(fd)

    # -- servicing -----------------------------------------------------------------------

    def _ready(self, fd: int, revents: int) -> None:
        if fd in self.events:
            self.context.service_fd(fd, revents)
        self._reschedule()

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = None
        self.context.service_pending()
        self._reschedule()

    def _reschedule(self) -> None:
        """Point the one timer handle at the context's next timeout (if it moved)."""
        if not self._attached:
            return
        nt = self.context.next_timeout()
        if nt is None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = self._timer_at = None
            return
        at = self.loop.time() + nt / 1000.0
        if self._timer is not None and self._timer_at is not None:
            if nt > 0 and abs(self._timer_at - at) < 0.001:
                return
            if nt == 0 and self._timer_at <= at:
                return
            self._timer.cancel()
        self._timer_at = at
        self._timer = self.loop.call_at(at, self._fire)

    def close(self) -> None:
        """Detach: remove every reader/writer and the timer."""
        if not self._attached:
            return
        self._attached = False
        for fd, events in list(self.events.items()):
            self._set(fd, events, 0)
        self.events.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_at = None
        self.context.set_poll_sink(None)


async def run_asyncio(context: Context, stop_event: threading.Event | None = None) -> None:
    """Serve ``context`` on the running loop until cancelled (or ``stop_event`` is set)."""
    import asyncio

    adapter = AsyncioAdapter(context)
    try:
        while stop_event is None or not stop_event.is_set():
            await asyncio.sleep(0.1 if stop_event is not None else 3600)
    finally:
        adapter.close()
