"""``GeventAdapter``: the context on a gevent hub, beside the user's greenlets.

Where there is epoll, the context's fds live in one nested epoll set
(``adapters/_nested.py``) and one ``loop.io`` watcher on its fd services every fd
ready in it (the stale-fd guard skips an fd DEL'd earlier in the batch): a watcher
per fd -- made, started, stopped and closed through gevent's Python layer, one hub
callback per ready fd -- is what a close storm paid for.  Without epoll: one
``loop.io`` watcher per fd; a change of events stops the watcher, sets its
events and starts it again (an active watcher's events are read-only).  Before a
DEL -- the context closes the fd right after -- the watcher is closed and
``loop.closing_fd(fd)`` is called where the loop has it.  The context's next
timeout is one hub timer.  Callbacks run in the hub, never block, so every other
greenlet runs freely.  gevent is imported only when an adapter is made; no
monkey-patching is needed or done.
"""

from __future__ import annotations

import threading
import time
from typing import Any

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

__all__ = ["GeventAdapter", "serve", "serve_forever"]

_READ, _WRITE = 1, 2  # libev/libuv EV_READ, EV_WRITE (gevent's loop.io events)
_TO_GEVENT = (0, _READ, 0, _READ, _WRITE, _READ | _WRITE)  # by pollfd mask (POLLOUT=4)
_FROM_GEVENT = (0, POLLIN, POLLOUT, POLLIN | POLLOUT)  # by revents & 3


class GeventAdapter(Adapter):
    """``GeventAdapter(context, hub=None)``: attach now; ``close()`` to detach."""

    name = "gevent"

    def __init__(self, context: Serviceable, hub: Any = None) -> None:
        import gevent  # type: ignore[import-untyped, import-not-found, unused-ignore]

        super().__init__(context)
        self.hub = hub if hub is not None else gevent.get_hub()
        self.loop = self.hub.loop
        #: the loop's io watcher objects (the library's registrations, held to stop them)
        self._watchers: dict[int, Any] = {}
        self._timer: Any = None
        self._stop: Any = None
        self._follower = TimerFollower(context, time.monotonic, self._arm, self._disarm)
        #: the nested epoll set holding the context's fds, and its one watcher
        #: (None: a watcher per fd)
        self._ep = NestedEpoll() if NESTED else None
        self._nested: Any = None
        try:
            if self._ep is not None:
                self._nested = self.loop.io(self._ep.fd, _READ)
                self._nested.start(self._nested_ready)
            self._attach()
        except BaseException:
            self._drop_nested()
            raise
        self._follower.follow()

    @property
    def nested_fd(self) -> int | None:
        """The epoll fd the hub watches for all the context's fds (None: one per fd)."""
        return self._ep.fd if self._ep is not None else None

    # -- the poll sink -------------------------------------------------------------------

    def add_fd(self, fd: int, events: int) -> None:
        if self._ep is not None:
            self._ep.set(fd, 0, events, self.name, "ADD")
        elif events:
            self._start(fd, events)

    def del_fd(self, fd: int, events: int) -> None:
        if self._ep is not None:
            self._ep.drop(fd, events, self.name)
            return
        w = self._watchers.pop(fd, None)
        if w is None and events:
            raise UnknownFdError(fd, "DEL", self.name)
        if w is not None:
            w.stop()
            w.close()
        closing_fd = getattr(self.loop, "closing_fd", None)
        if closing_fd is not None and self._attached:  # not on detach: the fd stays open
            closing_fd(fd)

    def change_fd(self, fd: int, old: int, new: int) -> None:
        if self._ep is not None:
            self._ep.set(fd, old, new, self.name, "CHANGE")
            return
        w = self._watchers.get(fd)
        if w is None:
            if old:
                raise UnknownFdError(fd, "CHANGE", self.name)
            self._start(fd, new)
            return
        w.stop()
        if new:
            w.events = _TO_GEVENT[new & 5]
            w.start(self._ready, fd, pass_events=True)

    def _start(self, fd: int, events: int) -> None:
        w = self.loop.io(fd, _TO_GEVENT[events & 5])
        self._watchers[fd] = w
        w.start(self._ready, fd, pass_events=True)

    # -- servicing (in the hub) ----------------------------------------------------------

    def _ready(self, revents: int, fd: int) -> None:
        # A DEL'd fd's watcher is stopped and closed, so it never gets here.
        self.context.service_fd(fd, _FROM_GEVENT[revents & 3])
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
        if self._nested is not None:
            self._nested.stop()
            self._nested.close()
            self._nested = None
        closing_fd = getattr(self.loop, "closing_fd", None)
        if closing_fd is not None:
            closing_fd(ep.fd)
        ep.close()

    def _arm(self, seconds: float) -> None:
        self._timer = self.loop.timer(seconds)
        self._timer.start(self._follower.fired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer.close()
            self._timer = None

    def _release(self) -> None:
        for w in self._watchers.values():  # a watcher stopped (0 events) but kept
            w.stop()
            w.close()
        self._watchers.clear()
        self._drop_nested()
        self._follower.close()

    # -- running -------------------------------------------------------------------------

    def serve_forever(self, stop_event: threading.Event | None = None) -> None:
        """Block this greenlet (others run) until :meth:`stop` or ``stop_event``."""
        from gevent.event import Event  # type: ignore[import-untyped, import-not-found, unused-ignore]

        self._stop = Event()
        while not self._stop.is_set():
            if stop_event is not None and stop_event.is_set():
                break
            self._stop.wait(0.1 if stop_event is not None else None)
        self._stop = None

    def stop(self) -> None:
        """End :meth:`serve_forever` (from a greenlet of the hub's thread)."""
        if self._stop is not None:
            self._stop.set()


def serve(context: Serviceable, stop_event: threading.Event | None = None) -> None:
    """Serve ``context`` on the current thread's hub until ``stop_event`` is set."""
    adapter = GeventAdapter(context)
    try:
        adapter.serve_forever(stop_event)
    finally:
        adapter.close()


#: the name this entry point had before every adapter module had :func:`serve`
serve_forever = serve
