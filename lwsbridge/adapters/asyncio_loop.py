"""``AsyncioAdapter``: the context on an asyncio loop (uvloop too).

Where there is epoll, the context's fds live in one nested epoll set
(``adapters/_nested.py``) and one ``loop.add_reader`` on its fd services every fd
ready in it (the stale-fd guard skips an fd DEL'd earlier in the batch): a reader
per fd costs a selector registration, a handle and its scheduling per ready fd in
asyncio's Python layer (cProfile, a 3,000-connection close storm: 135 calls per
closed connection with a reader per fd, the array loops' 100 with the nested set).
Without epoll each fd the context watches becomes ``loop.add_reader`` /
``loop.add_writer``.  The context's next timeout is one ``loop.call_later`` handle,
followed after every service call.  Everything runs in the loop's thread, which must
be the context's.
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING

from lwsbridge.adapters._base import (
    POLLIN,
    POLLOUT,
    Adapter,
    TimerFollower,
    UnknownFdError,
)
from lwsbridge.adapters._nested import AVAILABLE as NESTED
from lwsbridge.adapters._nested import NestedEpoll
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
        #: the nested epoll set holding the context's fds (None: a reader/writer per fd)
        self._ep = NestedEpoll() if NESTED else None
        try:
            if self._ep is not None:
                self.loop.add_reader(self._ep.fd, self._nested_ready)
            self._attach()
        except BaseException:
            self._drop_nested()
            raise
        self._follower.follow()

    @property
    def nested_fd(self) -> int | None:
        """The epoll fd the loop reads for all the context's fds (None: one per fd)."""
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

    def change_fd(self, fd: int, old: int, new: int) -> None:
        if self._ep is not None:
            self._ep.set(fd, old, new, self.name, "CHANGE")
            return
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

    def _nested_ready(self) -> None:
        if self._ep is not None:
            self._ep.service(self.context)
            self._follower.follow()

    def _drop_nested(self) -> None:
        ep = self._ep
        if ep is None:
            return
        self._ep = None
        with contextlib.suppress(RuntimeError):  # uvloop, once closed
            self.loop.remove_reader(ep.fd)
        ep.close()

    def _arm(self, seconds: float) -> None:
        self._timer = self.loop.call_later(seconds, self._follower.fired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _release(self) -> None:
        self._drop_nested()
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
