"""Driving backplanes in tests: service contexts until a condition, probe until flowing."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from lwsbridge.backplane import Backplane
from lwsbridge.context import Context, Protocol

PROBE = b"probe"


def quiet_protocols() -> list[Protocol]:
    return [Protocol("http", lambda *a: 0)]


def pump(
    ctxs: Sequence[Context], until: Callable[[], Any], timeout: float = 10.0, what: str = "it"
) -> None:
    """Service ``ctxs`` in turn (built-in loop) until ``until()``, failing after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not until():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        for c in ctxs:
            c.service(5)


class Inbox:
    """A subscriber callback that records ``(channel, data)``, probes apart."""

    def __init__(self) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.probes = 0

    def __call__(self, channel: str, data: bytes) -> None:
        if data.startswith(PROBE):
            self.probes += 1
        else:
            self.got.append((channel, data))

    def data(self, channel: str | None = None) -> list[bytes]:
        return [d for c, d in self.got if channel is None or c == channel]


def until_flowing(
    ctxs: Sequence[Context],
    publisher: Backplane,
    channel: str,
    inbox: Inbox,
    timeout: float = 15.0,
) -> None:
    """Publish probes on ``channel`` until ``inbox`` has one: the subscription has
    reached the broker (ZeroMQ's and Redis's subscriptions take effect some time after
    the call, and a message before that is dropped by design)."""
    seen = inbox.probes
    deadline = time.monotonic() + timeout
    next_probe = 0.0
    while inbox.probes == seen:
        now = time.monotonic()
        if now > deadline:
            pytest.fail(f"no message on {channel!r} through {publisher.url} within {timeout} s")
        if now >= next_probe:
            publisher.publish(channel, PROBE)
            next_probe = now + 0.05
        for c in ctxs:
            c.service(5)
