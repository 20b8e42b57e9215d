"""``AsyncioAdapter``: the context on an asyncio loop (uvloop too).

Each fd the context watches becomes ``loop.add_reader``/``loop.add_writer``; the
context's next timeout is one ``loop.call_later`` handle, followed after every
service call.  Everything runs in the loop's thread, which must be the context's.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from lwsbridge.adapters._base import POLLIN, POLLOUT, Adapter, TimerFollower, UnknownFdError
from lwsbridge.vocabulary import Serviceable

if TYPE_CHECKING:
    import asyncio

__all__ = ["AsyncioAdapter", "run_asyncio", "serve"]


class AsyncioAdapter(Adapter):
    """``AsyncioAdapter(context, loop=None)``: attach now, ``close()`` to detach.

    ``loop`` defaults to the running loop.
    """

    name = "asyncio"

    def __init__(self, context: Serviceable, loop: asyncio.AbstractEventLoop | None = None) -> None:
        import asyncio

        super().__init__(context)
        self.loop = loop if loop is not None else asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._follower = TimerFollower(context, self.loop.time, self._arm, self._disarm)
        self._attach()
        self._follower.follow()

    # -- the poll sink -------------------------------------------------------------------

    def add_fd(self, fd: int, events: int) -> None:
        self._set(fd, "ADD", 0, events)

    def del_fd(self, fd: int, events: int) -> None:
        self._set(fd, "DEL", events, 0)

    def change_fd(self, fd: int, old: int, new: int) -> None:
        self._set(fd, "CHANGE", old, new)

    def _set(self, fd: int, what: str, old: int, new: int) -> None:
        # asyncio's remove_*() say False for an fd it has no reader/writer for;
        # uvloop's say None always, so there a broken contract goes unnoticed.
        loop = self.loop
        changed = old ^ new
        if changed & POLLIN:
            if new & POLLIN:
                loop.add_reader(fd, self._ready, fd, POLLIN)
            elif loop.remove_reader(fd) is False:
                raise UnknownFdError(fd, what, self.name)
        if changed & POLLOUT:
            if new & POLLOUT:
                loop.add_writer(fd, self._ready, fd, POLLOUT)
            elif loop.remove_writer(fd) is False:
                raise UnknownFdError(fd, what, self.name)

    # -- servicing -----------------------------------------------------------------------

    def _ready(self, fd: int, revents: int) -> None:
        # A removed reader's handle is cancelled, so a DEL'd fd never gets here.
        self.context.service_fd(fd, revents)
        self._follower.follow()

    def _arm(self, seconds: float) -> None:
        self._timer = self.loop.call_later(seconds, self._follower.fired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _release(self) -> None:
        self._follower.close()


async def run_asyncio(context: Serviceable, stop_event: threading.Event | None = None) -> None:
    """Serve ``context`` on the running loop until cancelled (or ``stop_event`` is set)."""
    import asyncio

    adapter = AsyncioAdapter(context)
    try:
        while stop_event is None or not stop_event.is_set():
            await asyncio.sleep(0.1 if stop_event is not None else 3600)
    finally:
        adapter.close()


def serve(context: Serviceable, stop_event: threading.Event | None = None) -> None:
    """Serve ``context`` on a new asyncio loop in this thread until ``stop_event`` is set."""
    import asyncio

    asyncio.run(run_asyncio(context, stop_event))
