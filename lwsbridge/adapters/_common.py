"""What every adapter shares: the error for an fd it does not know, and bit helpers."""

from __future__ import annotations

from lwsbridge.core.pollset import POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT

__all__ = ["POLLERR", "POLLHUP", "POLLIN", "POLLNVAL", "POLLOUT", "UnknownFdError", "describe"]


class UnknownFdError(LookupError):
    """A DEL or CHANGE for an fd the adapter was never told about (a broken contract)."""

    def __init__(self, fd: int, what: str, adapter: str) -> None:
        super().__init__(f"{adapter}: {what} for fd {fd}, which this adapter does not watch")
        self.fd = fd


def describe(events: int) -> str:
    """``POLLIN|POLLOUT`` style text for log messages."""
    names = [n for bit, n in ((POLLIN, "POLLIN"), (POLLOUT, "POLLOUT")) if events & bit]
    return "|".join(names) or "0"
