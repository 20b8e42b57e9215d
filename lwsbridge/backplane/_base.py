"""What every backplane shares: the subscription table and delivery to callbacks."""

from __future__ import annotations

import math
from collections.abc import Callable

from lwsbridge.log import logger

__all__ = ["Callback", "StatusCallback", "Subscriptions", "check_channel", "check_seconds"]

#: ``callback(channel, data)``, run in the context's service thread
Callback = Callable[[str, bytes], object]
#: ``on_status(up)``: the link to the broker went up (True) or down (False)
StatusCallback = Callable[[bool], object]


def check_seconds(name: str, value: float) -> None:
    """A clear error for an interval option that is not 0 (off) or a finite positive."""
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be 0 (off) or more seconds, not {value!r}")


def check_channel(channel: str) -> bytes:
    """The channel's name on the wire; a clear error for one no backplane can carry."""
    if not isinstance(channel, str) or not channel:
        raise ValueError(f"a channel is a non-empty str, not {channel!r}")
    if "\0" in channel:
        raise ValueError(f"channel {channel!r} contains NUL")
    return channel.encode("utf-8")


class Subscriptions:
    """channel -> callbacks, in subscription order."""

    __slots__ = ("_by_channel",)

    def __init__(self) -> None:
        self._by_channel: dict[str, list[Callback]] = {}

    def __contains__(self, channel: object) -> bool:
        return channel in self._by_channel

    def channels(self) -> list[str]:
        return list(self._by_channel)

    def add(self, channel: str, callback: Callback) -> bool:
        """Add ``callback``; True when the channel is new (the broker must be told)."""
        callbacks = self._by_channel.get(channel)
        if callbacks is None:
            self._by_channel[channel] = [callback]
            return True
        callbacks.append(callback)
        return False

    def remove(self, channel: str, callback: Callback | None) -> bool:
        """Remove ``callback`` (None: all); True when the channel is left with none."""
        callbacks = self._by_channel.get(channel)
        if callbacks is None:
            return False
        if callback is None:
            callbacks.clear()
        else:
            try:
                callbacks.remove(callback)
            except ValueError:
                return False
        if callbacks:
            return False
        del self._by_channel[channel]
        return True

    def deliver(self, channel: str, data: bytes) -> None:
        """Call each callback of ``channel``; one that raises is logged, the rest still run."""
        callbacks = self._by_channel.get(channel)
        if not callbacks:
            return  # unsubscribed while the message was on its way
        for cb in tuple(callbacks):
            try:
                cb(channel, data)
            except Exception:
                logger.exception("backplane callback %r raised on channel %r", cb, channel)
