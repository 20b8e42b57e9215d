"""The poll reporter (lws ``core-net/pollfd.c``): the poll set, the sink, protocol 0's reports.

One object owns what the context wants watched.  Callers say what they want for an
fd; the :class:`~lwsbridge.core.pollset.PollSet` diffs it against what is watched,
and only a real change is reported, twice over: to protocol 0's callback as
``LOCK_POLL`` / the change / ``UNLOCK_POLL`` (lws's external-poll contract), and to
the attached :class:`~lwsbridge.vocabulary.PollSink` (an adapter), with the old and
new masks so that the adapter keeps no table of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lwsbridge.core.pollset import PollArgs, PollChange, PollKind, PollSet
from lwsbridge.vocabulary import PollSink, Reason

__all__ = ["REASON_OF_KIND", "PollReporter"]

#: The core's poll kinds and the callback reasons they are reported as.  Written out,
#: not derived from equal numbers: the core knows nothing of callback reasons.
REASON_OF_KIND: dict[PollKind, Reason] = {
    PollKind.ADD_POLL_FD: Reason.ADD_POLL_FD,
    PollKind.DEL_POLL_FD: Reason.DEL_POLL_FD,
    PollKind.SET_MODE_POLL_FD: Reason.SET_MODE_POLL_FD,
    PollKind.CLEAR_MODE_POLL_FD: Reason.CLEAR_MODE_POLL_FD,
}

#: ``notify(reason, args)``: how protocol 0 hears of a change
Notify = Callable[[Reason, Any], Any]
#: ``report(reason, args)``: protocol 0 hears ``LOCK_POLL``, ``reason``, ``UNLOCK_POLL``
Report = Callable[[Reason, PollArgs], None]

_LOCK, _UNLOCK = Reason.LOCK_POLL, Reason.UNLOCK_POLL
_ADD, _DEL = Reason.ADD_POLL_FD, Reason.DEL_POLL_FD


def _add_is_final(sink: PollSink | None) -> bool:
    return getattr(sink, "add_is_final", False) is True


class PollReporter:
    """Owns the poll set and the sink; reports every change to both.

    ``notify(reason, args)`` is called three times per change (LOCK_POLL, the change,
    UNLOCK_POLL); or, when ``report`` is given, ``report(reason, args)`` once, which
    delivers the same three itself.  A context's ADD and DEL run once per connection
    each, so the one call instead of three saves a call level per callback there.
    """

    __slots__ = ("_notify", "_report", "_set", "_sink", "add_is_final", "watched")

    def __init__(
        self, notify: Notify, sink: PollSink | None = None, *, report: Report | None = None
    ) -> None:
        self._set = PollSet()
        #: fd -> events of every fd watched (a live read-only view)
        self.watched = self._set.watched
        self._sink = sink
        #: the sink says (``add_is_final = True``) that an ``add_fd`` that returns has the
        #: fd watched -- a refusal raises -- so a new socket may be read before the wait
        self.add_is_final = _add_is_final(sink)
        self._notify = notify
        self._report: Report = report if report is not None else self._notify_three

    # -- queries -------------------------------------------------------------------------

    def __contains__(self, fd: object) -> bool:
        return fd in self._set

    def __len__(self) -> int:
        return len(self._set)

    def items(self) -> list[tuple[int, int]]:
        """Every fd watched, with its events (a snapshot)."""
        return self._set.items()

    @property
    def sink(self) -> PollSink | None:
        return self._sink

    def attach(self, sink: PollSink | None) -> None:
        """Attach (or, with None, detach) a sink; it is told of every fd already watched."""
        self._sink = sink
        self.add_is_final = _add_is_final(sink)
        if sink is not None:
            for fd, events in self._set.items():
                sink.add_fd(fd, events)

    # -- changes -------------------------------------------------------------------------

    def add(self, fd: int, events: int) -> None:
        """Start watching ``fd`` (ADD_POLL_FD); the sink may refuse by raising."""
        self._report(_ADD, self._set.add_args(fd, events))
        if self._sink is not None:
            self._sink.add_fd(fd, events)

    def discard(self, fd: int) -> None:
        """Stop watching ``fd`` (DEL_POLL_FD), before it is closed; no-op when not watched."""
        if fd not in self.watched:  # the C-level view: no Python call
            return
        args = self._set.remove_args(fd)
        self._report(_DEL, args)
        if self._sink is not None:
            self._sink.del_fd(fd, args.prev_events)

    def forget(self, fd: int) -> None:
        """Drop ``fd`` without reporting (its ADD was refused by the sink)."""
        if fd in self._set:
            self._set.remove_args(fd)

    def want(self, fd: int, events: int) -> None:
        """Watch ``events`` on ``fd``: SET_MODE / CLEAR_MODE only for what changes."""
        changes = self._set.want(fd, events)
        if changes:
            for change in changes:
                self._tell_protocol0(change)
            if self._sink is not None:
                self._sink.change_fd(fd, changes[0].args.prev_events, events)

    def _tell_protocol0(self, change: PollChange) -> None:
        self._report(REASON_OF_KIND[change.kind], change.args)

    def _notify_three(self, reason: Reason, args: PollArgs) -> None:
        notify = self._notify
        notify(_LOCK, args)
        notify(reason, args)
        notify(_UNLOCK, args)
