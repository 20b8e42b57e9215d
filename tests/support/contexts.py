"""Contexts made for one test and destroyed after it, whichever thread serviced them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from lwsbridge.context import Context, Protocol


def context_factory(**defaults: Any) -> Iterator[Callable[..., Context]]:
    """Body of a ``make_ctx`` fixture: yields ``make(protocols, **kw)``, then destroys
    every context made.  ``defaults`` go to each Context unless ``kw`` overrides them; a
    listening context binds 127.0.0.1 unless told otherwise."""
    made: list[Context] = []

    def make(protocols: list[Protocol], **kw: Any) -> Context:
        kw = {**defaults, **kw}
        if kw.get("port") is not None:
            kw.setdefault("interface", "127.0.0.1")
        ctx = Context(protocols, **kw)
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        # A test may have serviced it on a helper thread: destroy() wants its owner.
        if ctx.service_thread != threading.get_ident():
            ctx.adopt_thread()
        ctx.destroy()
