"""Bounded servicing loops for in-process contexts: every wait ends, failing the test.

``pump`` runs a step until a condition holds (or fails the test after its timeout),
``settle`` runs it for a fixed time, and ``stepper`` makes the usual step: service each
context once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from lwsbridge.context import Context

DEADLINE = 5.0  # seconds any single wait may take before the test fails


def pump(step: Callable[[], Any], cond: Callable[[], Any], what: str, timeout: float = DEADLINE):
    """Run ``step`` until ``cond()`` is truthy (returned); fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        r = cond()
        if r:
            return r
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        step()


def settle(step: Callable[[], Any], seconds: float) -> None:
    """Run ``step`` for ``seconds`` (bounded)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        step()


def stepper(*ctxs: Context, ms: int = 5) -> Callable[[], None]:
    """Service every context once per step, waiting up to ``ms`` each (one thread)."""
    if len(ctxs) == 1:
        ctx = ctxs[0]
        return lambda: ctx.service(ms)

    def step() -> None:
        for c in ctxs:
            c.service(ms)

    return step
