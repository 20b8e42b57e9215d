"""``PollLoop``: the context on ``select.poll``, a host-owned fd dict (no fd limit)."""

from __future__ import annotations

import select

from lwsbridge.adapters._array import ArrayLoop, ForeignCallback

__all__ = ["ForeignCallback", "PollLoop"]


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
