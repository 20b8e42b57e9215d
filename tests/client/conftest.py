"""Fixtures for the client-side tests: contexts destroyed after each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from support.contexts import context_factory

from lwsbridge.apps.demo_server import build_context
from lwsbridge.context import Context


@pytest.fixture
def make_ctx() -> Iterator[Callable[..., Context]]:
    """Contexts for the test (client-only by default: ``port=None``)."""
    yield from context_factory(port=None)


@pytest.fixture
def test_server() -> Iterator[Context]:
    """lwsbridge's test-server protocols, in-process on an ephemeral loopback port."""
    ctx = build_context(port=0, interface="127.0.0.1")
    yield ctx
    ctx.destroy()
