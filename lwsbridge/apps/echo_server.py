"""lwsbridge-test-echo: echo every message back with its opcode (lws test-echo's server).

The protocol itself is in ``echo_protocol``; ``--client`` and ``--autobahn-client`` run
the client side from ``echo_client`` instead of serving.
"""

from __future__ import annotations

import argparse
from typing import Any

from lwsbridge.apps import echo_client
from lwsbridge.apps.echo_protocol import EchoSession, echo_callback
from lwsbridge.context import Context, Protocol

__all__ = ["build_context", "main"]


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
        check_common_args,
        context_options,
        run_app,
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
    check_common_args(parser, args)
    for opt, url in (("--client", args.client), ("--autobahn-client", args.autobahn_client)):
        if url is not None:
            try:
                echo_client.parse_ws_url(url)
            except ValueError as exc:
                parser.error(f"argument {opt}: {exc}")
    try:
        sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
        if min(sizes, default=0) < 0:
            raise ValueError("negative size")
    except ValueError:
        parser.error(f"argument --sizes: {args.sizes!r} is not a comma-separated list of sizes")
    catch_stop_signals()
    setup_logging(args.debug)
    if args.client or args.autobahn_client:
        if args.client:
            return echo_client.check_echo(args.client, sizes, args.max_size, args.loop)
        return echo_client.autobahn(args.autobahn_client, args.agent, args.max_size, args.loop)

    def make(**extra: Any) -> Context:
        return build_context(
            args.port,
            args.interface,
            args.max_size,
            not args.defer_writeable,
            not args.no_deflate,
            **context_options(args),
            **extra,
        )

    return run_app(parser, args, make, "lwsbridge-test-echo")


if __name__ == "__main__":
    raise SystemExit(main())
