"""Fixtures for the Context tests: contexts and raw clients cleaned up after each test."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from wsclient import RawClient

from lwsbridge.context import Context, Protocol


@pytest.fixture
def make_ctx() -> Iterator[Callable[..., Context]]:
    made: list[Context] = []

    def make(protocols: list[Protocol], **kw: Any) -> Context:
        kw.setdefault("port", 0)
        kw.setdefault("interface", "127.0.0.1")
        ctx = Context(protocols, **kw)
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        if ctx.service_thread != threading.get_ident():
            ctx.adopt_thread()
        ctx.destroy()


@pytest.fixture
def client() -> Iterator[Callable[..., RawClient]]:
    made: list[RawClient] = []

    def make(port: int, **kw: Any) -> RawClient:
        c = RawClient(port, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()
