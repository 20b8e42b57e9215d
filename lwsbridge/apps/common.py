"""What the test apps share: logging setup from an lws ``-d`` bitfield and the run loop.

``--loop NAME`` (:func:`add_loop_arg`) runs the context on one of
:data:`lwsbridge.adapters.LOOPS` through :func:`lwsbridge.adapters.run` instead of the
built-in ``context.service`` loop; SIGINT/SIGTERM end either cleanly (exit 0).
``--workers N`` (N > 1) serves with N processes on the port through
:func:`lwsbridge.workers.run` (:func:`run_app`).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import math
import signal
import socket
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from lwsbridge.context import Context
from lwsbridge.log import LLL_ERR, LLL_NOTICE, LLL_WARN, NOTICE, Emitter, set_log_level

__all__ = [
    "StopEvent",
    "add_common_args",
    "add_loop_arg",
    "check_common_args",
    "check_loop",
    "connect_port_arg",
    "context_options",
    "port_arg",
    "run",
    "run_app",
    "seconds_arg",
    "serve",
    "setup_logging",
    "startup_error",
]


def setup_logging(levels: int, emit: Emitter | None = None) -> None:
    """Enable lws's level bits (``-d``); lws-style lines on stderr unless ``emit`` is given.

    See :mod:`lwsbridge.log`.
    """
    set_log_level(levels, emit)


def add_loop_arg(parser: argparse.ArgumentParser, note: str = "") -> None:
    """``--loop NAME``: serve on that adapter instead of the built-in loop."""
    from lwsbridge.adapters import LOOPS

    parser.add_argument(
        "--loop",
        choices=LOOPS,
        default=None,
        metavar="|".join(LOOPS),
        help="run the context on this event-loop adapter (lwsbridge.adapters) instead of "
        "the built-in loop (context.service)" + note,
    )


# -- bad input: one line naming the thing, exit 2 (argparse's) or 1, no traceback -------


def _port(text: str, low: int) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not low <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number ({low}-65535)")
    return port


def port_arg(text: str) -> int:
    """argparse ``type`` of a listening port: 0-65535 (0: any free one)."""
    return _port(text, 0)


def connect_port_arg(text: str) -> int:
    """argparse ``type`` of a port to connect to: 1-65535."""
    return _port(text, 1)


def _seconds(text: str, zero_ok: bool) -> float:
    try:
        secs = float(text)
    except ValueError:
        secs = math.nan
    if not ((secs >= 0 if zero_ok else secs > 0) and math.isfinite(secs)):
        what = "a number of seconds (0 or more)" if zero_ok else "a positive number of seconds"
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return secs


def seconds_arg(text: str) -> float:
    """argparse ``type`` of an interval: a positive number of seconds."""
    return _seconds(text, zero_ok=False)


def drain_seconds_arg(text: str) -> float:
    """argparse ``type`` of a drain time: zero (close at once) or more seconds."""
    return _seconds(text, zero_ok=True)


def check_loop(parser: argparse.ArgumentParser, loop: str | None) -> None:
    """Refuse ``--loop NAME`` (exit 2) when its library is missing, naming the extra.

    Checked before anything starts: otherwise the ImportError comes as a traceback
    from inside the running app.  Each extra is named like the module it installs.
    """
    from lwsbridge.loops import LOOPS

    requires = LOOPS[loop].requires if loop in LOOPS else None
    if requires is None:
        return
    try:
        importlib.import_module(requires)
    except ImportError:
        parser.error(
            f"--loop {loop} needs the {requires!r} module: pip install 'lwsbridge[{requires}]'"
        )


def check_common_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What :func:`add_common_args` cannot check alone; usage errors exit 2 as argparse's.

    TLS options without ``--ssl`` were ignored silently: a user who gave a certificate
    got a plain-text server.
    """
    check_loop(parser, args.loop)
    if not args.ssl:
        for given, opt in ((args.cert, "-C/--cert"), (args.key, "-K/--key")):
            if given is not None:
                parser.error(f"{opt} {given!r} needs -s/--ssl")
        if args.cipher_list is not None:
            parser.error(f"--cipher-list {args.cipher_list!r} needs -s/--ssl")
    if args.key is not None and args.cert is None:
        parser.error(f"-K/--key {args.key!r} needs -C/--cert")


def startup_error(exc: BaseException, args: argparse.Namespace) -> str:
    """The one line for a server that cannot start, naming the port or interface.

    The socket's own text ("[Errno 98] Address already in use") names neither.  TLS
    file errors come from :mod:`lwsbridge.tls` with the file named already.
    """
    where = f"{args.interface} port {args.port}" if args.interface else f"port {args.port}"
    if isinstance(exc, socket.gaierror):
        return f"cannot listen on interface {args.interface!r}: {exc.strerror}"
    binding = (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES)
    if isinstance(exc, OSError) and exc.errno in binding and exc.strerror and not exc.filename:
        return f"cannot listen on {where}: {exc.strerror}"
    return str(exc)


def _make_naming(make: Callable[..., Context], args: argparse.Namespace, **extra: Any) -> Context:
    """``make(**extra)`` in a worker, whose error the supervisor shows as its text only."""
    try:
        return make(**extra)
    except OSError as exc:
        why = startup_error(exc, args)
        if why == str(exc):
            raise
        raise OSError(why) from exc


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-p", "--port", type=port_arg, default=7681, help="listen port (default 7681)"
    )
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
    add_loop_arg(parser)
    parser.add_argument(
        "--workers",
        type=_workers,
        default=1,
        metavar="N",
        help="serve with N processes sharing the port (SO_REUSEPORT, Linux) under a "
        "supervisor that restarts them; SIGTERM drains, SIGHUP restarts them one by one "
        "(default 1: one process, no supervisor)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=drain_seconds_arg,
        default=10.0,
        metavar="SECS",
        help="with --workers: how long a stopping worker waits for its connections to "
        "close after sending them 1001 (default 10)",
    )
    parser.add_argument(
        "--ping-interval",
        type=seconds_arg,
        default=None,
        metavar="SECS",
        help="send a keepalive ping this often; no pong by the next one drops the peer "
        "(default: no pings)",
    )


def _workers(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {n}")
    return n


def context_options(args: argparse.Namespace) -> dict[str, Any]:
    """Context keyword arguments from the common options (TLS, pings)."""
    opts: dict[str, Any] = {"ping_interval": args.ping_interval}
    if args.ssl:
        from lwsbridge.apps.certs import default_cert
        from lwsbridge.tls import ServerTLS

        cert, key = (args.cert, args.key) if args.cert else default_cert()
        opts["tls"] = ServerTLS(cert, key, cipher_list=args.cipher_list)
    return opts


_stop_early = threading.Event()


def catch_stop_signals() -> None:
    """Take SIGTERM/SIGINT from the start, before the listening port exists.

    A stop that arrives while the app is still starting (a supervisor or a test that
    signals as soon as the port accepts) then ends it with exit 0 like any other,
    instead of the default action killing it.  :func:`serve` picks the flag up.
    """

    def early(signum: int, frame: FrameType | None) -> None:
        _stop_early.set()

    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, early)


class StopEvent(threading.Event):
    """A ``threading.Event`` that also counts as set once ``until()`` is true.

    :func:`lwsbridge.adapters.run` looks at its stop event every 100 ms, so an app can
    end its adapter loop on a condition of its own (the test client's ``--count``).
    """

    def __init__(self, until: Callable[[], object] | None = None) -> None:
        super().__init__()
        self._until = until

    def is_set(self) -> bool:
        return super().is_set() or (self._until is not None and bool(self._until()))


def serve(
    context: Context,
    loop: str | None,
    until: Callable[[], object] | None = None,
    poll_ms: int = 1000,
) -> None:
    """Service ``context`` until ``until()`` (None: for ever) or SIGINT/SIGTERM.

    ``loop`` None: the built-in loop (``context.service``); else the named adapter
    through :func:`lwsbridge.adapters.run`.  The signals only set a flag, so every loop
    (gevent's hub, trio, asyncio included) winds down its own way and detaches; the
    adapter notices within 100 ms.  The previous handlers are restored on return.
    Destroying the context is the caller's business.
    """
    stop = StopEvent(until)
    # Set with ``stop``: the built-in loop tests it once per pass, without a call.
    stopped: list[bool] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        stopped.append(True)
        context.cancel_service()  # wakes a wait on the context's fds at once

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    if _stop_early.is_set():
        # Taken once: a later serve() in the same process (tests) is not stopped by it.
        _stop_early.clear()
        stop.set()
        stopped.append(True)
    try:
        if loop is None and until is None:
            service = context.service
            while not stopped:
                service(poll_ms)
        elif loop is None:
            while not stop.is_set():
                context.service(poll_ms)
        else:
            from lwsbridge.adapters import run as run_on

            run_on(context, loop, stop)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def run(context: Context, banner: str, loop: str | None = None) -> int:
    """Service ``context`` on the built-in loop (or adapter ``loop``) until SIGINT/SIGTERM."""
    where = f" ({loop} loop)" if loop else ""
    logging.getLogger("lwsbridge").log(NOTICE, "%s on port %s%s", banner, context.port, where)
    try:
        serve(context, loop)
    finally:
        context.destroy()
    return 0


def run_app(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    make: Callable[..., Context],
    banner: str,
) -> int:
    """Build with ``make(**extra)`` and serve, in one process or ``--workers`` of them.

    With one worker this is :func:`run` on ``make()``, as before there were workers.
    With more, each worker calls ``make(reuse_port=True)`` after the fork and this
    process supervises (:func:`lwsbridge.workers.run`).  A context that cannot be
    built (port in use, bad certificate, no SO_REUSEPORT) ends the app with one line
    and exit 1.
    """
    if args.workers == 1:
        try:
            ctx = make()
        except (OSError, ValueError) as exc:  # port in use, fd limit too low, bad cert
            parser.exit(1, f"{parser.prog}: {startup_error(exc, args)}\n")
        return run(ctx, banner, args.loop)
    from lwsbridge.workers import WorkerStartError
    from lwsbridge.workers import run as run_workers

    if args.port == 0:
        parser.exit(1, f"{parser.prog}: --workers needs a fixed port, not 0\n")
    if _stop_early.is_set():  # stopped before the supervisor's own handlers exist
        _stop_early.clear()
        return 0

    where = f" ({args.loop} loop)" if args.loop else ""
    logging.getLogger("lwsbridge").log(
        NOTICE, "%s: %d workers on port %s%s", banner, args.workers, args.port, where
    )
    try:
        return run_workers(
            lambda: _make_naming(make, args, reuse_port=True),
            args.workers,
            args.loop,
            drain_timeout=args.drain_timeout,
        )
    except (ValueError, WorkerStartError) as exc:
        parser.exit(1, f"{parser.prog}: {exc}\n")
