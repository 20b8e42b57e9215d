"""Fixtures for the Context tests: contexts and raw clients cleaned up after each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support.contexts import context_factory
from wsclient import RawClient

from lwsbridge.context import Context


@pytest.fixture
def make_ctx() -> Iterator[Callable[..., Context]]:
    """Contexts for the test, listening on an ephemeral loopback port by default."""
    yield from context_factory(port=0)


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
