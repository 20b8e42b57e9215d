"""``PollLoop``: the context on ``select.poll`` (no fd limit)."""

from __future__ import annotations

import select
import threading

from lwsbridge.adapters._array import ArrayLoop, ForeignCallback
from lwsbridge.adapters._base import run_until
from lwsbridge.vocabulary import Serviceable

__all__ = ["ForeignCallback", "PollLoop", "serve"]


class PollLoop(ArrayLoop):
    """``PollLoop(context)``: ``run_once(timeout_ms)``, ``run_forever()``, ``stop()``.

    The events are Linux pollfd bits, which is what ``select.poll`` takes and returns.
    """

    name = "poll"

    def _kopen(self) -> None:
        self._poll = select.poll()

    def _kclose(self) -> None:
        pass

    def _kset(self, fd: int, old: int, new: int) -> None:
        # modify() of an unknown fd raises FileNotFoundError, unregister() KeyError
        if new:
            if old:
                self._poll.modify(fd, new)
            else:
                self._poll.register(fd, new)
        elif old:
            self._poll.unregister(fd)

    def _kwait(self, timeout: float | None) -> list[tuple[int, int]]:
        ms = None if timeout is None else int(timeout * 1000.0)
        return self._poll.poll(ms)


def serve(context: Serviceable, stop_event: threading.Event | None = None) -> None:
    """Serve ``context`` on poll() in this thread until ``stop_event`` is set."""
    run_until(PollLoop(context), stop_event)
