"""lwsbridge-test-server: the libwebsockets test server's protocols, on lwsbridge.

``http-only`` serves the test page; ``dumb-increment-protocol`` sends "0", "1", ...
every 50 ms (``reset\\n`` restarts, ``closeme\\n`` closes 1001 "seeya"); and
``lws-mirror-protocol`` sends every message to every member through a bounded ring,
pausing a sender while the slowest member catches up (see :class:`Mirror`); and
``lws-status`` pushes the connected clients and per-protocol traffic to the page's
status panel, which ``GET /stats`` serves as JSON (see :mod:`lwsbridge.apps.status`).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from lwsbridge.apps.status import Status
from lwsbridge.context import CLOSE, Connection, Context, Protocol, Reason, WriteKind
from lwsbridge.log import lwsl_notice, lwsl_warn

if TYPE_CHECKING:
    from lwsbridge.backplane import Backplane
    from lwsbridge.timers import TimerHandle

__all__ = ["DumbIncrement", "Mirror", "build_context", "main", "stats_http_callback"]

# Only this folder is served: never the package's own source files.
WWW = os.path.join(os.path.dirname(os.path.abspath(__file__)), "www")
INTERVAL = 0.05  # the lws test server's 50 ms
DEFAULT_LOCK = "/tmp/.lwsbridge-test-server-lock"  # lws: /tmp/.lwsts-lock


def http_callback(conn: Connection | None, reason: Reason, user: Any, payload: Any) -> int:
    if reason is Reason.HTTP:
        assert conn is not None
        uri: str = payload.split("?", 1)[0]
        # The type comes from the file name; HEAD, 304, Range and 405 are handled there.
        conn.serve_file("test.html" if uri in ("/", "/index.html") else uri)
    return 0


def stats_http_callback(status: Status) -> Callable[..., int]:
    """``http_callback`` that also answers ``GET /stats`` with ``status`` as JSON."""

    def callback(conn: Connection | None, reason: Reason, user: Any, payload: Any) -> int:
        if reason is Reason.HTTP and conn is not None and payload.split("?", 1)[0] == "/stats":
            status.serve_http(conn)
            return 0
        return http_callback(conn, reason, user, payload)

    return callback


class DumbIncrement:
    """Per-connection state of dumb-increment-protocol (``status``: where to count
    what it sends)."""

    __slots__ = ("number", "status")

    def __init__(self, status: Status | None = None) -> None:
        self.number = 0
        self.status = status

    @staticmethod
    def callback(conn: Connection | None, reason: Reason, user: Any, payload: Any) -> int:
        if conn is None:
            return 0
        if reason is Reason.ESTABLISHED:
            user.number = 0
            conn.set_timer(INTERVAL)
        elif reason is Reason.TIMER:
            conn.callback_on_writable()
            conn.set_timer(INTERVAL)
        elif reason is Reason.SERVER_WRITEABLE:
            n = conn.write(str(user.number), WriteKind.TEXT)
            user.number += 1
            if user.status is not None:
                user.status.sent(conn, n)
        elif reason is Reason.RECEIVE:
            data: bytes = payload
            if len(data) < 6:
                return 0
            if data.startswith(b"reset\n"):
                user.number = 0
            elif data.startswith(b"closeme\n"):
                conn.close_reason(1001, "seeya")  # LWS_CLOSE_STATUS_GOINGAWAY
                return CLOSE
        return 0


class Mirror:
    """lws-mirror-protocol: every message goes to every member, each at its own pace.

    Messages wait in one shared queue (the "ring") until the slowest member has sent
    them.  The ring is bounded by flow control, not by dropping: when a message makes
    it nearly full, its sender is paused (``rx_flow_control(False)``: the server stops
    reading it, and TCP pushes back on the client), and the paused senders resume once
    every member has caught up to within half a ring.  So a flood costs the flooder
    its speed, never a reader its connection.  libwebsockets' mirror
    (plugins/protocol_lws_mirror.c) pauses its senders the same way.

    The messages that arrive in one service pass go, at the pass's end, to every
    member that had all earlier ones, encoded once and in one send per member
    (:meth:`Context.broadcast_messages`); a member behind, or one the library cannot
    write at once (output still queued, permessage-deflate, closing), catches up
    through its WRITEABLE, one message each, in ring order.

    Only a member that the paused senders wait for and that takes nothing for
    ``stall_timeout`` seconds (a client that stopped reading) is dropped, with 1008, so
    that one dead reader cannot stop the mirror for everyone.  Its timer is checked
    every ``stall_timeout``, so such a member goes after one to two of them.

    ``?mirror=NAME`` in the request URL picks an instance, as in the libwebsockets test
    server: each has its own ring; no name (or an empty one) is the default instance.

    With a backplane (:meth:`use_backplane`), each instance is one channel
    (``lws-mirror`` for the default, ``lws-mirror:NAME``): a message received is
    published, and every process's mirror delivers what comes back from the channel to
    its local members, the sender included, so that every member sees the messages of
    one sender in the order it sent them.  See docs/scaling.md, "The mirror".
    """

    RING = 512  # messages kept for the members, before senders are paused
    STALL_TIMEOUT = 5.0  # seconds a member may hold up paused senders taking nothing
    CHANNEL = "lws-mirror"  # the default instance's channel; NAME's is "lws-mirror:NAME"
    MAX_NAME = 64  # characters of an instance name

    class Session:
        __slots__ = ("dropped", "name", "parts", "ring", "tail", "watched_tail")

        def __init__(self) -> None:
            self.tail = 0  # the number of the next message to send it (counted from 0)
            self.parts: list[bytes] = []  # fragments of the message being received
            self.watched_tail: int | None = None  # its tail when its stall timer was set
            self.dropped = False  # closed or closing: it no longer holds the ring
            self.name = ""  # the instance asked for (?mirror=NAME), "" the default
            self.ring: Mirror.Ring | None = None  # the instance, from ESTABLISHED on

    class Ring:
        """One instance's queue, members and paused senders."""

        __slots__ = (
            "base",
            "behind",
            "channel",
            "flush",
            "flush_from",
            "head",
            "members",
            "name",
            "outstanding",
            "paused",
            "pending",
            "probe",
            "queue",
            "resume_at",
            "retired",
            "returned",
            "synced",
        )

        def __init__(self, name: str) -> None:
            self.name = name
            self.channel = f"{Mirror.CHANNEL}:{name}" if name else Mirror.CHANNEL
            self.queue: deque[tuple[bytes, bool]] = deque()  # messages base .. head-1
            self.base = 0  # number of the oldest message still queued
            self.head = 0  # messages ever added
            self.members: dict[Connection, None] = {}  # in joining order
            self.paused: list[Connection] = []  # senders waiting for room
            self.resume_at = 0  # while paused: the tail every member must reach ...
            self.behind = 0  # ... and how many members have not reached it yet
            # With a backplane: this process's messages published (or held in
            # ``pending``) and not back yet; they count as queued for the pause.
            self.outstanding = 0
            self.returned = 0  # own messages that came back, ever
            self.pending: list[bytes] = []  # published once the subscription works
            self.synced = True  # the channel carries our messages back (no backplane: yes)
            self.probe: TimerHandle | None = None
            self.retired = False
            # Messages of this service pass wait for one flush at its end, so that the
            # caught-up members (those at flush_from) get them all in one send.
            self.flush: TimerHandle | None = None
            self.flush_from = 0

    def __init__(
        self,
        ring: int = RING,
        stall_timeout: float = STALL_TIMEOUT,
        max_behind: int | None = None,
        status: Status | None = None,
    ) -> None:
        if ring < 4:  # room below the pause for the resume point, and headroom above
            raise ValueError(f"mirror ring of {ring} messages: at least 4 are needed")
        self.stall_timeout = stall_timeout
        self.status = status  # where to count what it sends (build_context sets it)
        # Pause a sender when this many messages wait: 1/16 of headroom, since every
        # sender adds one more message before its own pause.  Resume at half a ring, so
        # that a flooder is not paused and resumed again for every message.
        self.high_water = ring - max(1, ring // 16)
        self.low_water = ring // 2
        # Messages from the backplane cannot be refused (other processes' senders are
        # paused by their own rings, not by ours), so a member that holds the ring
        # beyond high_water is timed like one that paused senders wait for, and one
        # this far behind (default 8 rings) is dropped at once: the ring's memory bound.
        self.max_behind = 8 * ring if max_behind is None else max_behind
        if self.max_behind < ring:
            raise ValueError(f"mirror max_behind of {max_behind}: at least the ring ({ring})")
        self.default = Mirror.Ring("")
        self.rings: dict[str, Mirror.Ring] = {"": self.default}
        self.backplane: Backplane | None = None
        self.context: Context | None = None
        self.origin = os.urandom(8).hex().encode()  # tells our messages from the others'
        self.lost = 0  # messages the backplane refused to publish
        self.protocol = Protocol("lws-mirror-protocol", self.callback, Mirror.Session, deflate=True)

    # The default instance's state, as before there were instances.
    @property
    def queue(self) -> deque[tuple[bytes, bool]]:
        return self.default.queue

    @property
    def base(self) -> int:
        return self.default.base

    @property
    def head(self) -> int:
        return self.default.head

    @property
    def paused(self) -> list[Connection]:
        return self.default.paused

    def use_backplane(self, context: Context, backplane: Backplane) -> None:
        """Carry every instance through ``backplane`` (connected to ``context``)."""
        if self.backplane is not None:
            raise ValueError("this mirror already has a backplane")
        self.context, self.backplane = context, backplane
        for ring in self.rings.values():
            self._subscribe(ring)

    def close(self) -> None:
        """Close the backplane (if any); the mirror then serves its process only."""
        bp, self.backplane = self.backplane, None
        for ring in self.rings.values():
            if ring.probe is not None:
                ring.probe.cancel()
                ring.probe = None
            ring.synced, ring.pending, ring.outstanding = True, [], 0
        if bp is not None:
            bp.close()

    def synced(self, name: str = "") -> bool:
        """Whether instance ``name`` exists here and its messages come back through the
        backplane (always True without one)."""
        ring = self.rings.get(name)
        return ring is not None and ring.synced

    def callback(self, conn: Connection | None, reason: Reason, user: Any, payload: Any) -> int:
        if conn is None:
            return 0
        if reason is Reason.FILTER_PROTOCOL_CONNECTION:
            name = instance_name(payload)
            if name is None:
                lwsl_notice("%r: bad mirror instance in %r: refused", conn, payload[:200])
                return 1
            user.name = name
        elif reason is Reason.ESTABLISHED:
            ring = self.rings.get(user.name)
            if ring is None:
                ring = self.rings[user.name] = Mirror.Ring(user.name)
                if self.backplane is not None:
                    self._subscribe(ring)
            ring.members[conn] = None
            user.ring = ring
            user.tail = ring.head  # a new member gets what is sent from now on
        elif reason is Reason.RECEIVE:
            user.parts.append(payload)
            if not conn.is_final_fragment() or user.ring is None:
                return 0
            msg = b"".join(user.parts)
            user.parts.clear()
            if self.backplane is None:
                self._add(conn, user.ring, msg, conn.frame_is_binary())
            else:
                self._publish(conn, user.ring, msg, conn.frame_is_binary())
        elif reason is Reason.SERVER_WRITEABLE:
            ring = user.ring
            if ring is None or user.tail >= ring.head or user.dropped:
                return 0
            msg, binary = ring.queue[user.tail - ring.base]
            n = conn.write(msg, WriteKind.BINARY if binary else WriteKind.TEXT)
            user.tail += 1
            if self.status is not None:
                self.status.sent(conn, n)
            if user.tail < ring.head:
                conn.callback_on_writable()
            if ring.paused and user.tail == ring.resume_at:  # one fewer to wait for
                ring.behind -= 1
                self._maybe_resume(ring)
        elif reason is Reason.TIMER:
            return self._check_stall(conn, user)
        elif reason is Reason.CLOSED:
            ring = user.ring
            if ring is None:
                return 0
            if conn in ring.paused:
                ring.paused.remove(conn)
            self._leave(ring, user)
            ring.members.pop(conn, None)
            if not ring.members and ring.name:
                self._retire(ring)
        return 0

    def _arrive(
        self, ctx: Context, ring: Mirror.Ring, msg: bytes, binary: bool
    ) -> list[Connection]:
        """Queue a message for every member of ``ring``; its live members.

        The members that had every earlier message when the first message of this
        service pass arrived (caught up) get this pass's messages at the end of the
        pass (:meth:`_flush`), in one send through :meth:`Context.broadcast_messages`;
        the others through their WRITEABLE, in ring order, as before.
        """
        ring.queue.append((msg, binary))
        last = ring.head
        head = ring.head = last + 1
        members = [c for c in ring.members if not c.user.dropped]
        if self.backplane is not None and members:
            oldest = min(c.user.tail for c in members)
            if head - oldest > self.max_behind:
                members = self._drop_laggards(ctx, ring, members)
        if ring.flush is None:
            # The first message of this pass: the members with everything so far wait
            # for the flush; messages later in the pass join them.
            ring.flush_from = last
            ring.flush = ctx.call_later(0, lambda: self._flush(ctx, ring))
        start = ring.flush_from
        for c in members:
            if c.user.tail != start:
                c.callback_on_writable()  # behind already: at its own pace
        return members

    def _flush(self, ctx: Context, ring: Mirror.Ring) -> None:
        """The end of the service pass: the members still waiting at ``flush_from`` get
        every message since, one frame each, in one send, written at once where the
        library can (:meth:`Context.broadcast_messages`); WRITEABLE for the rest."""
        ring.flush = None
        if ring.retired:
            return
        start, head = ring.flush_from, ring.head
        members = [c for c in ring.members if not c.user.dropped]
        waiting = [c for c in members if c.user.tail == start]
        if waiting and start < head:
            msgs = list(itertools.islice(ring.queue, start - ring.base, None))
            left = set(
                ctx.broadcast_messages(
                    waiting,
                    ((m, WriteKind.BINARY if b else WriteKind.TEXT) for m, b in msgs),
                )
            )
            written = [c for c in waiting if c not in left] if left else waiting
            for c in written:
                c.user.tail = head
            for c in left:
                c.callback_on_writable()
            if self.status is not None and written:
                self.status.sent_many(written, sum(len(m) for m, _ in msgs), len(msgs))
            if ring.paused and start < ring.resume_at <= head:
                # As in SERVER_WRITEABLE: these passed the resume point.
                ring.behind -= len(written)
                self._maybe_resume(ring)
        oldest = min((c.user.tail for c in members), default=head)
        while ring.base < oldest:  # every member has sent these: free them
            ring.queue.popleft()
            ring.base += 1

    def _add(self, conn: Connection, ring: Mirror.Ring, msg: bytes, binary: bool) -> None:
        members = self._arrive(conn.context, ring, msg, binary)
        if ring.head - ring.base >= self.high_water:
            # Nearly full: stop reading this sender (what it sent meanwhile waits in the
            # library and the kernel) until the members have caught up.
            self._pause(conn, ring, members)

    def _pause(self, conn: Connection, ring: Mirror.Ring, members: list[Connection]) -> None:
        conn.rx_flow_control(False)
        if conn not in ring.paused:
            ring.paused.append(conn)
        if len(ring.paused) > 1:
            return
        # The first pause: set the target and time the laggards.
        ring.resume_at = ring.head - self.low_water
        slow = [c for c in members if c.user.tail < ring.resume_at]
        ring.behind = len(slow)
        for c in slow:
            self._watch(c)
        if ring.outstanding:
            self._watch_outstanding(conn.context, ring, ring.returned)
        self._maybe_resume(ring)  # with nobody to wait for: at once

    def _maybe_resume(self, ring: Mirror.Ring) -> None:
        if ring.paused and ring.behind <= 0 and ring.outstanding < self.low_water:
            paused, ring.paused = ring.paused, []
            for sender in paused:
                sender.rx_flow_control(True)

    def _leave(self, ring: Mirror.Ring, user: Any) -> None:
        """A member closes: it no longer holds the ring (nor the paused senders) back."""
        if user.dropped:
            return
        user.dropped = True
        if ring.paused and user.tail < ring.resume_at:
            ring.behind -= 1
            self._maybe_resume(ring)

    # -- members that stop reading -------------------------------------------------------

    def _watch(self, conn: Connection) -> None:
        conn.user.watched_tail = conn.user.tail
        conn.set_timer(self.stall_timeout)

    def _check_stall(self, conn: Connection, user: Any) -> int:
        watched, user.watched_tail = user.watched_tail, None
        ring = user.ring
        if watched is None or user.dropped or ring is None:
            return 0
        waited = ring.paused and user.tail < ring.resume_at
        # With a backplane, a member that holds the ring nearly full holds up every
        # other process's senders too (they cannot be paused from here).
        if not waited and (self.backplane is None or ring.head - user.tail < self.high_water):
            return 0  # nobody waits for it (any more)
        if user.tail > watched:
            self._watch(conn)  # it moves: time it again from here
            return 0
        # The paused senders waited stall_timeout for it and it took nothing: it has
        # stopped reading.  Drop it, so that it holds up nobody.
        self._leave(ring, user)
        conn.close_reason(1008, "too slow for the mirror")
        return CLOSE

    def _drop_laggards(
        self, ctx: Context, ring: Mirror.Ring, members: list[Connection]
    ) -> list[Connection]:
        """Drop (1008) the members ``max_behind`` messages behind; the others."""
        floor = ring.head - self.max_behind
        kept = []
        for c in members:
            if c.user.tail >= floor:
                kept.append(c)
                continue
            lwsl_notice("%r: %d mirror messages behind: dropped", c, ring.head - c.user.tail)
            self._leave(ring, c.user)
            ctx.close(c, 1008, "too slow for the mirror")
        return kept

    # -- through the backplane -----------------------------------------------------------

    def _subscribe(self, ring: Mirror.Ring) -> None:
        """Subscribe to the ring's channel, and hold this process's messages until one of
        them has come back: what is published before the broker knows the subscription
        would not reach the sender."""
        assert self.backplane is not None
        self.backplane.subscribe(ring.channel, self._on_message)
        ring.synced = False
        self._probe(ring)

    def _probe(self, ring: Mirror.Ring) -> None:
        ring.probe = None
        if ring.synced or ring.retired or self.backplane is None or self.context is None:
            return
        self.backplane.publish(ring.channel, b"S" + self.origin)
        ring.probe = self.context.call_later(0.05, lambda: self._probe(ring))

    def _retire(self, ring: Mirror.Ring) -> None:
        """The last member of a named instance left: forget it (names cost nothing)."""
        ring.retired = True
        del self.rings[ring.name]
        if ring.probe is not None:
            ring.probe.cancel()
            ring.probe = None
        if ring.flush is not None:
            ring.flush.cancel()
            ring.flush = None
        if self.backplane is not None:
            self.backplane.unsubscribe(ring.channel, self._on_message)

    def _publish(self, conn: Connection, ring: Mirror.Ring, msg: bytes, binary: bool) -> None:
        assert self.backplane is not None
        frame = (b"B" if binary else b"T") + self.origin + msg
        if not ring.synced:
            ring.pending.append(frame)
        elif not self.backplane.publish(ring.channel, frame):
            self.lost += 1  # the backplane logs the drops, once per outage
            return
        ring.outstanding += 1
        tails = [c.user.tail for c in ring.members if not c.user.dropped]
        # Counted as queued already: every member will have to take it.
        if ring.head - min(tails, default=ring.head) + ring.outstanding >= self.high_water:
            self._pause(conn, ring, [c for c in ring.members if not c.user.dropped])

    def _watch_outstanding(self, ctx: Context, ring: Mirror.Ring, returned: int) -> None:
        """While senders wait for their own messages: if none comes back for
        stall_timeout, the backplane lost them (a broker restart); stop waiting."""

        def check() -> None:
            if ring.retired or not ring.paused or ring.outstanding <= len(ring.pending):
                return
            if ring.returned == returned:
                lwsl_warn(
                    "mirror: %d messages on %s lost by the backplane",
                    ring.outstanding - len(ring.pending),
                    ring.channel,
                )
                ring.outstanding = len(ring.pending)
                self._maybe_resume(ring)
            if ring.paused and ring.outstanding:
                self._watch_outstanding(ctx, ring, ring.returned)

        ctx.call_later(self.stall_timeout, check)

    def _on_message(self, channel: str, data: bytes) -> None:
        ring = self.rings.get(channel[len(Mirror.CHANNEL) + 1 :] if ":" in channel else "")
        if ring is None or ring.channel != channel or self.context is None:
            return  # an instance retired while the message was on its way
        kind, origin, msg = data[:1], data[1:17], data[17:]
        if kind not in (b"T", b"B", b"S") or len(origin) != 16:
            lwsl_warn("mirror: not a mirror message on %s (%d bytes): dropped", channel, len(data))
            return
        mine = origin == self.origin
        if kind == b"S":
            if mine and not ring.synced:
                self._synced(ring)
            return
        members = self._arrive(self.context, ring, msg, kind == b"B")
        if ring.head - ring.base >= self.high_water:
            # Nearly full, and the backplane must not be blocked: time the members
            # that hold it (a member already timed keeps its running timer).
            for c in members:
                if ring.head - c.user.tail >= self.high_water and c.user.watched_tail is None:
                    self._watch(c)
        if mine and ring.outstanding > len(ring.pending):
            ring.outstanding -= 1
            ring.returned += 1
            if ring.paused:
                self._maybe_resume(ring)

    def _synced(self, ring: Mirror.Ring) -> None:
        """Our probe came back: the broker has the subscription; send what waited."""
        assert self.backplane is not None
        ring.synced = True
        if ring.probe is not None:
            ring.probe.cancel()
            ring.probe = None
        pending, ring.pending = ring.pending, []
        for frame in pending:
            if not self.backplane.publish(ring.channel, frame):
                self.lost += 1  # the backplane logs the drops, once per outage
                ring.outstanding -= 1
        if ring.paused:
            self._maybe_resume(ring)


def instance_name(target: str) -> str | None:
    """The mirror instance of a request target: ``?mirror=NAME`` (URL-decoded), "" for
    the default, None for one that cannot be a name (too long, control characters)."""
    _, _, query = target.partition("?")
    names = parse_qs(query, keep_blank_values=True).get("mirror")
    if not names:
        return ""
    name = names[0]
    if len(name) > Mirror.MAX_NAME or not name.isprintable():
        return None
    return name


def build_context(
    port: int = 7681,
    interface: str | None = None,
    resource_path: str | None = None,
    *,
    mirror: Mirror | None = None,
    status: Status | None = None,
    backplane: str | None = None,
    **options: Any,
) -> Context:
    """The test server's context; ``options`` go to :class:`Context` (tls, ping_interval...).

    ``mirror`` is the lws-mirror-protocol instance to use (default: ``Mirror()``), and
    ``status`` the lws-status one (default: ``Status()``), which counts the traffic of
    dumb-increment-protocol, lws-mirror-protocol and itself and serves ``/stats``.
    ``backplane`` (``redis://HOST:PORT`` or ``zmq://HOST:PORT``) carries the mirror to
    every process on it (:meth:`Mirror.use_backplane`); ``mirror.close()`` closes it,
    before the context is destroyed.

    permessage-deflate is on for lws-mirror-protocol only: the libwebsockets test
    client offers it but fails on a compressed dumb-increment-protocol socket.
    """
    mirror = mirror or Mirror()
    status = status or Status()
    if mirror.status is None:
        mirror.status = status
    protocols = [
        Protocol("http-only", stats_http_callback(status)),
        status.track(
            Protocol(
                "dumb-increment-protocol",
                DumbIncrement.callback,
                functools.partial(DumbIncrement, status),
            )
        ),
        status.track(mirror.protocol),
        status.protocol,
    ]
    ctx = Context(
        protocols, port=port, interface=interface, resource_root=resource_path or WWW, **options
    )
    if backplane is not None:
        from lwsbridge.backplane import connect

        try:
            mirror.use_backplane(ctx, connect(ctx, backplane))
        except BaseException:
            ctx.destroy()
            raise
    return ctx


def main(argv: list[str] | None = None) -> int:
    from lwsbridge.apps.common import (
        add_common_args,
        catch_stop_signals,
        check_common_args,
        context_options,
        run_app,
        setup_logging,
    )

    parser = argparse.ArgumentParser(
        prog="lwsbridge-test-server",
        description="The libwebsockets test server on lwsbridge: test page at /, "
        "dumb-increment-protocol and lws-mirror-protocol.",
    )
    add_common_args(parser)
    parser.add_argument(
        "-r",
        "--resource-path",
        default=None,
        help="directory served over HTTP (default: the packaged test page)",
    )
    parser.add_argument(
        "-D",
        "--daemonize",
        action="store_true",
        help="run in the background, logging to syslog (lws's -D)",
    )
    parser.add_argument(
        "--lock",
        default=DEFAULT_LOCK,
        metavar="PATH",
        help=f"lock file of the daemon (default {DEFAULT_LOCK})",
    )
    parser.add_argument(
        "--backplane",
        type=_backplane_url,
        default=None,
        metavar="URL",
        help="carry lws-mirror-protocol to every server on this backplane: "
        "redis://HOST:PORT or zmq://HOST:PORT (lwsbridge-zmq-proxy's address)",
    )
    args = parser.parse_args(argv)
    check_common_args(parser, args)
    if args.resource_path is not None and not os.path.isdir(args.resource_path):
        parser.error(f"-r/--resource-path {args.resource_path!r} is not a directory")
    catch_stop_signals()
    if args.daemonize:
        if args.workers > 1:
            parser.exit(1, f"{parser.prog}: --daemonize runs one process; drop --workers\n")
        return _main_daemon(args)
    setup_logging(args.debug)
    # One mirror per context made (one per worker), closed (its backplane) on the way out.
    mirrors: list[Mirror] = []

    def make(**extra: Any) -> Context:
        mirror = Mirror()
        mirrors.append(mirror)
        return build_context(
            args.port,
            args.interface,
            args.resource_path,
            mirror=mirror,
            backplane=args.backplane,
            **context_options(args),
            **extra,
        )

    try:
        return run_app(parser, args, make, "lwsbridge-test-server")
    finally:
        for mirror in mirrors:
            mirror.close()


def _backplane_url(url: str) -> str:
    """``--backplane``: checked while parsing, so that a bad URL is a usage error."""
    from lwsbridge.backplane import BackplaneURLError, parse_url

    try:
        parse_url(url)
    except BackplaneURLError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return url


def _main_daemon(args: argparse.Namespace) -> int:
    import syslog

    from lwsbridge.apps.common import context_options, run, setup_logging, startup_error
    from lwsbridge.daemon import daemonize
    from lwsbridge.log import emit_syslog, lwsl_err

    # The daemon runs in "/": paths given relative to the caller's directory are resolved
    # first (daemonize() does the same for the lock file).
    for opt in ("resource_path", "cert", "key"):
        if getattr(args, opt, None):
            setattr(args, opt, os.path.abspath(getattr(args, opt)))
    handle = daemonize(args.lock, name="lwsbridge-test-server", wait_ready=True)
    syslog.openlog("lwsbridge-test-server", syslog.LOG_PID, syslog.LOG_DAEMON)
    setup_logging(args.debug, emit_syslog)
    mirror = Mirror()
    try:
        ctx = build_context(
            args.port,
            args.interface,
            args.resource_path,
            mirror=mirror,
            backplane=args.backplane,
            **context_options(args),
        )
    except Exception as exc:
        why = startup_error(exc, args)
        lwsl_err("cannot start: %s", why)
        handle.fail(f"cannot start: {why}")
        return 1
    handle.ready()
    try:
        return run(ctx, "lwsbridge-test-server", args.loop)
    finally:
        mirror.close()
        syslog.closelog()


if __name__ == "__main__":
    raise SystemExit(main())
