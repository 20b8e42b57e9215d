"""What the test apps share: logging setup from an lws ``-d`` bitfield and the run loop."""

from __future__ import annotations

import argparse
import logging
import signal
from types import FrameType

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
