"""Timers.armed: what the service tests on every pass instead of calling next_deadline and
due.  It must be True whenever a heap holds an entry, else a timer would never fire."""

from __future__ import annotations

import time
from typing import Any

from lwsbridge.lifecycle import TimerKind
from lwsbridge.timers import Timers


class FakeConn:
    def __init__(self) -> None:
        self.timer_gens = [0] * len(TimerKind)
        self.alive = True


def test_armed_follows_both_heaps() -> None:
    t = Timers()
    conn: Any = FakeConn()
    assert not t.armed and t.next_deadline() is None
    t.schedule(conn, TimerKind.PROTOCOL, 0.0)
    assert t.armed
    t.schedule(conn, TimerKind.PROTOCOL, None)  # cancelled: stale until it reaches the top
    assert t.armed
    assert t.next_deadline() is None  # drops the stale entry
    assert not t.armed
    t.schedule(conn, TimerKind.PROTOCOL, 0.0)
    t.schedule(conn, TimerKind.USER, 3600.0)
    assert t.pop_expired(time.monotonic() + 1) == [(conn, TimerKind.PROTOCOL)]
    assert t.armed  # the USER timer is still in
    t.schedule(conn, TimerKind.USER, None)
    assert t.pop_expired(time.monotonic() + 7200) == []
    assert not t.armed
    h = t.call_later(0, lambda: None)
    assert t.armed and t.due(time.monotonic())
    assert t.pop_due_calls(time.monotonic()) == [h]
    assert not t.armed
    t.call_later(3600, lambda: None).cancel()
    assert t.armed
    assert t.next_deadline() is None
    assert not t.armed
