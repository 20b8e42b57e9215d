"""lwsbridge-test-client: the libwebsockets test client, on lwsbridge.

One ``dumb-increment-protocol`` connection prints the numbers it receives; one
``lws-mirror-protocol`` connection sends line-drawing messages
(``d #rrggbb x1 y1 x2 y2;``) and counts what the mirror sends back.  Exits 0 after
``--count`` numbers (or runs until Ctrl-C), and 1 with the CLIENT_CONNECTION_ERROR
reason when the server cannot be reached.
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass, field
from typing import Any

from lwsbridge.context import (
    ClientConnectInfo,
    Connection,
    Context,
    Protocol,
    Reason,
    WriteKind,
)
from lwsbridge.tls import ClientTLS

__all__ = ["DemoClient", "main"]

MIRROR_INTERVAL = 0.02
_rng = random.Random()


@dataclass
class DemoClient:
    """Both connections' state; the callbacks are its methods."""

    count: int | None = None
    numbers: list[int] = field(default_factory=list)
    mirror_sent: int = 0
    mirror_received: int = 0
    errors: list[str] = field(default_factory=list)
    closed: int = 0
    done: bool = False
    out: Any = sys.stdout

    def dumb(self, conn: Connection | None, reason: Reason, user: Any, payload: Any) -> int:
        if reason is Reason.CLIENT_RECEIVE:
            text = bytes(payload).decode("utf-8", "replace")
            try:
                self.numbers.append(int(text))
            except ValueError:
                return 0
            print(text, file=self.out, flush=True)
            if self.count is not None and len(self.numbers) >= self.count:
                self.done = True
        elif reason is Reason.CLIENT_CONNECTION_ERROR:
            self.errors.append(f"dumb-increment-protocol: {payload}")
            self.done = True
        elif reason is Reason.CLOSED:
            self.closed += 1
            self.done = True
        return 0

    def mirror(self, conn: Connection | None, reason: Reason, user: Any, payload: Any) -> int:
        if conn is None:
            return 0
        if reason is Reason.CLIENT_ESTABLISHED:
            conn.set_timer(MIRROR_INTERVAL)
        elif reason is Reason.TIMER:
            conn.callback_on_writable()
            conn.set_timer(MIRROR_INTERVAL)
        elif reason is Reason.CLIENT_WRITEABLE:
            r = random.Random()
            color = f"#{r.randrange(1 << 24):06x}"
            x1, y1, x2, y2 = (
                r.randrange(500),
                r.randrange(300),
                r.randrange(500),
                r.randrange(300),
            )
            conn.write(f"d {color} {x1} {y1} {x2} {y2};", WriteKind.TEXT)
            self.mirror_sent += 1
        elif reason is Reason.CLIENT_RECEIVE:
            if conn.is_final_fragment():
                self.mirror_received += 1
        elif reason is Reason.CLIENT_CONNECTION_ERROR:
            self.errors.append(f"lws-mirror-protocol: {payload}")
            self.done = True
        return 0


def build(
    host: str, port: int, ssl: bool | ClientTLS = False, count: int | None = None
) -> tuple[Context, DemoClient]:
    app = DemoClient(count=count)
    ctx = Context(
        [
            Protocol("dumb-increment-protocol", app.dumb),
            Protocol("lws-mirror-protocol", app.mirror),
        ],
        port=None,
    )
    for name in ("dumb-increment-protocol", "lws-mirror-protocol"):
        ctx.client_connect(
            ClientConnectInfo(host, port, "/", origin=f"http://{host}", protocol=name, ssl=ssl)
        )
    return ctx, app


def main(argv: list[str] | None = None) -> int:
    from lwsbridge.apps.common import (
        add_loop_arg,
        catch_stop_signals,
        check_loop,
        connect_port_arg,
        serve,
        setup_logging,
    )
    from lwsbridge.log import LLL_ERR, LLL_NOTICE, LLL_WARN

    parser = argparse.ArgumentParser(
        prog="lwsbridge-test-client",
        description="Connect to a libwebsockets-style test server: print dumb-increment "
        "numbers, send mirror drawing messages and count what comes back.",
    )
    parser.add_argument("host", help="server address or name")
    parser.add_argument(
        "-p", "--port", type=connect_port_arg, default=7681, help="server port (7681)"
    )
    # -s is --ssl in every lwsbridge app (it was --allow-selfsigned here): -S is that now.
    parser.add_argument("-s", "--ssl", action="store_true", help="use TLS (wss://)")
    parser.add_argument(
        "-S",
        "--allow-selfsigned",
        action="store_true",
        help="with --ssl: accept a self-signed server certificate (was -s before; "
        "-s is --ssl, as in the servers)",
    )
    parser.add_argument(
        "-k", "--insecure", action="store_true", help="with --ssl: accept any certificate"
    )
    parser.add_argument("--ca", default=None, help="with --ssl: CA file to verify against")
    parser.add_argument(
        "-d", "--debug", type=int, default=LLL_ERR | LLL_WARN | LLL_NOTICE, metavar="LEVEL"
    )
    parser.add_argument(
        "-n", "--count", type=int, default=None, help="exit 0 after this many numbers"
    )
    add_loop_arg(parser)
    args = parser.parse_args(argv)
    check_loop(parser, args.loop)
    if not args.ssl:  # these were ignored silently: the connection went out in plain text
        given = [("-S/--allow-selfsigned", args.allow_selfsigned), ("-k/--insecure", args.insecure)]
        given += [("--ca " + repr(args.ca), args.ca is not None)]
        for opt, on in given:
            if on:
                parser.error(f"{opt} needs -s/--ssl")
    catch_stop_signals()
    setup_logging(args.debug)
    try:
        tls: bool | ClientTLS = False
        if args.ssl:
            tls = ClientTLS(
                ca_file=args.ca, allow_self_signed=args.allow_selfsigned, insecure=args.insecure
            )
            # Built now so that a bad --ca is one line here, not an internal error per
            # connection once connected (the context builds it again, from the files).
            tls.build()
        ctx, app = build(args.host, args.port, tls, args.count)
    except Exception as exc:
        print(f"lwsbridge-test-client: {exc}", file=sys.stderr)
        return 1
    try:
        serve(ctx, args.loop, lambda: app.done, 100)  # until --count, an error, or a signal
    finally:
        ctx.destroy()
    print(
        f"numbers received: {len(app.numbers)}, mirror sent: {app.mirror_sent}, "
        f"mirror received: {app.mirror_received}",
        file=sys.stderr,
    )
    if app.errors:
        for e in app.errors:
            print(f"lwsbridge-test-client: connection error: {e}", file=sys.stderr)
        return 1
    if args.count is not None and len(app.numbers) < args.count:
        print("lwsbridge-test-client: connection closed early", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
