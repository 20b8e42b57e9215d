"""``GeventAdapter``: the context on a gevent hub, beside the user's greenlets.

One ``loop.io`` watcher per fd; a change of events stops the watcher, sets its
events and starts it again (an active watcher's events are read-only).  Before a
DEL -- the context closes the fd right after -- the watcher is closed and
``loop.closing_fd(fd)`` is called where the loop has it.  The context's next
timeout is one hub timer.  Callbacks run in the hub, never block, so every other
greenlet runs freely.  gevent is imported only when an adapter is made; no
monkey-patching is needed or done.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from lwsbridge.adapters._common import POLLIN, POLLOUT, UnknownFdError

if TYPE_CHECKING:
    import threading

    from lwsbridge.context import Context

__all__ = ["GeventAdapter", "serve_forever"]

_READ, _WRITE = 1, 2  # libev/libuv EV_READ, EV_WRITE (gevent's loop.io events)


def _to_gevent(events: int) -> int:
    return (_READ if events & POLLIN else 0) | (_WRITE if events & POLLOUT else 0)


class GeventAdapter:
    """``GeventAdapter(context, hub=None)``: attach now; ``close()`` to detach."""

    name = "gevent"

    def __init__(self, context: Context, hub: Any = None) -> None:
        import gevent  # type: ignore[import-untyped, import-not-found, unused-ignore]

        self.context = context
        self.hub = hub if hub is not None else gevent.get_hub()
        self.loop = self.hub.loop
        self.events: dict[int, int] = {}
        self._watchers: dict[int, Any] = {}
        self._timer: Any = None
        self._timer_at: float | None = None
        self._attached = True
        self._stop: Any = None
        context.set_poll_sink(self)
        self._reschedule()

    # -- the poll sink -------------------------------------------------------------------

    def add_fd(self, fd: int, events: int) -> None:
        if fd in self.events:
            raise ValueError(f"gevent: ADD for fd {fd}, which is already watched")
        self.events[fd] = events
        if events:
            self._start(fd, events)

    def del_fd(self, fd: int, events: int = 0) -> None:
        try:
            del self.events[fd]
        except KeyError:
            raise UnknownFdError(fd, "DEL", self.name) from None
        w = self._watchers.pop(fd, None)
        if w is not None:
            w.stop()
            w.close()
        closing_fd = getattr(self.loop, "closing_fd", None)
        if closing_fd is not None:
            closing_fd(fd)

    def change_fd(self, fd: int, old: int, events: int) -> None:
        if fd not in self.events:
            raise UnknownFdError(fd, "CHANGE", self.name)
        self.events[fd] = events
        w = self._watchers.get(fd)
        if w is None:
            if events:
                self._start(fd, events)
            return
        w.stop()
        if events:
            w.events = _to_gevent(events)
            w.start(self._ready, fd, pass_events=True)

    def _start(self, fd: int, events: int) -> None:
        w = self.loop.io(fd, _to_gevent(events))
        self._watchers[fd] = w
        w.start(self._ready, fd, pass_events=True)

    # -- servicing (in the hub) ----------------------------------------------------------

    def _ready(self, revents: int, fd: int) -> None:
        if fd in self.events:
            ev = (POLLIN if revents & _READ else 0) | (POLLOUT if revents & _WRITE else 0)
            self.context.service_fd(fd, ev)
        self._reschedule()

    def _fire(self) -> None:
        self._timer_at = None
        self.context.service_pending()
        self._reschedule()

    def _reschedule(self) -> None:
        if not self._attached:
            return
        nt = self.context.next_timeout()
        timer = self._timer
        if nt is None:
            if timer is not None:
                timer.stop()
                self._timer_at = None
            return
        at = time.monotonic() + nt / 1000.0
        if timer is not None and self._timer_at is not None:
            if nt > 0 and abs(self._timer_at - at) < 0.001:
                return
            if nt == 0 and self._timer_at <= at:
                return
        if timer is not None:
            timer.stop()
            timer.close()
        self._timer = self.loop.timer(nt / 1000.0)
        self._timer_at = at
        self._timer.start(self._fire)

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

    def close(self) -> None:
        """Detach: stop and close every watcher and the timer."""
        if not self._attached:
            return
        self._attached = False
        for w in self._watchers.values():
            w.stop()
            w.close()
        self._watchers.clear()
        self.events.clear()
        if self._timer is not None:
            self._timer.stop()
            self._timer.close()
            self._timer = self._timer_at = None
        self.context.set_poll_sink(None)


def serve_forever(context: Context, stop_event: threading.Event | None = None) -> None:
    """Serve ``context`` on the current thread's hub until ``stop_event`` is set."""
    adapter = GeventAdapter(context)
    try:
        adapter.serve_forever(stop_event)
    finally:
        adapter.close()
