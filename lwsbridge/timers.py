"""Timers (lws ``core-net/sorted-usec-list.c``): one heap for every connection's timers.

Each connection has one timer of each :class:`~lwsbridge.lifecycle.TimerKind`.  Re-arming
or cancelling does not search the heap: it bumps that kind's generation, kept in the
connection's ``timer_gens``, and a heap entry whose generation no longer matches is
stale and dropped when it reaches the top.  Only this module reads or writes
``timer_gens``.
"""

from __future__ import annotations

import heapq
import time
from typing import TYPE_CHECKING

from lwsbridge.lifecycle import TimerKind

if TYPE_CHECKING:
    from lwsbridge.connection import Connection

__all__ = ["Timers"]


class Timers:
    """The heap of ``(deadline, seq, kind, generation, connection)``."""

    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerKind, int, Connection]] = []
        self._seq = 0

    def schedule(self, conn: Connection, kind: TimerKind, seconds: float | None) -> None:
        """(Re)arm ``kind`` on ``conn`` to fire in ``seconds``; None cancels it."""
        gens = conn.timer_gens
        gens[kind] += 1
        if seconds is not None:
            self._seq += 1
            heapq.heappush(
                self._heap, (time.monotonic() + seconds, self._seq, kind, gens[kind], conn)
            )

    @staticmethod
    def cancel_all(conn: Connection) -> None:
        """Make every timer of ``conn`` stale (it is closing for good)."""
        gens = conn.timer_gens
        for i in range(len(gens)):
            gens[i] += 1

    def next_deadline(self) -> float | None:
        """The earliest live deadline (``time.monotonic()`` seconds), or None."""
        heap = self._heap
        while heap:
            deadline, _seq, kind, gen, conn = heap[0]
            if gen != conn.timer_gens[kind] or not conn.alive:
                heapq.heappop(heap)
                continue
            return deadline
        return None

    def pop_expired(self, now: float) -> list[tuple[Connection, TimerKind]]:
        """Take every live timer due at ``now``; each fires once."""
        heap = self._heap
        due: list[tuple[Connection, TimerKind]] = []
        while heap and heap[0][0] <= now:
            _deadline, _seq, kind, gen, conn = heapq.heappop(heap)
            if gen == conn.timer_gens[kind] and conn.alive:
                conn.timer_gens[kind] += 1
                due.append((conn, kind))
        return due
