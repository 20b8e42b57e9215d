"""lwsbridge-zmq-proxy: the ZeroMQ backplane's broker, ``zmq.proxy`` between XSUB and XPUB.

``--bind HOST:PORT``: publishers connect to the XSUB socket on PORT, subscribers to the
XPUB socket on PORT+1 (``zmq://HOST:PORT`` is the backplane URL).  No broker code of
our own: ``zmq.proxy_steerable`` forwards messages one way and subscriptions the other.
SIGTERM or SIGINT stops it cleanly (exit 0); a bad address or a port in use is one
line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from lwsbridge.backplane import BackplaneURLError, parse_url

__all__ = ["main"]

_CONTROL = "inproc://lwsbridge-zmq-proxy-control"


def _fail(msg: str) -> int:
    print(f"lwsbridge-zmq-proxy: {msg}", file=sys.stderr, flush=True)
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="lwsbridge-zmq-proxy",
        description="ZeroMQ broker for the lwsbridge backplane: XSUB on PORT, XPUB on PORT+1",
    )
    parser.add_argument(
        "--bind", required=True, metavar="HOST:PORT", help="address to bind (XSUB; XPUB on +1)"
    )
    parser.add_argument(
        "--hwm",
        type=int,
        default=100_000,
        metavar="N",
        help="messages queued per peer before ZeroMQ drops (default 100000; ZeroMQ's is 1000)",
    )
    args = parser.parse_args(argv)
    if args.hwm < 1:
        return _fail(f"bad --hwm {args.hwm}: must be at least 1")
    try:
        u = parse_url(f"zmq://{args.bind}")
    except BackplaneURLError:
        return _fail(f"bad --bind {args.bind!r}: expected HOST:PORT with PORT 1-65534")
    try:
        import zmq  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return _fail("needs pyzmq: pip install 'lwsbridge[zmq]'")

    host = f"[{u.host}]" if ":" in u.host else u.host
    ctx = zmq.Context()
    xsub = ctx.socket(zmq.XSUB)
    xpub = ctx.socket(zmq.XPUB)
    control = ctx.socket(zmq.PAIR)
    steer = ctx.socket(zmq.PAIR)
    for s in (xsub, xpub, control, steer):
        s.setsockopt(zmq.LINGER, 0)
        if ":" in u.host:
            s.setsockopt(zmq.IPV6, 1)
    for s in (xsub, xpub):
        # A burst to a subscriber a little behind is queued, not dropped at 1000.
        s.setsockopt(zmq.SNDHWM, args.hwm)
        s.setsockopt(zmq.RCVHWM, args.hwm)
    try:
        for sock, port in ((xsub, u.port), (xpub, u.port + 1)):
            endpoint = f"tcp://{host}:{port}"
            try:
                sock.bind(endpoint)
            except zmq.ZMQError as exc:
                return _fail(f"cannot bind {endpoint}: {exc}")
        control.bind(_CONTROL)
        steer.connect(_CONTROL)

        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

        def forward() -> None:
            # Returns when TERMINATE arrives on the control socket.
            zmq.proxy_steerable(xsub, xpub, None, control)

        proxy = threading.Thread(target=forward, name="zmq-proxy", daemon=True)
        proxy.start()
        print(
            f"lwsbridge-zmq-proxy: XSUB tcp://{host}:{u.port}, XPUB tcp://{host}:{u.port + 1}",
            file=sys.stderr,
            flush=True,
        )
        # The main thread only waits, so that signal handlers run at once.
        while not stop.wait(1.0):
            if not proxy.is_alive():
                return _fail("the proxy stopped unexpectedly")
        steer.send(b"TERMINATE")
        proxy.join(5.0)
        return 0
    finally:
        for s in (steer, control, xsub, xpub):
            s.close()
        ctx.term()


if __name__ == "__main__":
    raise SystemExit(main())
