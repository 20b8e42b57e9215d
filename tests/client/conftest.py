"""Fixtures for the client-side tests: contexts destroyed after each test."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lwsbridge.apps.demo_server import build_context
from lwsbridge.context import Context, Protocol


@pytest.fixture
def make_ctx() -> Iterator[Callable[..., Context]]:
    """Contexts for the test (client-only by default: ``port=None``)."""
    made: list[Context] = []

    def make(protocols: list[Protocol], **kw: Any) -> Context:
        kw.setdefault("port", None)
        if kw["port"] is not None:
            kw.setdefault("interface", "127.0.0.1")
        ctx = Context(protocols, **kw)
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        if ctx._owner != threading.get_ident():
            ctx.adopt_thread()
        ctx.destroy()


@pytest.fixture
def test_server() -> Iterator[Context]:
    """lwsbridge's test-server protocols, in-process on an ephemeral loopback port."""
    ctx = build_context(port=0, interface="127.0.0.1")
    yield ctx
    ctx.destroy()
