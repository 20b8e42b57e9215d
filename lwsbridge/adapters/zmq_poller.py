"""``ZmqPollerAdapter``: the context's fds as raw fds on the user's ``zmq.Poller``.

The host keeps its own poll loop over ZeroMQ sockets and adds lwsbridge to it::

    poller = zmq.Poller()
    poller.register(sub, zmq.POLLIN)
    ws = ZmqPollerAdapter(context, poller)
    while True:
        ready = ws.handle(dict(poller.poll(ws.timeout(1000))))
        if sub in ready: ...  # the rest is the host's

Events are translated POLLIN=1/POLLOUT=4 <-> zmq.POLLIN=1/zmq.POLLOUT=2 (and
zmq.POLLERR to POLLERR).  An fd with no events is unregistered from the poller.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from lwsbridge.adapters._common import POLLERR, POLLIN, POLLOUT, UnknownFdError

if TYPE_CHECKING:
    from lwsbridge.context import Context

__all__ = ["ZmqPollerAdapter", "serve_forever"]

_ZIN, _ZOUT, _ZERR = 1, 2, 4  # zmq.POLLIN, zmq.POLLOUT, zmq.POLLERR (fixed by libzmq)


def _to_zmq(events: int) -> int:
    return (_ZIN if events & POLLIN else 0) | (_ZOUT if events & POLLOUT else 0)


def _from_zmq(flags: int) -> int:
    return (
        (POLLIN if flags & _ZIN else 0)
        | (POLLOUT if flags & _ZOUT else 0)
        | (POLLERR if flags & _ZERR else 0)
    )


class ZmqPollerAdapter:
    """``ZmqPollerAdapter(context, poller)``: ``handle(dict(poller.poll(t)))``, ``timeout()``."""

    name = "zmq"

    def __init__(self, context: Context, poller: Any) -> None:
        import zmq  # type: ignore[import-not-found, unused-ignore]

        if (zmq.POLLIN, zmq.POLLOUT, zmq.POLLERR) != (_ZIN, _ZOUT, _ZERR):
            raise RuntimeError("unexpected zmq poll flag values")
        self.context = context
        self.poller = poller
        self.events: dict[int, int] = {}
        self._closed_in_pass: set[int] = set()
        self._attached = True
        self._stopping = False
        self._thread = threading.get_ident()
        context.set_poll_sink(self)

    # -- the poll sink -------------------------------------------------------------------

    def add_fd(self, fd: int, events: int) -> None:
        if fd in self.events:
            raise ValueError(f"zmq: ADD for fd {fd}, which is already watched")
        self.events[fd] = events
        if events:
            self.poller.register(fd, _to_zmq(events))

    def del_fd(self, fd: int, events: int = 0) -> None:
        try:
            old = self.events.pop(fd)
        except KeyError:
            raise UnknownFdError(fd, "DEL", self.name) from None
        self._closed_in_pass.add(fd)
        if old:
            self.poller.unregister(fd)

    def change_fd(self, fd: int, old: int, events: int) -> None:
        try:
            old = self.events[fd]
        except KeyError:
            raise UnknownFdError(fd, "CHANGE", self.name) from None
        self.events[fd] = events
        if events:
            self.poller.register(fd, _to_zmq(events))  # modifies when registered
        elif old:
            self.poller.unregister(fd)

    # -- the host's loop -----------------------------------------------------------------

    def timeout(self, user_ms: int | None = None) -> int | None:
        """The timeout for ``poller.poll``: the smaller of ``user_ms`` and the context's.

        Runs :meth:`Context.service_pending` first when it is due now.  None: no limit.
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

    def handle(self, poll_result: Mapping[Any, int] | Iterable[tuple[Any, int]]) -> dict[Any, int]:
        """Service our fds in a ``poller.poll()`` result; return the rest (the host's).

        Also runs the context's timers and forced service when due.
        """
        items = poll_result.items() if isinstance(poll_result, Mapping) else poll_result
        ctx = self.context
        rest: dict[Any, int] = {}
        closed = self._closed_in_pass
        closed.clear()
        for key, flags in items:
            if key.__class__ is int and key in self.events:
                if key not in closed:
                    ctx.service_fd(key, _from_zmq(flags))
            elif key.__class__ is int and key in closed:
                continue  # ours, closed earlier in this pass
            else:
                rest[key] = flags
        ctx.service_pending()
        return rest

    def run_once(self, timeout_ms: int | None = None) -> dict[Any, int]:
        """One ``poller.poll`` + :meth:`handle`; returns the host's ready sockets."""
        return self.handle(dict(self.poller.poll(self.timeout(timeout_ms))))

    def run_forever(self) -> None:
        """:meth:`run_once` until :meth:`stop` (only when the poller has nothing else)."""
        self._stopping = False
        while not self._stopping:
            self.run_once(None)

    def stop(self) -> None:
        self._stopping = True
        if threading.get_ident() != self._thread:
            self.context.cancel_service()

    def close(self) -> None:
        """Detach: unregister every fd of ours from the poller."""
        if not self._attached:
            return
        self._attached = False
        for fd, events in self.events.items():
            if events:
                self.poller.unregister(fd)
        self.events.clear()
        self.context.set_poll_sink(None)


def serve_forever(context: Context, stop_event: threading.Event | None = None) -> None:
    """Serve ``context`` on a ``zmq.Poller`` of its own until ``stop_event`` is set."""
    import zmq  # type: ignore[import-not-found, unused-ignore]

    adapter = ZmqPollerAdapter(context, zmq.Poller())
    try:
        while stop_event is None or not stop_event.is_set():
            adapter.run_once(100 if stop_event is not None else None)
    finally:
        adapter.close()
