"""The ZeroMQ backplane: PUB and SUB sockets on a ``zmq.proxy`` (XSUB/XPUB) broker.

The broker is ``lwsbridge-zmq-proxy --bind HOST:PORT``: publishers connect to its XSUB
socket on PORT, subscribers to its XPUB socket on PORT+1.  The SUB socket's ``ZMQ_FD``
joins the context's poll set.  That fd is edge-triggered: it signals that the socket's
state *may* have changed, and reading ``ZMQ_EVENTS`` re-arms it.  So a readable fd is
drained while ``ZMQ_EVENTS`` says POLLIN, and after every other operation on the socket
(setting a subscription) ``ZMQ_EVENTS`` is read again: that operation may have taken
the edge, and a POLLIN found then is drained by a timer, since no fd event will come.
The PUB socket never blocks (ZeroMQ drops at its high-water mark) and never has
anything to read, so it stays out of the poll set; ``ZMQ_EVENTS`` is still read after
each send, as pyzmq's documentation asks of every socket whose fd may be polled.

A message is two frames, ``[channel + b"\\0", data]``: ZeroMQ subscriptions match
prefixes, and the NUL makes channel ``a`` not match channel ``ab``.  ZeroMQ reconnects
by itself and sends the subscriptions again; messages sent while a peer is away are
lost (at-most-once, docs/scaling.md).

Health: a proxy that stops answering without closing its connections (stopped, hung,
its host gone without a FIN) would leave the SUB socket waiting for ever, since it
never writes anything a dead TCP peer could refuse.  So both sockets send ZMTP
heartbeats (``ZMQ_HEARTBEAT_IVL`` = ``health_interval``); a connection with no answer
for twice that is dropped by ZeroMQ, which then reconnects.  Each socket's monitor
(``zmq_socket_monitor``, an inproc PAIR whose ``ZMQ_FD`` joins the poll set the same
edge-triggered way) reports its connections: a connection counts once its ZMTP
handshake succeeded, and :attr:`ZmqBackplane.connected` / ``on_status`` follow both
sockets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lwsbridge.backplane._base import (
    Callback,
    StatusCallback,
    Subscriptions,
    check_channel,
    check_seconds,
)
from lwsbridge.context import POLLIN, Context
from lwsbridge.log import NOTICE, logger
from lwsbridge.timers import TimerHandle

__all__ = ["ZmqBackplane"]

#: messages taken per service before yielding to the other fds (then a timer goes on)
_DRAIN_BUDGET = 256


class ZmqBackplane:
    """Publish/subscribe through ``lwsbridge-zmq-proxy`` at ``host:port``.

    ``on_status(up)`` is called when both sockets have a connection to the proxy
    (True) and when one of them is lost (False).  ``health_interval`` (seconds, 0 off)
    is the ZMTP heartbeat: a proxy silent for twice that is given up and reconnected.
    ``sndhwm`` / ``rcvhwm`` are ZeroMQ's high-water marks (messages).
    """

    def __init__(
        self,
        context: Context,
        host: str,
        port: int,
        *,
        url: str | None = None,
        sndhwm: int = 100_000,
        rcvhwm: int = 100_000,
        on_status: StatusCallback | None = None,
        health_interval: float = 5.0,
    ) -> None:
        import zmq  # type: ignore[import-not-found, unused-ignore]

        check_seconds("health_interval", health_interval)

        self._zmq: Any = zmq
        self.url = url or f"zmq://{host}:{port}"
        h = f"[{host}]" if ":" in host else host
        self._ctx = context
        self._subs = Subscriptions()
        self._zctx: Any = zmq.Context()
        self._pub: Any = self._zctx.socket(zmq.PUB)
        self._sub: Any = self._zctx.socket(zmq.SUB)
        for s in (self._pub, self._sub):
            s.setsockopt(zmq.LINGER, 0)
            if ":" in host:
                s.setsockopt(zmq.IPV6, 1)
            if health_interval:
                ivl = max(1, round(health_interval * 1000))
                s.setsockopt(zmq.HEARTBEAT_IVL, ivl)
                s.setsockopt(zmq.HEARTBEAT_TIMEOUT, 2 * ivl)
                s.setsockopt(zmq.HEARTBEAT_TTL, 2 * ivl)
        self._pub.setsockopt(zmq.SNDHWM, sndhwm)
        self._sub.setsockopt(zmq.RCVHWM, rcvhwm)
        self._on_status = on_status
        self._status = False
        self._drain_timer: TimerHandle | None = None
        self._closed = False
        self._dropping = False
        # The monitors first, so that no connection event is missed.
        events = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED
        self._monitors = [
            _Monitor(context, zmq, s, events, self._link_changed) for s in (self._pub, self._sub)
        ]
        self._pub.connect(f"tcp://{h}:{port}")
        self._sub.connect(f"tcp://{h}:{port + 1}")
        self._fd = int(self._sub.getsockopt(zmq.FD))
        context.adopt_fd(self._fd, POLLIN, self._ready)

    @property
    def connected(self) -> bool:
        """Both sockets have a connection to the proxy whose ZMTP handshake succeeded
        (ZeroMQ connects and reconnects on its own; its socket monitors say when)."""
        return self._status

    def _link_changed(self) -> None:
        up = not self._closed and all(m.links > 0 for m in self._monitors)
        if up == self._status:
            return
        self._status = up
        if up:
            logger.log(NOTICE, "backplane: %s: connected", self.url)
        else:
            logger.log(NOTICE, "backplane: %s: connection to the proxy lost", self.url)
        if self._on_status is not None:
            try:
                self._on_status(up)
            except Exception:
                logger.exception("backplane: %s: on_status callback failed", self.url)

    def publish(self, channel: str, data: bytes | str) -> bool:
        """Send ``data`` to every subscriber of ``channel``; False if ZeroMQ dropped it
        (the high-water mark is reached)."""
        zmq = self._zmq
        topic = check_channel(channel) + b"\0"
        payload = data.encode("utf-8") if isinstance(data, str) else data
        try:
            self._pub.send_multipart([topic, payload], zmq.NOBLOCK)
        except zmq.Again:
            if not self._dropping:
                self._dropping = True
                logger.log(NOTICE, "backplane: %s: high-water mark, dropping messages", self.url)
            return False
        finally:
            self._pub.getsockopt(zmq.EVENTS)  # see the module's docstring
        self._dropping = False
        return True

    def subscribe(self, channel: str, callback: Callback) -> None:
        """Call ``callback(channel, data)`` in the service thread for each message."""
        topic = check_channel(channel) + b"\0"
        if self._subs.add(channel, callback):
            self._sub.setsockopt(self._zmq.SUBSCRIBE, topic)
            self._check()

    def unsubscribe(self, channel: str, callback: Callback | None = None) -> None:
        """Remove ``callback`` (None: every callback) from ``channel``."""
        topic = check_channel(channel) + b"\0"
        if self._subs.remove(channel, callback):
            self._sub.setsockopt(self._zmq.UNSUBSCRIBE, topic)
            self._check()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None
        self._ctx.release_fd(self._fd)
        for m in self._monitors:
            m.close()
        self._pub.close()
        self._sub.close()
        self._zctx.term()
        self._status = False

    # -- the edge-triggered fd ------------------------------------------------------------

    def _check(self) -> None:
        """After an operation on the SUB socket: a POLLIN it revealed needs a drain."""
        if self._sub.getsockopt(self._zmq.EVENTS) & self._zmq.POLLIN:
            self._schedule_drain()

    def _schedule_drain(self) -> None:
        if self._drain_timer is None and not self._closed:
            self._drain_timer = self._ctx.call_later(0, self._timed_drain)

    def _timed_drain(self) -> None:
        self._drain_timer = None
        self._drain()

    def _ready(self, fd: int, revents: int) -> None:
        self._drain()

    def _drain(self) -> None:
        """Take messages while ZMQ_EVENTS says POLLIN, up to the budget."""
        if self._closed:
            return
        zmq = self._zmq
        sub = self._sub
        for _ in range(_DRAIN_BUDGET):
            if not sub.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                return  # ZMQ_EVENTS read with nothing left: the fd is re-armed
            try:
                frames = sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                continue
            if len(frames) != 2 or not frames[0].endswith(b"\0"):
                logger.warning("backplane: %s: ignoring a malformed message", self.url)
                continue
            self._subs.deliver(frames[0][:-1].decode("utf-8", "replace"), frames[1])
            if self._closed:
                return  # a callback closed the backplane
        # Budget spent with messages left: fairness to the other fds, and a timer so
        # that the rest is not stranded behind an edge that will not come again.
        self._check()


class _Monitor:
    """One socket's connection events (``zmq_socket_monitor``), its fd in the poll set.

    ``links`` counts the socket's connections whose ZMTP handshake succeeded; each
    change calls ``on_change()``.  The monitor's fd is edge-triggered like every
    ``ZMQ_FD``, so a ready fd is drained while ``ZMQ_EVENTS`` says POLLIN.
    """

    __slots__ = ("_ctx", "_fd", "_on_change", "_parse", "_sock", "_socket", "_zmq", "links")

    def __init__(
        self, context: Context, zmq: Any, socket: Any, events: int, on_change: Callable[[], None]
    ) -> None:
        from zmq.utils.monitor import parse_monitor_message  # type: ignore[import-not-found, unused-ignore]

        self._ctx = context
        self._zmq = zmq
        self._parse = parse_monitor_message
        self._socket = socket
        self._sock: Any = socket.get_monitor_socket(events)
        self._on_change = on_change
        self.links = 0
        self._fd = int(self._sock.getsockopt(zmq.FD))
        context.adopt_fd(self._fd, POLLIN, self._ready)
        # Events may be queued before the first edge is seen: look now, by timer.
        context.call_later(0, self._drain)

    def _ready(self, fd: int, revents: int) -> None:
        self._drain()

    def _drain(self) -> None:
        zmq = self._zmq
        sock = self._sock
        if sock is None:
            return
        changed = False
        while sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            try:
                msg = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                continue
            event = self._parse(msg)["event"]
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.links += 1
                changed = True
            elif event == zmq.EVENT_DISCONNECTED and self.links:
                self.links -= 1
                changed = True
        if changed:
            self._on_change()

    def close(self) -> None:
        if self._sock is None:
            return
        self._ctx.release_fd(self._fd)
        self._socket.disable_monitor()
        self._sock.close()
        self._sock = None
