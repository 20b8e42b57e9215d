"""What the test apps share: logging setup from an lws ``-d`` bitfield and the run loop."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from types import FrameType
from typing import ClassVar

from lwsbridge.context import Context
from lwsbridge.log import LLL_DEBUG, LLL_ERR, LLL_INFO, LLL_NOTICE, LLL_WARN, NOTICE

__all__ = ["add_common_args", "run", "setup_logging"]


class _LwsFormatter(logging.Formatter):
    """``[2026/11/26 21:22:24:6617] N: message``, as lws prints it."""

    _LETTERS: ClassVar[dict[int, str]] = {
        logging.ERROR: "E",
        logging.WARNING: "W",
        NOTICE: "N",
        logging.INFO: "I",
        logging.DEBUG: "D",
    }

    def format(self, record: logging.LogRecord) -> str:
        t = time.localtime(record.created)
        frac = int((record.created % 1) * 10000)
        stamp = time.strftime("%Y/%m/%d %H:%M:%S", t)
        letter = self._LETTERS.get(record.levelno, "?")
        text = f"[{stamp}:{frac:04d}] {letter}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def setup_logging(levels: int) -> None:
    """Map lws's level bits onto the "lwsbridge" logger, printing to stderr."""
    if levels & LLL_DEBUG:
        level = logging.DEBUG
    elif levels & LLL_INFO:
        level = logging.INFO
    elif levels & LLL_NOTICE:
        level = NOTICE
    elif levels & LLL_WARN:
        level = logging.WARNING
    elif levels & LLL_ERR:
        level = logging.ERROR
    else:
        level = logging.CRITICAL + 1
    log = logging.getLogger("lwsbridge")
    log.setLevel(level)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LwsFormatter())
    log.handlers[:] = [handler]
    log.propagate = False


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
        help="lws log level bits: 1 err, 2 warn, 4 notice, 8 info, 16 debug (default 7)",
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
