"""Poll-set diffing: wanted vs current interest per fd, reported only when it changes.

The same idea as trio's epoll backend: callers say what they want for an fd; the
kernel (here: the host's loop, through poll events) is touched only on a real change.
Constants are the Linux ``struct pollfd`` bits lws uses; adapters translate them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from types import MappingProxyType

__all__ = [
    "POLLERR",
    "POLLHUP",
    "POLLIN",
    "POLLNVAL",
    "POLLOUT",
    "PollArgs",
    "PollChange",
    "PollKind",
    "PollSet",
]

POLLIN = 0x001
POLLPRI = 0x002
POLLOUT = 0x004
POLLERR = 0x008
POLLHUP = 0x010
POLLNVAL = 0x020


class PollKind(IntEnum):
    """What changed; values are the lws callback reason numbers where lws 4 has one."""

    ADD_POLL_FD = 32  # LWS_CALLBACK_ADD_POLL_FD
    DEL_POLL_FD = 33  # LWS_CALLBACK_DEL_POLL_FD
    # lws 1.x names (LWS_CALLBACK_SET_MODE_POLL_FD / _CLEAR_MODE_); lws 4 folded them
    # into CHANGE_MODE_POLL_FD (34), so they are numbered outside lws 4's range.
    SET_MODE_POLL_FD = 300
    CLEAR_MODE_POLL_FD = 301


@dataclass(frozen=True, slots=True)
class PollArgs:
    """lws ``struct lws_pollargs``: the fd, its events now, and before this change.

    ``bits`` is what this event adds (SET_MODE) or removes (CLEAR_MODE).
    """

    fd: int
    events: int
    prev_events: int

    @property
    def bits(self) -> int:
        return self.events ^ self.prev_events


@dataclass(frozen=True, slots=True)
class PollChange:
    kind: PollKind
    args: PollArgs


class PollSet:
    """The events currently requested per fd, and the diff to a new wish."""

    __slots__ = ("_current", "watched")

    def __init__(self) -> None:
        self._current: dict[int, int] = {}
        #: fd -> events, read-only and live: ``fd in watched`` is one C-level lookup
        #: (``service_fd`` asks it for every ready fd)
        self.watched: Mapping[int, int] = MappingProxyType(self._current)

    def __contains__(self, fd: object) -> bool:
        return fd in self._current

    def __len__(self) -> int:
        return len(self._current)

    def events(self, fd: int) -> int:
        return self._current.get(fd, 0)

    def items(self) -> list[tuple[int, int]]:
        return list(self._current.items())

    def add(self, fd: int, events: int) -> PollChange:
        return PollChange(PollKind.ADD_POLL_FD, self.add_args(fd, events))

    def remove(self, fd: int) -> PollChange:
        return PollChange(PollKind.DEL_POLL_FD, self.remove_args(fd))

    # The two changes every connection makes once each; their kind is known to the
    # caller, so only the args are made (a PollChange is a frozen dataclass: ~0.6 us).

    def add_args(self, fd: int, events: int) -> PollArgs:
        """:meth:`add` (ADD_POLL_FD), returning only the change's args."""
        if fd in self._current:
            raise ValueError(f"fd {fd} is already in the poll set")
        self._current[fd] = events
        return PollArgs(fd, events, 0)

    def remove_args(self, fd: int) -> PollArgs:
        """:meth:`remove` (DEL_POLL_FD), returning only the change's args."""
        return PollArgs(fd, 0, self._current.pop(fd))

    def want(self, fd: int, events: int) -> list[PollChange]:
        """Diff ``events`` against the current interest; [] when nothing changes.

        A change that both removes and adds bits is reported as CLEAR_MODE then
        SET_MODE, each with consistent ``events``/``prev_events``.
        """
        prev = self._current[fd]
        if prev == events:
            return []
        self._current[fd] = events
        out: list[PollChange] = []
        removed = prev & ~events
        added = events & ~prev
        mid = prev
        if removed:
            mid = prev & ~removed
            out.append(PollChange(PollKind.CLEAR_MODE_POLL_FD, PollArgs(fd, mid, prev)))
        if added:
            out.append(PollChange(PollKind.SET_MODE_POLL_FD, PollArgs(fd, events, mid)))
        return out
