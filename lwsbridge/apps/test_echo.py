"""lwsbridge-test-echo: echo every message back with its opcode (lws test-echo's server)."""

from __future__ import annotations

import argparse
from collections import deque
from typing import Any

from lwsbridge.context import Connection, Context, Protocol, Reason, WriteKind

__all__ = ["EchoSession", "echo_callback", "main"]

_HIGH_WATER = 16  # queued messages before reading pauses (rx flow control)
_LOW_WATER = 4


class EchoSession:
    __slots__ = ("parts", "paused", "queue")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.queue: deque[tuple[bytes, bool]] = deque()
        self.paused = False  # reading stopped until the queue drains


# Looked up once: enum attribute access is not free on the per-message path.
_RECEIVES = (Reason.RECEIVE, Reason.CLIENT_RECEIVE)
_WRITEABLES = (Reason.SERVER_WRITEABLE, Reason.CLIENT_WRITEABLE)
_BINARY, _TEXT = WriteKind.BINARY, WriteKind.TEXT


def echo_callback(conn: Connection | None, reason: Reason, user: Any, payload: Any) -> int:
    if reason in _RECEIVES:
        assert conn is not None
        s: EchoSession = user
        if conn.is_final_fragment():
            if s.parts:
                s.parts.append(payload)
                msg = b"".join(s.parts)
                s.parts.clear()
            else:
                msg = payload
            s.queue.append((msg, conn.frame_is_binary()))
            if len(s.queue) >= _HIGH_WATER and not s.paused:
                s.paused = True
                conn.rx_flow_control(False)
            conn.callback_on_writable()
        else:
            s.parts.append(payload)
    elif reason in _WRITEABLES:
        assert conn is not None
        s = user
        if s.queue:
            msg, binary = s.queue.popleft()
            conn.write(msg, _BINARY if binary else _TEXT)
            if s.queue:
                conn.callback_on_writable()
            if s.paused and len(s.queue) <= _LOW_WATER:
                s.paused = False
                conn.rx_flow_control(True)
    elif reason is Reason.HTTP:
        assert conn is not None
        conn.http_response(200, "<h1>lwsbridge echo server</h1>\n")
    return 0


def build_context(
    port: int,
    interface: str | None,
    max_size: int,
    same_pass: bool = True,
    deflate: bool = True,
    **options: Any,
) -> Context:
    """The echo server's context (permessage-deflate offered; ``options`` to Context)."""
    return Context(
        [Protocol("lws-echo", echo_callback, EchoSession, deflate=deflate)],
        port=port,
        interface=interface,
        any_subprotocol=True,
        max_message_size=max_size,
        writeable_same_pass=same_pass,
        **options,
    )


def main(argv: list[str] | None = None) -> int:
    from lwsbridge.apps.common import (
        add_common_args,
        catch_stop_signals,
        context_options,
        run,
        setup_logging,
    )

    parser = argparse.ArgumentParser(
        prog="lwsbridge-test-echo",
        description="WebSocket echo server: every message comes back with the same opcode; "
        "any or no subprotocol.",
    )
    add_common_args(parser)
    parser.add_argument(
        "--max-size",
        type=int,
        default=64 << 20,
        help="largest message accepted, in bytes (default 64 MiB; 0 = unlimited)",
    )
    parser.add_argument(
        "--defer-writeable",
        action="store_true",
        help="wait for POLLOUT before every WRITEABLE, as lws does (for measurements)",
    )
    parser.add_argument(
        "--client",
        metavar="URL",
        help="be the client instead: send messages of --sizes to URL and check the echoes",
    )
    parser.add_argument(
        "--sizes",
        default="0,125,126,65535,65536,1048576",
        help="message sizes for --client, comma-separated (text and binary each)",
    )
    parser.add_argument(
        "--autobahn-client",
        metavar="URL",
        help="run the Autobahn|Testsuite client protocol against a fuzzingserver at URL",
    )
    parser.add_argument("--agent", default="lwsbridge", help="agent name for --autobahn-client")
    parser.add_argument(
        "--no-deflate", action="store_true", help="do not negotiate permessage-deflate"
    )
    args = parser.parse_args(argv)
    catch_stop_signals()
    setup_logging(args.debug)
    if args.client or args.autobahn_client:
        from lwsbridge.apps import echo_client

        if args.client:
            sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
            return echo_client.check_echo(args.client, sizes, args.max_size, args.loop)
        return echo_client.autobahn(args.autobahn_client, args.agent, args.max_size, args.loop)
    try:
        ctx = build_context(
            args.port,
            args.interface,
            args.max_size,
            not args.defer_writeable,
            not args.no_deflate,
            **context_options(args),
        )
    except (OSError, ValueError) as exc:  # port in use, fd limit too low, bad cert: no traceback
        parser.exit(1, f"{parser.prog}: {exc}\n")
    return run(ctx, "lwsbridge-test-echo", args.loop)


if __name__ == "__main__":
    raise SystemExit(main())
