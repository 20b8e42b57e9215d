"""Old home of the shared adapter names; they live in :mod:`._base` now (re-exported)."""

from __future__ import annotations

from lwsbridge.adapters._base import (
    POLLERR,
    POLLHUP,
    POLLIN,
    POLLNVAL,
    POLLOUT,
    UnknownFdError,
)

__all__ = ["POLLERR", "POLLHUP", "POLLIN", "POLLNVAL", "POLLOUT", "UnknownFdError", "describe"]


def describe(events: int) -> str:
    """``POLLIN|POLLOUT`` style text for log messages."""
    names = [n for bit, n in ((POLLIN, "POLLIN"), (POLLOUT, "POLLOUT")) if events & bit]
    return "|".join(names) or "0"
