"""Adapters: the context's one poll contract translated onto one loop library each.

Every adapter is a poll sink (``add_fd``/``del_fd``/``change_fd``, attached with
:meth:`Context.set_poll_sink`, which replays the fds already watched), calls
:meth:`Context.service_fd` for ready fds and :meth:`Context.service_pending` when
:meth:`Context.next_timeout` expires.  Loop libraries are imported lazily: importing
this package imports none of them.

=========  =====================================  ==========================
name       module                                 entry point
=========  =====================================  ==========================
select     :mod:`.select_loop`                    ``SelectLoop(context)``
poll       :mod:`.poll_loop`                      ``PollLoop(context)``
epoll      :mod:`.epoll_loop`                     ``EpollLoop(context)``
zmq        :mod:`.zmq_poller`                     ``ZmqPollerAdapter(context, poller)``
gevent     :mod:`.gevent_loop`                    ``GeventAdapter(context, hub=None)``
trio       :mod:`.trio_loop`                      ``await run_trio(context, nursery)``
asyncio    :mod:`.asyncio_loop`                   ``AsyncioAdapter(context, loop=None)``
=========  =====================================  ==========================
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lwsbridge.adapters._common import UnknownFdError

if TYPE_CHECKING:
    import threading

    from lwsbridge.context import Context

__all__ = ["LOOPS", "UnknownFdError", "run"]

LOOPS = ("select", "poll", "epoll", "zmq", "gevent", "trio", "asyncio")


def run(context: Context, loop_name: str, stop_event: threading.Event | None = None) -> None:
    """Serve ``context`` on the named loop in this thread until ``stop_event`` is set.

    Without ``stop_event`` it runs until interrupted.  The adapter is detached on the
    way out; destroying the context is the caller's business.  ``stop_event`` is a
    ``threading.Event``, looked at every 100 ms.
    """
    if loop_name in ("select", "poll", "epoll"):
        from lwsbridge.adapters._array import ArrayLoop

        cls: type[ArrayLoop]
        if loop_name == "select":
            from lwsbridge.adapters.select_loop import SelectLoop as cls
        elif loop_name == "poll":
            from lwsbridge.adapters.poll_loop import PollLoop as cls
        else:
            from lwsbridge.adapters.epoll_loop import EpollLoop as cls
        with cls(context) as loop:
            while stop_event is None or not stop_event.is_set():
                loop.run_once(100 if stop_event is not None else None)
    elif loop_name == "zmq":
        from lwsbridge.adapters.zmq_poller import serve_forever as zmq_serve

        zmq_serve(context, stop_event)
    elif loop_name == "gevent":
        from lwsbridge.adapters.gevent_loop import serve_forever as gevent_serve

        gevent_serve(context, stop_event)
    elif loop_name == "trio":
        import functools

        import trio  # type: ignore[import-not-found, unused-ignore]

        from lwsbridge.adapters.trio_loop import run_trio

        trio.run(functools.partial(run_trio, context, None, stop_event))
    elif loop_name == "asyncio":
        import asyncio

        from lwsbridge.adapters.asyncio_loop import run_asyncio

        asyncio.run(run_asyncio(context, stop_event))
    else:
        raise ValueError(f"unknown loop {loop_name!r}; choose one of {', '.join(LOOPS)}")
