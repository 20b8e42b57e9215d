"""``ZmqPollerAdapter``: the context's fds as raw fds on the user's ``zmq.Poller``.

The host keeps its own poll loop over ZeroMQ sockets and adds lwsbridge to it::

    poller = zmq.Poller()
    poller.register(sub, zmq.POLLIN)
    ws = ZmqPollerAdapter(context, poller)
    while True:
        ready = ws.handle(dict(poller.poll(ws.timeout(1000))))
        if sub in ready: ...  # the rest is the host's

Where there is epoll, the context's fds live in one nested epoll set and only its fd
is registered in the poller (``adapters/_nested.py`` says why: a close storm).
Without it the fds go into the poller directly: POLLIN=1/POLLOUT=4 <-> zmq.POLLIN=1/
zmq.POLLOUT=2, and zmq.POLLERR follows the revents rule (adapters/__init__).  Either
way an fd with no events is not registered.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

from lwsbridge.adapters._base import (
    POLLERR,
    POLLIN,
    POLLOUT,
    PassLoop,
    UnknownFdError,
    fold,
    run_until,
)
from lwsbridge.adapters._nested import AVAILABLE as NESTED
from lwsbridge.adapters._nested import NestedEpoll
from lwsbridge.vocabulary import Serviceable

__all__ = ["ZmqPollerAdapter", "serve", "serve_forever"]

_ZIN, _ZOUT, _ZERR = 1, 2, 4  # zmq.POLLIN, zmq.POLLOUT, zmq.POLLERR (fixed by libzmq)
# zmq flags -> pollfd bits, by table (the 8 combinations)
_FROM_ZMQ = [
    (POLLIN if f & _ZIN else 0) | (POLLOUT if f & _ZOUT else 0) | (POLLERR if f & _ZERR else 0)
    for f in range(8)
]


def _to_zmq(events: int) -> int:
    return (_ZIN if events & POLLIN else 0) | (_ZOUT if events & POLLOUT else 0)


class ZmqPollerAdapter(PassLoop):
    """``ZmqPollerAdapter(context, poller)``: ``handle(dict(poller.poll(t)))``, ``timeout()``."""

    name = "zmq"

    def __init__(self, context: Serviceable, poller: Any) -> None:
        import zmq  # type: ignore[import-not-found, unused-ignore]

        if (zmq.POLLIN, zmq.POLLOUT, zmq.POLLERR) != (_ZIN, _ZOUT, _ZERR):
            raise RuntimeError("unexpected zmq poll flag values")
        super().__init__(context)
        self.poller = poller
        #: the nested epoll set holding the context's fds (None: they are in the poller)
        self._ep = NestedEpoll() if NESTED else None
        self._epfd = -1
        if self._ep is not None:
            self._epfd = self._ep.fd
            poller.register(self._epfd, _ZIN)
        try:
            self._attach()
        except BaseException:
            self._drop_nested()
            raise

    @property
    def nested_fd(self) -> int | None:
        """The epoll fd registered in the poller for all the context's fds (None: no epoll)."""
        return self._epfd if self._ep is not None else None

    def _drop_nested(self) -> None:
        if self._ep is not None:
            self.poller.unregister(self._epfd)
            self._ep.close()
            self._ep = None

    def _release(self) -> None:
        self._drop_nested()

    # -- the poll sink -------------------------------------------------------------------

    def add_fd(self, fd: int, events: int) -> None:
        if events:
            if self._ep is not None:
                self._ep.set(fd, 0, events, self.name, "ADD")
            else:
                self.poller.register(fd, _to_zmq(events))

    def del_fd(self, fd: int, events: int) -> None:
        if self._ep is not None:
            self._ep.drop(fd, events, self.name)
            return
        self._gone(fd)
        if events:
            self._unregister(fd, "DEL")

    def change_fd(self, fd: int, old: int, new: int) -> None:
        if self._ep is not None:
            self._ep.set(fd, old, new, self.name, "CHANGE")
        elif new:
            self.poller.register(fd, _to_zmq(new))  # modifies when registered
        elif old:
            self._unregister(fd, "CHANGE")

    def _unregister(self, fd: int, what: str) -> None:
        if self._ep is not None:
            self._ep.set(fd, 1, 0, self.name, what)
            return
        try:
            self.poller.unregister(fd)
        except KeyError:
            raise UnknownFdError(fd, what, self.name) from None

    # -- the host's loop -----------------------------------------------------------------

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
            if key.__class__ is not int:
                rest[key] = flags  # a zmq socket: the host's
            elif key == self._epfd and self._ep is not None:
                self._ep.service(ctx)  # the nested set: what is ready in it now
            # An fd closed earlier in this pass is skipped (stale); service_fd gives
            # back the revents of an fd that is not the context's (the host's).
            elif key not in closed and ctx.service_fd(key, fold(_FROM_ZMQ[flags & 7])):
                rest[key] = flags
        ctx.service_pending()
        return rest

    def run_once(self, timeout_ms: int | None = None) -> dict[Any, int]:
        """One ``poller.poll`` + :meth:`handle`; returns the host's ready sockets."""
        return self.handle(dict(self.poller.poll(self.timeout(timeout_ms))))


def serve(context: Serviceable, stop_event: threading.Event | None = None) -> None:
    """Serve ``context`` on a ``zmq.Poller`` of its own until ``stop_event`` is set."""
    import zmq  # type: ignore[import-not-found, unused-ignore]

    run_until(ZmqPollerAdapter(context, zmq.Poller()), stop_event)


#: the name this entry point had before every adapter module had :func:`serve`
serve_forever = serve
