"""What the test apps share: logging setup from an lws ``-d`` bitfield and the run loop."""

from __future__ import annotations

import argparse
import logging
import signal
from types import FrameType
from typing import Any

from lwsbridge.context import Context
from lwsbridge.log import LLL_ERR, LLL_NOTICE, LLL_WARN, NOTICE, Emitter, set_log_level

__all__ = ["add_common_args", "run", "setup_logging"]


def setup_logging(levels: int, emit: Emitter | None = None) -> None:
    """Enable lws's level bits (``-d``); lws-style lines on stderr unless ``emit`` is given.

    See :mod:`lwsbridge.log`.
    """
    set_log_level(levels, emit)


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-p", "--port", type=int, default=7681, help="listen port (default 7681)")
    parser.add_argument(
        "-i", "--interface", default=None, help="address to listen on (default: all)"
    )
    parser.add_argument(
        "-d",
        "--debug",
        type=int,
        default=LLL_ERR | LLL_WARN | LLL_NOTICE,
        metavar="LEVEL",
        help="lws log level bits: 1 err, 2 warn, 4 notice, 8 info, 16 debug, 32 parser, "
        "64 header, 128 ext, 256 client, 512 latency (default 7)",
    )
    parser.add_argument("-s", "--ssl", action="store_true", help="serve TLS (https/wss)")
    parser.add_argument(
        "-C", "--cert", default=None, help="certificate (PEM) for --ssl (default: self-signed)"
    )
    parser.add_argument("-K", "--key", default=None, help="private key (PEM) for --cert")
    parser.add_argument(
        "--cipher-list", default=None, help="OpenSSL cipher list for --ssl (lws ssl_cipher_list)"
    )
    parser.add_argument(
        "--ping-interval",
        type=float,
        default=None,
        metavar="SECS",
        help="send a keepalive ping this often; no pong by the next one drops the peer "
        "(default: no pings)",
    )


def context_options(args: argparse.Namespace) -> dict[str, Any]:
    """Context keyword arguments from the common options (TLS, pings)."""
    opts: dict[str, Any] = {"ping_interval": args.ping_interval}
    if args.ssl:
        from lwsbridge.apps.certs import default_cert
        from lwsbridge.tls import ServerTLS

        cert, key = (args.cert, args.key) if args.cert else default_cert()
        opts["tls"] = ServerTLS(cert, key, cipher_list=args.cipher_list)
    return opts


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def run(context: Context, banner: str) -> int:
    """Service ``context`` on its built-in loop until SIGINT/SIGTERM."""
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    logging.getLogger("lwsbridge").log(NOTICE, "%s on port %s", banner, context.port)
    try:
        while True:
            context.service(1000)
    except SystemExit:
        pass
    finally:
        context.destroy()
    return 0
