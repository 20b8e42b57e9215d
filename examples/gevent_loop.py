"""The test server's protocols on a gevent hub, beside other greenlets.

:class:`~lwsbridge.adapters.gevent_loop.GeventAdapter` puts one ``loop.io`` watcher
per fd and one timer on the hub; lwsbridge runs inside watcher callbacks, so these
run freely beside it: a greenlet doing periodic work (counting 100 ms ticks) and a
``gevent.server.StreamServer`` line echo on ``--echo-port`` that prefixes each line
with the tick count.  No monkey-patching.

``python examples/gevent_loop.py --port 7681 --echo-port 7682``
"""

from __future__ import annotations

import argparse
import signal
from typing import Any

import gevent
from gevent.server import StreamServer

from lwsbridge.adapters.gevent_loop import GeventAdapter
from lwsbridge.apps.demo_server import build_context


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-p", "--port", type=int, default=7681)
    parser.add_argument("-i", "--interface", default="127.0.0.1")
    parser.add_argument("--echo-port", type=int, default=0)
    args = parser.parse_args(argv)

    ctx = build_context(args.port, args.interface)
    adapter = GeventAdapter(ctx)
    ticks = [0]

    def periodic() -> None:
        while True:
            gevent.sleep(0.1)
            ticks[0] += 1

    def echo(sock: Any, address: Any) -> None:
        f = sock.makefile("rwb")
        for line in f:
            f.write(b"%d " % ticks[0] + line)
            f.flush()
        f.close()

    server = StreamServer((args.interface, args.echo_port), echo)
    server.start()
    worker = gevent.spawn(periodic)
    gevent.signal_handler(signal.SIGTERM, adapter.stop)
    gevent.signal_handler(signal.SIGINT, adapter.stop)
    print(
        f"gevent_loop example: ws://{args.interface}:{ctx.port}/ "
        f"echo on {args.interface}:{server.server_port}",
        flush=True,
    )
    try:
        adapter.serve_forever()
    finally:
        worker.kill()
        server.stop()
        adapter.close()
        ctx.destroy()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
