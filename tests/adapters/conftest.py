"""Fixtures for the adapter suite: ``adapter`` (one driver per loop library), contexts."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from adapterkit import DRIVERS, Driver, have

from lwsbridge.context import Context


@pytest.fixture(params=list(DRIVERS))
def adapter(request: pytest.FixtureRequest) -> Driver:
    factory, module = DRIVERS[request.param]
    if module is not None and not have(module):
        pytest.skip(f"{module} is not installed")
    return factory()


@pytest.fixture
def contexts() -> Iterator[Callable[[Context], Context]]:
    """Register a context to be destroyed after the test."""
    made: list[Context] = []

    def keep(ctx: Context) -> Context:
        made.append(ctx)
        return ctx

    yield keep
    for ctx in made:
        ctx.adopt_thread()
        ctx.destroy()


class Workers:
    """Helper threads whose exceptions fail the test."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []
        self.results: list[Any] = []

    def start(self, fn: Callable[..., Any], *args: Any) -> threading.Thread:
        def body() -> None:
            try:
                self.results.append(fn(*args))
            except BaseException as exc:
                self.errors.append(exc)

        t = threading.Thread(target=body, daemon=True)
        self.threads.append(t)
        t.start()
        return t

    def done(self) -> bool:
        return not any(t.is_alive() for t in self.threads)

    def check(self) -> None:
        if self.errors:
            raise self.errors[0]


@pytest.fixture
def workers() -> Iterator[Workers]:
    w = Workers()
    yield w
    for t in w.threads:
        t.join(5)
