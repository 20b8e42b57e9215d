"""lwsbridge's echo server on asyncio (uvloop with ``--uvloop``), beside a coroutine.

The context is attached with :class:`~lwsbridge.adapters.asyncio_loop.AsyncioAdapter`:
its fds become ``add_reader``/``add_writer`` and its timers a ``call_at`` handle.  A
second coroutine serves ``GET /ticks``-style plain TCP on ``--tick-port`` (when given):
it answers every connection with the number of 100 ms ticks counted so far.

``python examples/asyncio_loop.py --port 7681``
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from lwsbridge.adapters.asyncio_loop import AsyncioAdapter
from lwsbridge.apps.echo_server import build_context


async def serve(port: int, interface: str, tick_port: int | None) -> None:
    ctx = build_context(port, interface, 16 << 20)
    adapter = AsyncioAdapter(ctx)
    ticks = 0
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.1)
            ticks += 1

    async def tell(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(f"{ticks}\n".encode())
        await writer.drain()
        writer.close()

    tick_task = asyncio.ensure_future(ticker())
    server = await asyncio.start_server(tell, interface, tick_port) if tick_port else None
    print(f"asyncio_loop example: ws://{interface}:{ctx.port}/", flush=True)
    try:
        await stop.wait()
    finally:
        tick_task.cancel()
        if server is not None:
            server.close()
        adapter.close()
        ctx.destroy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-p", "--port", type=int, default=7681)
    parser.add_argument("-i", "--interface", default="127.0.0.1")
    parser.add_argument("--tick-port", type=int, default=None)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    args = parser.parse_args(argv)
    coro = serve(args.port, args.interface, args.tick_port)
    if args.uvloop:
        import uvloop

        uvloop.run(coro)
    else:
        asyncio.run(coro)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
