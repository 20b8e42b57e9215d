"""The Redis pub/sub backplane: two connections whose sockets join the context's poll set.

A connection that has sent SUBSCRIBE can only (un)subscribe and ping, so publishing
has a connection of its own.  Each connection (:class:`_Link`) connects without
blocking (POLLOUT says connected, SO_ERROR says whether), buffers its writes and
flushes them on POLLOUT, and parses the replies sans-IO (:mod:`.resp`: hiredis when
installed).  A lost connection is closed and opened again after a backoff that doubles
from ``backoff`` up to ``max_backoff``; the subscribing one then subscribes again to
every channel.

A connection that is up but silent -- Redis frozen, a peer host gone without a FIN or
RST, a dropped NAT entry -- would otherwise never be noticed on the subscribing side,
which only reads.  Each connection therefore sends PING every ``health_interval``
seconds while up (allowed in subscribed mode too) and counts any bytes read as life;
a PING still unanswered at the next tick makes it lost, so a silent connection is
given up within ``2 * health_interval``.  A connect that neither succeeds nor fails
(SYNs dropped) is given up after ``connect_timeout``.  Both then reconnect as above.

Delivery is at-most-once (docs/scaling.md): a message published while either
connection is down is not delivered -- :meth:`RedisBackplane.publish` returns False
while the publishing connection is down, and Redis does not keep messages for a
subscriber that is away.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Callable
from typing import Any

from lwsbridge.backplane._base import (
    Callback,
    StatusCallback,
    Subscriptions,
    check_channel,
    check_seconds,
)
from lwsbridge.backplane.resp import Reader, ReplyError, encode_command, make_reader
from lwsbridge.context import POLLERR, POLLHUP, POLLIN, POLLOUT, Context
from lwsbridge.log import NOTICE, logger
from lwsbridge.timers import TimerHandle

__all__ = ["RedisBackplane"]

_READ_SIZE = 256 * 1024
_PING = encode_command(b"PING")


class _Link:
    """One connection to Redis, reconnecting with backoff until closed."""

    def __init__(
        self,
        ctx: Context,
        addr: tuple[int, Any],
        name: str,
        *,
        on_up: Callable[[], None],
        on_reply: Callable[[Any], None],
        on_down: Callable[[], None],
        backoff: float,
        max_backoff: float,
        health_interval: float,
        connect_timeout: float,
    ) -> None:
        self._ctx = ctx
        self._family, self._sockaddr = addr
        self.name = name
        self._on_up, self._on_reply, self._on_down = on_up, on_reply, on_down
        self._backoff0 = self._backoff = backoff
        self._max_backoff = max_backoff
        self._sock: socket.socket | None = None
        self._fd = -1
        self._reader: Reader = make_reader()
        self._timer: TimerHandle | None = None
        #: the connect timeout until Redis has answered, then the PING tick
        self._watch: TimerHandle | None = None
        self._health_interval = health_interval
        self._connect_timeout = connect_timeout
        #: a PING was sent and nothing has been read since
        self._unanswered = False
        self._closed = False
        #: the TCP connection is established (Redis may not have answered yet)
        self._tcp = False
        #: True once Redis has answered the greeting PING, until the connection is lost
        self.up = False
        #: bytes waiting for the kernel
        self.out = bytearray()
        self._failures = 0

    def open(self) -> None:
        self._timer = None
        if self._closed:
            return
        try:
            sock = socket.socket(self._family, socket.SOCK_STREAM)
        except OSError as exc:  # out of fds, say: try again later, as for a refusal
            self._retry(f"socket: {exc.strerror or exc}")
            return
        sock.setblocking(False)
        if self._family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = sock.connect_ex(self._sockaddr)
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            self._retry(f"connect: {errno.errorcode.get(err, err)}")
            return
        self._sock = sock
        self._fd = sock.fileno()
        self._reader = make_reader()
        try:
            self._ctx.adopt_fd(self._fd, POLLOUT, self._ready)  # writable = connected
        except Exception as exc:
            self._sock = None
            self._fd = -1
            sock.close()
            self._retry(f"the loop refused the socket: {exc}")
            return
        self._arm(self._connect_timeout, self._connect_timed_out)

    def _arm(self, delay: float, fn: Callable[[], None]) -> None:
        if self._watch is not None:
            self._watch.cancel()
        self._watch = self._ctx.call_later(delay, fn) if delay > 0 else None

    def _connect_timed_out(self) -> None:
        self._watch = None
        if self._sock is not None and not self.up:
            self._lost(f"connect: no answer from Redis in {self._connect_timeout:g} s")

    def _tick(self) -> None:
        """The health check: the last PING must have been answered by now."""
        self._watch = None
        if self._sock is None or not self.up:
            return
        if self._unanswered:
            self._lost(f"no answer to PING in {self._health_interval:g} s")
            return
        self._unanswered = True
        self.send(_PING)
        if self._sock is not None:
            self._arm(self._health_interval, self._tick)

    def _ready(self, fd: int, revents: int) -> None:
        sock = self._sock
        if sock is None or fd != self._fd:
            return
        if not self._tcp:
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._lost(f"connect: {errno.errorcode.get(err, err)}")
                return
            # Connected is not yet "up": a stopped or overloaded Redis still completes
            # the TCP handshake in the kernel.  Up means Redis answered this PING (the
            # connect timeout keeps running until then).
            self._tcp = True
            self.out += _PING
            self.flush()
            return
        if revents & POLLOUT:
            self.flush()
        if revents & (POLLIN | POLLHUP | POLLERR) and self._sock is sock:
            self._read(sock)

    def _read(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lost(f"read: {exc.strerror or exc}")
            return
        if not data:
            self._lost("closed by the server")
            return
        self._unanswered = False  # any bytes from Redis say the connection lives
        reader = self._reader
        try:
            reader.feed(data)
            while (reply := reader.gets()) is not False:
                if self.up:
                    self._on_reply(reply)
                else:
                    self._greeted(reply)
                if self._sock is not sock:
                    return  # lost or closed by a callback
        except Exception as exc:
            # Not RESP (not a Redis server?), or our bug: this connection is unusable.
            logger.exception("backplane: %s: bad reply", self.name)
            self._lost(f"bad reply: {exc}")

    def _greeted(self, reply: Any) -> None:
        """Redis answered the greeting PING: the link is up (or refused, e.g. NOAUTH)."""
        if isinstance(reply, ReplyError):
            self._lost(f"Redis answered PING with an error: {reply}")
            return
        self.up = True
        self._backoff = self._backoff0
        if self._failures:
            logger.log(NOTICE, "backplane: %s connected again", self.name)
        self._failures = 0
        self._unanswered = False
        self._arm(self._health_interval, self._tick)
        self._on_up()

    def send(self, data: bytes) -> None:
        """Queue ``data`` and write what the kernel takes (only while up)."""
        self.out += data
        self.flush()

    def flush(self) -> None:
        sock = self._sock
        if sock is None or not self._tcp:
            return
        out = self.out
        if out:
            try:
                n = sock.send(out)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as exc:
                self._lost(f"write: {exc.strerror or exc}")
                return
            del out[:n]
        self._ctx.set_fd_events(self._fd, POLLIN | (POLLOUT if out else 0))

    def _lost(self, why: str) -> None:
        was_up = self.up
        self._drop()
        if was_up:
            logger.log(NOTICE, "backplane: %s lost (%s); reconnecting", self.name, why)
            self._on_down()
        self._retry(why)

    def _retry(self, why: str) -> None:
        if self._closed:
            return
        self._failures += 1
        if self._failures == 1:
            logger.log(NOTICE, "backplane: %s: %s; retrying", self.name, why)
        delay = self._backoff
        self._backoff = min(self._backoff * 2, self._max_backoff)
        self._timer = self._ctx.call_later(delay, self.open)

    def _drop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        self._unanswered = False
        self._tcp = False
        self.up = False
        self.out.clear()  # at-most-once: what the old connection did not take is lost
        if self._sock is not None:
            self._ctx.release_fd(self._fd)
            with contextlib.suppress(OSError):
                self._sock.close()
        self._sock = None
        self._fd = -1

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._drop()


class RedisBackplane:
    """Publish/subscribe through one Redis server (see the module's docstring).

    ``on_status(up)`` is called when both connections are up (True) and when one of
    them is lost (False): between the two, messages are lost.  ``max_buffer`` bounds
    the bytes waiting to be written to Redis; beyond it :meth:`publish` drops the
    message and returns False.  ``health_interval`` and ``connect_timeout`` (seconds;
    0 turns either off) bound how long a silent or hanging connection goes unnoticed.
    """

    def __init__(
        self,
        context: Context,
        host: str,
        port: int,
        *,
        on_status: StatusCallback | None = None,
        backoff: float = 0.05,
        max_backoff: float = 2.0,
        max_buffer: int = 8 << 20,
        health_interval: float = 5.0,
        connect_timeout: float = 5.0,
        url: str | None = None,
    ) -> None:
        self.url = url or f"redis://{host}:{port}"
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, _type, _proto, _canon, sockaddr = infos[0]
        self._ctx = context
        self._subs = Subscriptions()
        self._on_status = on_status
        self._max_buffer = max_buffer
        self._status = False
        self._dropping = False
        #: channels Redis has confirmed (SUBSCRIBE answered), for :meth:`subscribed`
        self._active: set[str] = set()
        check_seconds("health_interval", health_interval)
        check_seconds("connect_timeout", connect_timeout)
        common: dict[str, Any] = {
            "backoff": backoff,
            "max_backoff": max_backoff,
            "health_interval": health_interval,
            "connect_timeout": connect_timeout,
        }
        self._sub = _Link(
            context,
            (family, sockaddr),
            f"{self.url} (subscribe)",
            on_up=self._sub_up,
            on_reply=self._sub_reply,
            on_down=self._down,
            **common,
        )
        self._pub = _Link(
            context,
            (family, sockaddr),
            f"{self.url} (publish)",
            on_up=self._up,
            on_reply=self._pub_reply,
            on_down=self._down,
            **common,
        )
        self._sub.open()
        self._pub.open()

    # -- the API ---------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Both connections are up."""
        return self._sub.up and self._pub.up

    def subscribed(self, channel: str) -> bool:
        """Redis has confirmed the subscription to ``channel`` on the current connection."""
        return channel in self._active

    def publish(self, channel: str, data: bytes | str) -> bool:
        """Send ``data`` to every subscriber of ``channel``; False if it was dropped
        (the publishing connection is down, or ``max_buffer`` is full)."""
        name = check_channel(channel)
        payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        pub = self._pub
        if not pub.up or len(pub.out) > self._max_buffer:
            if not self._dropping:
                self._dropping = True
                why = "not connected" if not pub.up else f"{len(pub.out)} bytes unsent"
                logger.log(NOTICE, "backplane: %s: dropping messages (%s)", self.url, why)
            return False
        self._dropping = False
        pub.send(encode_command(b"PUBLISH", name, payload))
        return True

    def subscribe(self, channel: str, callback: Callback) -> None:
        """Call ``callback(channel, data)`` in the service thread for each message."""
        name = check_channel(channel)
        if self._subs.add(channel, callback) and self._sub.up:
            self._sub.send(encode_command(b"SUBSCRIBE", name))

    def unsubscribe(self, channel: str, callback: Callback | None = None) -> None:
        """Remove ``callback`` (None: every callback) from ``channel``."""
        name = check_channel(channel)
        if self._subs.remove(channel, callback):
            self._active.discard(channel)
            if self._sub.up:
                self._sub.send(encode_command(b"UNSUBSCRIBE", name))

    def close(self) -> None:
        """Close both connections (releasing their fds from the context)."""
        self._sub.close()
        self._pub.close()
        self._active.clear()

    # -- the connections ---------------------------------------------------------------------

    def _sub_up(self) -> None:
        channels = self._subs.channels()
        if channels:
            self._sub.send(encode_command(b"SUBSCRIBE", *(check_channel(c) for c in channels)))
        self._up()

    def _up(self) -> None:
        if self.connected and not self._status:
            self._status = True
            self._dropping = False
            self._tell(True)

    def _down(self) -> None:
        self._active.clear()
        if self._status:
            self._status = False
            self._tell(False)

    def _tell(self, up: bool) -> None:
        if self._on_status is not None:
            try:
                self._on_status(up)
            except Exception:
                logger.exception("backplane on_status callback raised")

    def _sub_reply(self, reply: Any) -> None:
        if isinstance(reply, ReplyError):
            logger.error("backplane: %s: %s", self._sub.name, reply)
            return
        if not isinstance(reply, list) or len(reply) < 3:
            return
        kind = reply[0]
        channel = reply[1].decode("utf-8", "replace") if isinstance(reply[1], bytes) else ""
        if kind == b"message":
            self._subs.deliver(channel, reply[2])
        elif kind == b"subscribe":
            if channel in self._subs:
                self._active.add(channel)
        elif kind == b"unsubscribe":
            self._active.discard(channel)

    def _pub_reply(self, reply: Any) -> None:
        if isinstance(reply, ReplyError):
            logger.error("backplane: %s: %s", self._pub.name, reply)
