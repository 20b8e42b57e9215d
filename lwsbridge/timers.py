"""Timers (lws ``core-net/sorted-usec-list.c``): one heap for every connection's timers.

Each connection has one timer of each :class:`~lwsbridge.lifecycle.TimerKind`.  Re-arming
or cancelling does not search the heap: it bumps that kind's generation, kept in the
connection's ``timer_gens``, and a heap entry whose generation no longer matches is
stale and dropped when it reaches the top.  So is every entry of a connection that is
no longer alive: closing a connection (``Service.kill``) cancels nothing here.  Only
this module reads or writes ``timer_gens``.

A second heap holds plain callbacks (:meth:`Timers.call_later`, lws ``lws_sul``), for
parts that are not connections, such as a backplane's reconnect; a cancelled one is
dropped when it reaches the top.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from lwsbridge.lifecycle import TimerKind

if TYPE_CHECKING:
    from lwsbridge.connection import Connection

__all__ = ["TimerHandle", "Timers"]


class TimerHandle:
    """One callback scheduled with :meth:`Timers.call_later`; :meth:`cancel` it at will."""

    __slots__ = ("callback", "cancelled", "deadline")

    def __init__(self, deadline: float, callback: Callable[[], object]) -> None:
        self.deadline = deadline
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        """It will not run (a no-op once it has run)."""
        self.cancelled = True


class Timers:
    """The heap of ``(deadline, seq, kind, generation, connection)``, and of callbacks."""

    __slots__ = ("_calls", "_heap", "_seq", "armed")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerKind, int, Connection]] = []
        self._calls: list[tuple[float, int, TimerHandle]] = []
        self._seq = 0
        #: Some entry is in a heap (a stale one included).  False: no deadline, nothing
        #: due -- what the service tests on every pass, without a call.
        self.armed = False

    def call_later(self, seconds: float, callback: Callable[[], object]) -> TimerHandle:
        """Run ``callback()`` once, ``seconds`` from now (0: at the next service_pending)."""
        handle = TimerHandle(time.monotonic() + max(0.0, seconds), callback)
        self._seq += 1
        heapq.heappush(self._calls, (handle.deadline, self._seq, handle))
        self.armed = True
        return handle

    def pop_due_calls(self, now: float) -> list[TimerHandle]:
        """Take every callback due at ``now`` that is not cancelled; each runs once."""
        calls = self._calls
        due: list[TimerHandle] = []
        while calls and calls[0][0] <= now:
            handle = heapq.heappop(calls)[2]
            if not handle.cancelled:
                handle.cancelled = True  # ran: a later cancel() is a no-op
                due.append(handle)
        self.armed = bool(self._heap or calls)
        return due

    def schedule(self, conn: Connection, kind: TimerKind, seconds: float | None) -> None:
        """(Re)arm ``kind`` on ``conn`` to fire in ``seconds``; None cancels it."""
        gens = conn.timer_gens
        gens[kind] += 1
        if seconds is not None:
            self._seq += 1
            heapq.heappush(
                self._heap, (time.monotonic() + seconds, self._seq, kind, gens[kind], conn)
            )
            self.armed = True

    def next_deadline(self) -> float | None:
        """The earliest live deadline (``time.monotonic()`` seconds), or None."""
        calls = self._calls
        while calls and calls[0][2].cancelled:
            heapq.heappop(calls)
        first = calls[0][0] if calls else None
        heap = self._heap
        while heap:
            deadline, _seq, kind, gen, conn = heap[0]
            if gen != conn.timer_gens[kind] or not conn.alive:
                heapq.heappop(heap)
                continue
            return deadline if first is None else min(deadline, first)
        self.armed = first is not None
        return first

    def due(self, now: float) -> bool:
        """Whether a timer or callback (live or stale) is due at ``now``: one call, not two."""
        heap = self._heap
        calls = self._calls
        return bool(heap and heap[0][0] <= now) or bool(calls and calls[0][0] <= now)

    def pop_expired(self, now: float) -> list[tuple[Connection, TimerKind]]:
        """Take every live timer due at ``now``; each fires once."""
        heap = self._heap
        due: list[tuple[Connection, TimerKind]] = []
        while heap and heap[0][0] <= now:
            _deadline, _seq, kind, gen, conn = heapq.heappop(heap)
            if gen == conn.timer_gens[kind] and conn.alive:
                conn.timer_gens[kind] += 1
                due.append((conn, kind))
        self.armed = bool(heap or self._calls)
        return due
