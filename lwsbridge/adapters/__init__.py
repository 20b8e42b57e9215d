"""Adapters: the context's one poll contract translated onto one loop library each.

Every adapter is a poll sink (``add_fd(fd, events)``, ``change_fd(fd, old, new)``,
``del_fd(fd, events)``: each call carries the old mask, so no adapter keeps a copy
of the interest set), attached with ``set_poll_sink`` (which replays the fds
already watched).  It calls ``service_fd`` for ready fds and ``service_pending``
when ``next_timeout`` expires.  Adapters are written against
:class:`~lwsbridge.vocabulary.Serviceable`, not the context class; the shared parts
(attach/detach, the stale-fd guard, run/stop, the timer follower,
:class:`UnknownFdError`) are in :mod:`._base`.  Loop libraries are imported lazily:
importing this package imports none of them.

**The revents rule** -- what every adapter gives ``service_fd(fd, revents)``:
only POLLIN and POLLOUT.  An error or a hang-up (POLLERR, POLLHUP) counts as ready
in the directions the fd is watched for: that is what CPython's selectors do and
all that asyncio, gevent and trio can see (they wake the waiting reader or
writer), and Linux's select, poll and epoll already report a reset or hung-up TCP
socket as readable and writable within its mask, so they drop the two bits
(:func:`._base.fold`).  The context then meets the error in its recv() or send()
and closes the connection the same way on every loop.  The one other bit is
POLLNVAL, from the select loop for an fd it cannot watch (>= FD_SETSIZE): the
context closes that connection.

Every module has one entry point, ``serve(context, stop_event=None)``, registered
by name in :mod:`lwsbridge.loops`; :func:`run` looks the name up there.

=========  =====================  ==========================================
name       module                 adapter (for a host's own loop)
=========  =====================  ==========================================
select     :mod:`.select_loop`    ``SelectLoop(context)``
poll       :mod:`.poll_loop`      ``PollLoop(context)``
epoll      :mod:`.epoll_loop`     ``EpollLoop(context)``
zmq        :mod:`.zmq_poller`     ``ZmqPollerAdapter(context, poller)``
gevent     :mod:`.gevent_loop`    ``GeventAdapter(context, hub=None)``
trio       :mod:`.trio_loop`      ``await run_trio(context, nursery)``
asyncio    :mod:`.asyncio_loop`   ``AsyncioAdapter(context, loop=None)``
=========  =====================  ==========================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lwsbridge import loops
from lwsbridge.adapters._base import UnknownFdError
from lwsbridge.vocabulary import Serviceable

if TYPE_CHECKING:
    import threading

__all__ = ["LOOPS", "UnknownFdError", "run"]

#: the loop names, in the registry's order
LOOPS: tuple[str, ...] = loops.names()


def run(context: Serviceable, loop_name: str, stop_event: threading.Event | None = None) -> None:
    """Serve ``context`` on the named loop in this thread until ``stop_event`` is set.

    Without ``stop_event`` it runs until interrupted.  The adapter is detached on the
    way out; destroying the context is the caller's business.  ``stop_event`` is a
    ``threading.Event``, looked at every 100 ms.  An unknown name raises ValueError.
    """
    loops.load_serve(loop_name)(context, stop_event)
