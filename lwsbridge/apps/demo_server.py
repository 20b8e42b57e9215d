"""lwsbridge-test-server: the libwebsockets test server's protocols, on lwsbridge.

``http-only`` serves the test page; ``dumb-increment-protocol`` sends "0", "1", ...
every 50 ms (``reset\\n`` restarts, ``closeme\\n`` closes 1001 "seeya"); and
``lws-mirror-protocol`` sends every message to every member through a bounded ring.
"""

from __future__ import annotations

import argparse
import mimetypes
import os
from typing import Any

from lwsbridge.context import CLOSE, Connection, Context, Protocol, Reason, WriteKind

__all__ = ["DumbIncrement", "Mirror", "build_context", "main"]

# Only this folder is served: never the package's own source files.
WWW = os.path.join(os.path.dirname(os.path.abspath(__file__)), "www")
INTERVAL = 0.05  # the lws test server's 50 ms
DEFAULT_LOCK = "/tmp/.lwsbridge-test-server-lock"  # lws: /tmp/.lwsts-lock


def http_callback(conn: Connection | None, reason: Reason, user: Any, payload: Any) -> int:
    if reason is Reason.HTTP:
        assert conn is not None
        uri: str = payload.split("?", 1)[0]
        if uri in ("/", "/index.html"):
            conn.serve_file("test.html", "text/html; charset=utf-8")
        else:
            ctype = mimetypes.guess_type(uri)[0] or "application/octet-stream"
            conn.serve_file(uri, ctype)
    return 0


class DumbIncrement:
    """Per-connection state of dumb-increment-protocol."""

    __slots__ = ("number",)

    def __init__(self) -> None:
        self.number = 0

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
            conn.write(str(user.number), WriteKind.TEXT)
            user.number += 1
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
    """lws-mirror-protocol: a ring of the last messages; each member reads at its own pace.

    A member that falls a whole ring behind is closed rather than buffered for.
    """

    RING = 512

    def __init__(self) -> None:
        self.ring: list[tuple[bytes, bool] | None] = [None] * self.RING
        self.head = 0  # messages ever added

    class Session:
        __slots__ = ("parts", "tail")

        def __init__(self) -> None:
            self.tail = 0
            self.parts: list[bytes] = []

    def callback(self, conn: Connection | None, reason: Reason, user: Any, payload: Any) -> int:
        if conn is None:
            return 0
        if reason is Reason.ESTABLISHED:
            user.tail = self.head
        elif reason is Reason.RECEIVE:
            user.parts.append(payload)
            if not conn.is_final_fragment():
                return 0
            msg = b"".join(user.parts)
            user.parts.clear()
            self._add(conn, msg, conn.frame_is_binary())
        elif reason is Reason.SERVER_WRITEABLE and user.tail < self.head:
            entry = self.ring[user.tail % self.RING]
            assert entry is not None
            conn.write(entry[0], WriteKind.BINARY if entry[1] else WriteKind.TEXT)
            user.tail += 1
            if user.tail < self.head:
                conn.callback_on_writable()
        return 0

    def _add(self, conn: Connection, msg: bytes, binary: bool) -> None:
        ctx = conn.context
        oldest_kept = self.head + 1 - self.RING
        for other in ctx.connections(self.protocol):
            if other.user.tail < oldest_kept:
                ctx.close(other, 1008, "too slow for the mirror")
        self.ring[self.head % self.RING] = (msg, binary)
        self.head += 1
        ctx.callback_on_writable_all_protocol(self.protocol)

    protocol: Protocol


def build_context(
    port: int = 7681,
    interface: str | None = None,
    resource_path: str | None = None,
    **options: Any,
) -> Context:
    """The test server's context; ``options`` go to :class:`Context` (tls, ping_interval...).

    permessage-deflate is on for lws-mirror-protocol only: the libwebsockets test
    client offers it but fails on a compressed dumb-increment-protocol socket.
    """
    mirror = Mirror()
    mirror.protocol = Protocol("lws-mirror-protocol", mirror.callback, Mirror.Session, deflate=True)
    protocols = [
        Protocol("http-only", http_callback),
        Protocol("dumb-increment-protocol", DumbIncrement.callback, DumbIncrement),
        mirror.protocol,
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
