"""The client's side of a close the server starts, against a real peer (websockets).

RFC 6455 §5.5.1 / §7.1.1: the client answers the server's close -- echoing its code and
reason, as libwebsockets and websockets do -- then waits for the server to close TCP.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from clientutil import Recorder
from support.servicing import pump, settle, stepper
from websockets.asyncio.server import ServerConnection, serve

from lwsbridge.context import ClientConnectInfo, Protocol, Reason

TIMEOUT = 20.0  # seconds: the websockets server thread's whole life


class ClosingServer:
    """A websockets server on a helper thread that closes every connection at once with
    ``code``/``reason`` and records the close frame the client answered with."""

    def __init__(self, code: int, reason: str) -> None:
        self.code, self.reason = code, reason
        self.replies: list[tuple[int, str] | None] = []
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _handler(self, ws: ServerConnection) -> None:
        await ws.close(self.code, self.reason)
        rcvd = ws.protocol.close_rcvd
        self.replies.append(None if rcvd is None else (rcvd.code, rcvd.reason))

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(self._handler, "127.0.0.1", 0, close_timeout=5) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            # Bounded: a test that fails before stop() leaves no thread behind for long.
            await asyncio.wait_for(self._stop.wait(), TIMEOUT)

    def __enter__(self) -> ClosingServer:
        self._thread.start()
        assert self._ready.wait(TIMEOUT), "the websockets server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(TIMEOUT)


def test_server_close_code_and_reason_echoed(make_ctx: Any) -> None:
    rec = Recorder()
    ctx = make_ctx([Protocol("p", rec.callback)])
    reason = "server bye é€ " + "x" * 90
    with ClosingServer(4002, reason) as srv:
        conn = ctx.client_connect(ClientConnectInfo("127.0.0.1", srv.port, timeout=5.0))
        pump(stepper(ctx), lambda: rec.has(conn, Reason.CLOSED) and srv.replies, "the close")
        settle(stepper(ctx), 0.05)
    assert srv.replies == [(4002, reason)]
    assert rec.count(conn, Reason.CLIENT_ESTABLISHED) == 1
    assert rec.count(conn, Reason.WS_PEER_INITIATED_CLOSE) == 1
    assert rec.count(conn, Reason.CLOSED) == 1
