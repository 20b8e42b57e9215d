"""The registry of loops: a name, where its adapter lives, and how to run it.

The context's built-in :meth:`~lwsbridge.context.Context.service` and
:func:`lwsbridge.adapters.run` find loops here by name; nothing imports an adapter
module until that loop is used, so the context never depends on the adapters.
Every adapter module has the same entry point, ``serve(context, stop_event=None)``:
serve in this thread until ``stop_event`` (a ``threading.Event``) is set.
"""

from __future__ import annotations

import importlib
import select
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lwsbridge.vocabulary import Serviceable

__all__ = ["LOOPS", "LoopEntry", "Serve", "best_array_loop", "load", "load_serve", "names"]

#: ``serve(context, stop_event=None)``: every adapter module's entry point
Serve = Callable[[Serviceable, "threading.Event | None"], None]


@dataclass(frozen=True)
class LoopEntry:
    """One loop: its name, the adapter ``module:attribute``, and what it needs installed.

    The module's entry point is its ``serve`` function.
    """

    name: str
    target: str
    requires: str | None = None  # the package that must be importable, if any

    @property
    def module(self) -> str:
        return self.target.partition(":")[0]


LOOPS: dict[str, LoopEntry] = {
    e.name: e
    for e in (
        LoopEntry("select", "lwsbridge.adapters.select_loop:SelectLoop"),
        LoopEntry("poll", "lwsbridge.adapters.poll_loop:PollLoop"),
        LoopEntry("epoll", "lwsbridge.adapters.epoll_loop:EpollLoop"),
        LoopEntry("zmq", "lwsbridge.adapters.zmq_poller:ZmqPollerAdapter", "zmq"),
        LoopEntry("gevent", "lwsbridge.adapters.gevent_loop:GeventAdapter", "gevent"),
        LoopEntry("trio", "lwsbridge.adapters.trio_loop:TrioAdapter", "trio"),
        LoopEntry("asyncio", "lwsbridge.adapters.asyncio_loop:AsyncioAdapter"),
    )
}


def names() -> tuple[str, ...]:
    return tuple(LOOPS)


def _entry(name: str) -> LoopEntry:
    try:
        return LOOPS[name]
    except KeyError:
        raise ValueError(f"unknown loop {name!r}; choose one of {', '.join(LOOPS)}") from None


def load(name: str) -> Any:
    """The adapter class registered as ``name``; imports its module on first use."""
    module, _, attr = _entry(name).target.partition(":")
    return getattr(importlib.import_module(module), attr)


def load_serve(name: str) -> Serve:
    """The ``serve(context, stop_event=None)`` entry point of the loop named ``name``."""
    serve: Serve = importlib.import_module(_entry(name).module).serve
    return serve


def best_array_loop() -> str:
    """The best kernel interface here: epoll, else poll, else select."""
    if hasattr(select, "epoll"):
        return "epoll"
    if hasattr(select, "poll"):
        return "poll"
    return "select"
