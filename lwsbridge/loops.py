"""The registry of loops: a name, where its adapter lives, and how to run it.

The context's built-in :meth:`~lwsbridge.context.Context.service` and
:func:`lwsbridge.adapters.run` find loops here by name; nothing imports an adapter
module until that loop is used, so the context never depends on the adapters.
"""

from __future__ import annotations

import importlib
import select
from dataclasses import dataclass
from typing import Any

__all__ = ["LOOPS", "LoopEntry", "best_array_loop", "load", "names"]


@dataclass(frozen=True)
class LoopEntry:
    """One loop: its name, the adapter ``module:attribute``, and what it needs installed."""

    name: str
    target: str
    requires: str | None = None  # the package that must be importable, if any


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


def load(name: str) -> Any:
    """The adapter class (or entry point) registered as ``name``; imports it on first use."""
    try:
        entry = LOOPS[name]
    except KeyError:
        raise ValueError(f"unknown loop {name!r}; choose one of {', '.join(LOOPS)}") from None
    module, _, attr = entry.target.partition(":")
    return getattr(importlib.import_module(module), attr)


def best_array_loop() -> str:
    """The best kernel interface here: epoll, else poll, else select."""
    if hasattr(select, "epoll"):
        return "epoll"
    if hasattr(select, "poll"):
        return "poll"
    return "select"
