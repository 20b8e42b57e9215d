"""The test server's protocols inside a trio nursery, beside a trio TCP line server.

``await run_trio(context, nursery)`` starts one task per fd and direction in the
nursery; the line server on ``--line-port`` (``trio.serve_tcp``) answers each line
upper-cased, and a third task counts 100 ms ticks.

``python examples/trio_loop.py --port 7681 --line-port 7682``
"""

from __future__ import annotations

import argparse
import functools
import signal

import trio

from lwsbridge.adapters.trio_loop import run_trio
from lwsbridge.apps.demo_server import build_context


async def serve(port: int, interface: str, line_port: int) -> None:
    ctx = build_context(port, interface)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await trio.sleep(0.1)
            ticks += 1

    async def lines(stream: trio.SocketStream) -> None:
        buf = b""
        async for chunk in stream:
            buf += chunk
            *done, buf = buf.split(b"\n")
            for line in done:
                await stream.send_all(line.upper() + b"\n")

    try:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                adapter = await run_trio(ctx, nursery)
                nursery.start_soon(ticker)
                listeners = await nursery.start(
                    functools.partial(trio.serve_tcp, lines, line_port, host=interface)
                )
                bound = listeners[0].socket.getsockname()[1]
                print(
                    f"trio_loop example: ws://{interface}:{ctx.port}/ lines on port {bound}",
                    flush=True,
                )
                async for _sig in signals:
                    break
                if adapter is not None:
                    adapter.close()
                nursery.cancel_scope.cancel()
    finally:
        ctx.destroy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-p", "--port", type=int, default=7681)
    parser.add_argument("-i", "--interface", default="127.0.0.1")
    parser.add_argument("--line-port", type=int, default=0)
    args = parser.parse_args(argv)
    trio.run(serve, args.port, args.interface, args.line_port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
