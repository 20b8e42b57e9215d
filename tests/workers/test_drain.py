"""Context.drain in one process: the listener closes, WebSockets get 1001 after their
queued output, idle keep-alive connections close, late upgrades get a 503."""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from lwsbridge.context import Connection, Context, Protocol, Reason, WriteKind

WAIT = 20.0
BIG = 8 << 20  # far more than the socket buffers hold: the write stays queued


class Big:
    """Answers "big" with one BIG-byte message and says when it is queued."""

    def __init__(self) -> None:
        self.queued = threading.Event()

    def callback(self, conn: Connection | None, reason: Reason, user: Any, payload: Any) -> int:
        if conn is None:
            return 0
        if reason is Reason.RECEIVE and payload == b"big":
            conn.callback_on_writable()
        elif reason is Reason.SERVER_WRITEABLE:
            conn.write(b"x" * BIG, WriteKind.BINARY)
            self.queued.set()
        elif reason is Reason.HTTP:
            conn.http_response(200, "ok")
        return 0


class Served:
    """A context serviced on its own thread; ``call(fn)`` runs ``fn(ctx)`` there."""

    def __init__(self, protocols: list[Protocol]) -> None:
        self._jobs: queue.Queue[tuple[Callable[[Context], Any], queue.Queue[Any]]] = queue.Queue()
        self._stop = threading.Event()
        made: queue.Queue[Context | BaseException] = queue.Queue()
        self._thread = threading.Thread(target=self._run, args=(protocols, made), daemon=True)
        self._thread.start()
        ctx = made.get(timeout=WAIT)
        if isinstance(ctx, BaseException):
            raise ctx
        self.ctx = ctx
        assert ctx.port is not None
        self.port = ctx.port

    def _run(self, protocols: list[Protocol], made: queue.Queue[Any]) -> None:
        try:
            ctx = Context(
                protocols, port=0, interface="127.0.0.1", reuse_port=True, close_timeout=WAIT
            )
        except BaseException as exc:
            made.put(exc)
            return
        made.put(ctx)
        try:
            while not self._stop.is_set():
                ctx.service(50)
                while not self._jobs.empty():
                    fn, out = self._jobs.get()
                    out.put(fn(ctx))
        finally:
            ctx.destroy()

    def call(self, fn: Callable[[Context], Any]) -> Any:
        out: queue.Queue[Any] = queue.Queue()
        self._jobs.put((fn, out))
        self.ctx.cancel_service()
        return out.get(timeout=WAIT)

    def wait_for(self, what: Callable[[Context], bool], desc: str) -> None:
        done = threading.Event()

        def check(ctx: Context) -> bool:
            return what(ctx)

        for _ in range(int(WAIT / 0.05)):
            if self.call(check):
                return
            done.wait(0.05)
        pytest.fail(f"not reached: {desc}")

    def close(self) -> None:
        self._stop.set()
        self.ctx.cancel_service()
        self._thread.join(WAIT)


@pytest.fixture
def served() -> Any:
    big = Big()
    s = Served([Protocol("http", big.callback), Protocol("big", big.callback)])
    s.big = big  # type: ignore[attr-defined]
    yield s
    s.close()


def test_drain_sends_queued_output_then_1001(served: Any) -> None:
    with connect(f"ws://127.0.0.1:{served.port}/", subprotocols=["big"], max_size=None) as ws:  # type: ignore[list-item]
        ws.send(b"big")
        assert served.big.queued.wait(WAIT)  # the 8 MiB message is queued, unread
        served.call(lambda ctx: ctx.drain())
        assert served.call(lambda ctx: ctx.draining)
        assert served.call(lambda ctx: ctx.listen_fd) is None
        msg = ws.recv(timeout=WAIT)
        assert msg == b"x" * BIG  # written out in full before the close frame
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=WAIT)
        assert info.value.rcvd is not None
        assert (info.value.rcvd.code, info.value.rcvd.reason) == (1001, "going away")
    served.wait_for(lambda ctx: ctx.drained, "drained")


def test_drain_closes_idle_keepalive_refuses_late_upgrades_and_new_connections(
    served: Any,
) -> None:
    port = served.port
    idle = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    got = b""
    while b"ok" not in got:
        chunk = idle.recv(4096)
        assert chunk, "closed before the response"
        got += chunk
    fresh = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    served.wait_for(lambda ctx: ctx.connection_count == 2, "both connections accepted")
    served.call(lambda ctx: ctx.drain())
    assert idle.recv(4096) == b""  # the idle keep-alive connection is closed
    idle.close()
    # the connection accepted before the drain still gets an answer: 503 to an upgrade
    fresh.sendall(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    answer = b""
    while True:
        chunk = fresh.recv(4096)
        if not chunk:
            break
        answer += chunk
    fresh.close()
    assert answer.startswith(b"HTTP/1.1 503 ")
    served.wait_for(lambda ctx: ctx.drained, "drained")
    with pytest.raises(ConnectionRefusedError):  # the listener is closed: nobody on the port
        socket.create_connection(("127.0.0.1", port), timeout=WAIT).close()
    with pytest.raises((InvalidStatus, ConnectionRefusedError)):
        connect(f"ws://127.0.0.1:{port}/", open_timeout=WAIT).close()


def test_drain_twice_and_after_destroy_is_harmless() -> None:
    ctx = Context([Protocol("http", lambda *a: 0)], port=0, interface="127.0.0.1")
    assert not ctx.draining and not ctx.drained
    ctx.drain()
    ctx.drain()
    assert ctx.drained and ctx.listen_fd is None
    ctx.destroy()
    ctx.drain()
