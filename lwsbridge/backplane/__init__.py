"""A pub/sub backplane whose sockets join the context's poll loop (docs/scaling.md).

:func:`connect` takes ``redis://HOST:PORT`` (a Redis server's pub/sub) or
``zmq://HOST:PORT`` (the ``lwsbridge-zmq-proxy`` broker's address) and returns a
backplane with ``publish(channel, data)``, ``subscribe(channel, callback)`` and
``unsubscribe(channel, callback=None)``.  Its sockets are adopted by the context
(:meth:`~lwsbridge.context.Context.adopt_fd`), so whatever loop serves the context
serves the backplane too, and callbacks run in the service thread, like every
WebSocket callback.  Delivery is at-most-once, in order per publisher.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from lwsbridge.backplane._base import Callback, StatusCallback

if TYPE_CHECKING:
    from lwsbridge.context import Context

__all__ = [
    "Backplane",
    "BackplaneURL",
    "BackplaneURLError",
    "Callback",
    "StatusCallback",
    "connect",
    "parse_url",
]

SCHEMES = ("redis", "zmq")


class Backplane(Protocol):
    """What both implementations offer."""

    url: str

    @property
    def connected(self) -> bool: ...

    def publish(self, channel: str, data: bytes | str) -> bool: ...

    def subscribe(self, channel: str, callback: Callback) -> None: ...

    def unsubscribe(self, channel: str, callback: Callback | None = None) -> None: ...

    def close(self) -> None: ...


class BackplaneURLError(ValueError):
    """A backplane URL that cannot be used; the message names it."""


class BackplaneURL(NamedTuple):
    scheme: str
    host: str
    port: int


def parse_url(url: str) -> BackplaneURL:
    """``redis://HOST:PORT`` or ``zmq://HOST:PORT`` (IPv6 as ``[::1]``), else a clear error."""

    def bad(why: str) -> BackplaneURLError:
        return BackplaneURLError(
            f"bad backplane URL {url!r}: {why} (expected redis://HOST:PORT or zmq://HOST:PORT)"
        )

    if not isinstance(url, str):
        raise bad("not a string")
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise bad("no scheme")
    scheme = scheme.lower()
    if scheme not in SCHEMES:
        raise bad(f"unknown scheme {scheme!r}")
    if rest.endswith("/"):
        rest = rest[:-1]
    if any(c in rest for c in "/?#@"):
        raise bad("only HOST:PORT may follow the scheme")
    if rest.startswith("["):
        host, close, after = rest[1:].partition("]")
        if not close or not after.startswith(":"):
            raise bad("an IPv6 address is written [ADDRESS]:PORT")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise bad(f"{host!r} is not an IPv6 address") from None
        port_text = after[1:]
    else:
        host, colon, port_text = rest.rpartition(":")
        if not colon:
            raise bad("no port")
        if ":" in host:
            raise bad("write an IPv6 address in brackets")
    if not host:
        raise bad("no host")
    if not port_text.isdigit():
        raise bad(f"port {port_text!r} is not a number")
    port = int(port_text)
    top = 65534 if scheme == "zmq" else 65535  # the proxy's XPUB is on PORT+1
    if not 1 <= port <= top:
        raise bad(f"port {port} is out of range 1-{top}")
    return BackplaneURL(scheme, host, port)


def connect(context: Context, url: str, **options: Any) -> Backplane:
    """The backplane at ``url``, its sockets in ``context``'s poll set.

    Options go to :class:`~lwsbridge.backplane.redis_backplane.RedisBackplane` or
    :class:`~lwsbridge.backplane.zmq_backplane.ZmqBackplane`.  Call from the context's
    service thread; ``close()`` it before destroying the context.
    """
    u = parse_url(url)
    if u.scheme == "redis":
        from lwsbridge.backplane.redis_backplane import RedisBackplane

        return RedisBackplane(context, u.host, u.port, url=url, **options)
    try:
        from lwsbridge.backplane.zmq_backplane import ZmqBackplane

        return ZmqBackplane(context, u.host, u.port, url=url, **options)
    except ImportError as exc:
        raise BackplaneURLError(
            f"backplane URL {url!r} needs pyzmq: pip install 'lwsbridge[zmq]' ({exc})"
        ) from None
