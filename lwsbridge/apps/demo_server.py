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
import os
from collections import deque
from collections.abc import Callable
from typing import Any

from lwsbridge.apps.status import Status
from lwsbridge.context import CLOSE, Connection, Context, Protocol, Reason, WriteKind

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

    Only a member that the paused senders wait for and that takes nothing for
    ``stall_timeout`` seconds (a client that stopped reading) is dropped, with 1008, so
    that one dead reader cannot stop the mirror for everyone.  Its timer is checked
    every ``stall_timeout``, so such a member goes after one to two of them.
    """

    RING = 512  # messages kept for the members, before senders are paused
    STALL_TIMEOUT = 5.0  # seconds a member may hold up paused senders taking nothing

    class Session:
        __slots__ = ("dropped", "parts", "tail", "watched_tail")

        def __init__(self) -> None:
            self.tail = 0  # the number of the next message to send it (counted from 0)
            self.parts: list[bytes] = []  # fragments of the message being received
            self.watched_tail: int | None = None  # its tail when its stall timer was set
            self.dropped = False  # closed or closing: it no longer holds the ring

    def __init__(
        self, ring: int = RING, stall_timeout: float = STALL_TIMEOUT, status: Status | None = None
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
        self.queue: deque[tuple[bytes, bool]] = deque()  # messages base .. head-1
        self.base = 0  # number of the oldest message still queued
        self.head = 0  # messages ever added
        self.paused: list[Connection] = []  # senders waiting for room
        self.resume_at = 0  # while paused: the tail every member must reach ...
        self.behind = 0  # ... and how many members have not reached it yet
        self.protocol = Protocol("lws-mirror-protocol", self.callback, Mirror.Session, deflate=True)

    def callback(self, conn: Connection | None, reason: Reason, user: Any, payload: Any) -> int:
        if conn is None:
            return 0
        if reason is Reason.ESTABLISHED:
            user.tail = self.head  # a new member gets what is sent from now on
        elif reason is Reason.RECEIVE:
            user.parts.append(payload)
            if not conn.is_final_fragment():
                return 0
            msg = b"".join(user.parts)
            user.parts.clear()
            self._add(conn, msg, conn.frame_is_binary())
        elif reason is Reason.SERVER_WRITEABLE and user.tail < self.head and not user.dropped:
            msg, binary = self.queue[user.tail - self.base]
            n = conn.write(msg, WriteKind.BINARY if binary else WriteKind.TEXT)
            user.tail += 1
            if self.status is not None:
                self.status.sent(conn, n)
            if user.tail < self.head:
                conn.callback_on_writable()
            if self.paused and user.tail == self.resume_at:  # one fewer to wait for
                self.behind -= 1
                if self.behind == 0:
                    self._resume()
        elif reason is Reason.TIMER:
            return self._check_stall(conn, user)
        elif reason is Reason.CLOSED:
            if conn in self.paused:
                self.paused.remove(conn)
            self._leave(user)
        return 0

    def _add(self, conn: Connection, msg: bytes, binary: bool) -> None:
        ctx = conn.context
        self.queue.append((msg, binary))
        self.head += 1
        members = [c for c in ctx.connections(self.protocol) if not c.user.dropped]
        oldest = min((c.user.tail for c in members), default=self.head)
        while self.base < oldest:  # every member has sent these: free them
            self.queue.popleft()
            self.base += 1
        ctx.callback_on_writable_all_protocol(self.protocol)
        if self.head - oldest < self.high_water:
            return
        # Nearly full: stop reading this sender (what it sent meanwhile waits in the
        # library and the kernel) until the members have caught up.
        conn.rx_flow_control(False)
        if conn not in self.paused:
            self.paused.append(conn)
        if len(self.paused) == 1:  # the first pause: set the target and time the laggards
            self.resume_at = self.head - self.low_water
            slow = [c for c in members if c.user.tail < self.resume_at]
            self.behind = len(slow)
            for c in slow:
                self._watch(c)
            if not slow:  # cannot happen (high_water > low_water), but never wait for none
                self._resume()

    def _resume(self) -> None:
        paused, self.paused = self.paused, []
        for sender in paused:
            sender.rx_flow_control(True)

    def _leave(self, user: Any) -> None:
        """A member closes: it no longer holds the ring (nor the paused senders) back."""
        if user.dropped:
            return
        user.dropped = True
        if self.paused and user.tail < self.resume_at:
            self.behind -= 1
            if self.behind == 0:
                self._resume()

    # -- members that stop reading -------------------------------------------------------

    def _watch(self, conn: Connection) -> None:
        conn.user.watched_tail = conn.user.tail
        conn.set_timer(self.stall_timeout)

    def _check_stall(self, conn: Connection, user: Any) -> int:
        watched, user.watched_tail = user.watched_tail, None
        if watched is None or user.dropped or not self.paused or user.tail >= self.resume_at:
            return 0  # nobody waits for it (any more)
        if user.tail > watched:
            self._watch(conn)  # it moves: time it again from here
            return 0
        # The paused senders waited stall_timeout for it and it took nothing: it has
        # stopped reading.  Drop it, so that it holds up nobody.
        self._leave(user)
        conn.close_reason(1008, "too slow for the mirror")
        return CLOSE


def build_context(
    port: int = 7681,
    interface: str | None = None,
    resource_path: str | None = None,
    *,
    mirror: Mirror | None = None,
    status: Status | None = None,
    **options: Any,
) -> Context:
    """The test server's context; ``options`` go to :class:`Context` (tls, ping_interval...).

    ``mirror`` is the lws-mirror-protocol instance to use (default: ``Mirror()``), and
    ``status`` the lws-status one (default: ``Status()``), which counts the traffic of
    dumb-increment-protocol, lws-mirror-protocol and itself and serves ``/stats``.

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
    return Context(
        protocols, port=port, interface=interface, resource_root=resource_path or WWW, **options
    )


def main(argv: list[str] | None = None) -> int:
    from lwsbridge.apps.common import (
        add_common_args,
        catch_stop_signals,
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
    args = parser.parse_args(argv)
    catch_stop_signals()
    if args.daemonize:
        if args.workers > 1:
            parser.exit(1, f"{parser.prog}: --daemonize runs one process; drop --workers\n")
        return _main_daemon(args)
    setup_logging(args.debug)

    def make(**extra: Any) -> Context:
        return build_context(
            args.port, args.interface, args.resource_path, **context_options(args), **extra
        )

    return run_app(parser, args, make, "lwsbridge-test-server")


def _main_daemon(args: argparse.Namespace) -> int:
    import syslog

    from lwsbridge.apps.common import context_options, run, setup_logging
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
    try:
        ctx = build_context(args.port, args.interface, args.resource_path, **context_options(args))
    except Exception as exc:
        lwsl_err("cannot start: %s", exc)
        handle.fail(f"cannot start: {exc}")
        return 1
    handle.ready()
    try:
        return run(ctx, "lwsbridge-test-server", args.loop)
    finally:
        syslog.closelog()


if __name__ == "__main__":
    raise SystemExit(main())
