"""Whole messages from partial deliveries, for users who do not want fragments."""

from __future__ import annotations

from dataclasses import dataclass

from lwsbridge.core.errors import RemoteProtocolError
from lwsbridge.core.events import DataReceived

__all__ = ["Message", "MessageAssembler", "MessageTooBig"]


class MessageTooBig(RemoteProtocolError):
    """The assembled message passed the assembler's limit (close with 1009)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"message over the {limit} byte limit", code=1009)


@dataclass(frozen=True, slots=True)
class Message:
    """A complete message: ``str`` for text, ``bytes`` for binary."""

    data: str | bytes

    @property
    def is_binary(self) -> bool:
        return isinstance(self.data, bytes)


class MessageAssembler:
    """Feed it every :class:`DataReceived`; it returns a :class:`Message` at each message end.

    The pieces are kept in a list and joined once (no quadratic concatenation).
    ``max_size`` (0 = unlimited) raises :class:`MessageTooBig` as soon as it is passed.
    """

    __slots__ = ("_parts", "_size", "max_size")

    def __init__(self, max_size: int = 1 << 20) -> None:
        self.max_size = max_size
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, event: DataReceived) -> Message | None:
        if event.is_first:
            self._parts.clear()
            self._size = 0
        self._size += len(event.data)
        if self.max_size and self._size > self.max_size:
            self._parts.clear()
            raise MessageTooBig(self.max_size)
        if not event.is_final:
            self._parts.append(event.data)
            return None
        if self._parts:
            self._parts.append(event.data)
            data = b"".join(self._parts)
            self._parts.clear()
        else:
            data = event.data
        self._size = 0
        # The core validated text as UTF-8 already (RFC 6455 §8.1).
        return Message(data if event.is_binary else data.decode("utf-8"))
