"""Timeouts, each a Context option with a documented default (lws ``timeout_secs`` & co).

handshake_timeout (partial request, slowloris), keepalive_timeout (idle HTTP keep-alive),
ping_interval + pong_timeout (a peer that never answers pings; one that does),
close_timeout (a close handshake never answered), connect_timeout (client).
The tests shorten them to about a second and time what happens, within bounds.
"""

from __future__ import annotations

import base64
import inspect
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support.servicing import pump, settle, stepper

from lwsbridge.context import CLOSE, ClientConnectInfo, Context, Protocol, Reason

HOST = "127.0.0.1"
T = 1.0  # the timeout under test
EARLY, LATE = 0.85, 0.7  # it fires no sooner than T*EARLY, no later than T+LATE


class Recorder:
    """Protocol callback: records (reason, conn, payload, time); answers HTTP; 'bye' closes."""

    def __init__(self) -> None:
        self.calls: list[tuple[Reason, Any, Any, float]] = []

    def callback(self, conn: Any, reason: Reason, user: Any, payload: Any) -> int:
        if conn is None:
            return 0
        self.calls.append((reason, conn, payload, time.monotonic()))
        if reason is Reason.HTTP:
            conn.http_response(200, "ok")
        elif reason is Reason.RECEIVE and bytes(payload) == b"bye":
            return CLOSE
        return 0

    def times(self, reason: Reason) -> list[float]:
        return [t for r, _c, _p, t in self.calls if r is reason]

    def payloads(self, reason: Reason) -> list[Any]:
        return [p for r, _c, p, _t in self.calls if r is reason]


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def make(rec: Recorder) -> Iterator[Callable[..., Context]]:
    made: list[Context] = []

    def build(**kw: Any) -> Context:
        kw.setdefault("port", 0)
        kw.setdefault("interface", HOST)
        ctx = Context([Protocol("t", rec.callback)], **kw)
        made.append(ctx)
        return ctx

    yield build
    for ctx in made:
        ctx.destroy()


class Peer:
    """A raw, non-blocking TCP client that the test drives by hand."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=5)
        self.sock.setblocking(False)
        self.buf = bytearray()
        self.eof = False

    def send(self, data: bytes) -> bool:
        """Send (small writes only); False once the server has closed."""
        try:
            return self.sock.send(data) == len(data)
        except (BrokenPipeError, ConnectionResetError):
            self.eof = True
            return False

    def pull(self) -> bool:
        while not self.eof:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                break
            except ConnectionResetError:
                data = b""
            if not data:
                self.eof = True
            self.buf += data
        return self.eof

    def take(self, marker: bytes) -> bytes | None:
        self.pull()
        i = self.buf.find(marker)
        if i < 0:
            return None
        out = bytes(self.buf[: i + len(marker)])
        del self.buf[: i + len(marker)]
        return out

    def frame(self) -> tuple[int, bytes] | None:
        """One whole (short) server frame: (opcode, payload)."""
        self.pull()
        if len(self.buf) < 2 or len(self.buf) < 2 + (self.buf[1] & 0x7F):
            return None
        n = self.buf[1] & 0x7F
        assert n < 126
        out = (self.buf[0] & 0x0F, bytes(self.buf[2 : 2 + n]))
        del self.buf[: 2 + n]
        return out

    def close(self) -> None:
        self.sock.close()


def upgrade_request(port: int) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET / HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def masked(opcode: int, payload: bytes) -> bytes:
    key = os.urandom(4)
    data = bytes(b ^ key[i & 3] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + key + data


def run_until(ctx: Context, cond: Callable[[], Any], what: str, timeout: float = 5.0) -> Any:
    return pump(stepper(ctx, ms=10), cond, what, timeout)


def run_for(ctx: Context, seconds: float) -> None:
    settle(stepper(ctx, ms=10), seconds)


def ws_peer(ctx: Context) -> Peer:
    assert ctx.port is not None
    p = Peer(ctx.port)
    assert p.send(upgrade_request(ctx.port))
    head = run_until(ctx, lambda: p.take(b"\r\n\r\n"), "the 101")
    assert head.startswith(b"HTTP/1.1 101 "), head
    return p


def assert_fired(elapsed: float, timeout: float = T) -> None:
    assert timeout * EARLY <= elapsed <= timeout + LATE, (
        f"{elapsed:.2f} s for a {timeout} s timeout"
    )


# ---------------------------------------------------------------------------- defaults


def test_defaults() -> None:
    params = inspect.signature(Context.__init__).parameters
    defaults = {name: params[name].default for name in params if name != "self"}
    assert defaults["handshake_timeout"] == 5.0
    assert defaults["keepalive_timeout"] == 5.0
    assert defaults["close_timeout"] == 5.0
    assert defaults["connect_timeout"] == 5.0
    assert defaults["ping_interval"] is None  # no pings unless asked for
    assert defaults["pong_timeout"] is None  # meaning: the ping interval
    assert (defaults["ka_time"], defaults["ka_probes"], defaults["ka_interval"]) == (0, 0, 0)
    doc = Context.__doc__ or ""
    for name in ("handshake_timeout", "keepalive_timeout", "close_timeout", "connect_timeout"):
        assert name in doc
    assert ClientConnectInfo.__dataclass_fields__["timeout"].default is None
    with Context([Protocol("t", lambda *a: 0)], port=None, ping_interval=3) as ctx:
        assert ctx.pong_timeout == 3  # pong_timeout defaults to the interval


# ---------------------------------------------------------------------------- handshake


def test_handshake_timeout_partial_request(make: Callable[..., Context], rec: Recorder) -> None:
    ctx = make(handshake_timeout=T, keepalive_timeout=10 * T)
    assert ctx.port is not None
    start = time.monotonic()
    partial, done = Peer(ctx.port), Peer(ctx.port)
    try:
        assert partial.send(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
        assert done.send(upgrade_request(ctx.port))
        run_until(ctx, partial.pull, "the partial request to be dropped", 5 * T)
        assert_fired(time.monotonic() - start)
        assert partial.buf == b""  # dropped, no answer
        assert Reason.CLOSED_HTTP in [r for r, *_ in rec.calls]
        # the completed handshake is no longer under that timeout
        run_for(ctx, 0.5 * T)
        assert not done.pull() and done.buf.startswith(b"HTTP/1.1 101 ")
        assert rec.times(Reason.CLOSED) == []
    finally:
        partial.close()
        done.close()


def test_handshake_timeout_not_extended_by_slowloris(make: Callable[..., Context]) -> None:
    ctx = make(handshake_timeout=T)
    assert ctx.port is not None
    start = time.monotonic()
    p = Peer(ctx.port)
    request = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 200
    sent, next_byte = 0, start
    try:
        deadline = start + 5 * T
        while not p.pull() and time.monotonic() < deadline:
            if time.monotonic() >= next_byte and sent < len(request):
                if not p.send(request[sent : sent + 1]):  # one byte every 0.1 s
                    break
                sent += 1
                next_byte += 0.1
            ctx.service(10)
        assert p.eof, "a slowloris client was never dropped"
        assert_fired(time.monotonic() - start)
        assert sent >= 8  # it was trickling all along
    finally:
        p.close()


# ---------------------------------------------------------------------------- keep-alive


def test_keepalive_timeout_idle_http(make: Callable[..., Context]) -> None:
    ctx = make(keepalive_timeout=T, handshake_timeout=10 * T)
    assert ctx.port is not None
    p = Peer(ctx.port)
    try:
        for _ in range(2):  # a request within the keep-alive time is served as usual
            assert p.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            head = run_until(ctx, lambda: p.take(b"\r\n\r\nok"), "the response")
            assert head.startswith(b"HTTP/1.1 200 ")
            answered = time.monotonic()
            run_for(ctx, 0.6 * T)
            assert not p.pull()
        run_until(ctx, p.pull, "the idle connection to be closed", 5 * T)
        assert_fired(time.monotonic() - answered)
    finally:
        p.close()


# ---------------------------------------------------------------------------- pings


def test_peer_that_never_answers_pings_is_dropped(
    make: Callable[..., Context], rec: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    # The drop is a NOTICE; the library sets no level of its own (the root's WARNING
    # would hide it), so ask for it as an application would.
    caplog.set_level(logging.INFO, logger="lwsbridge")
    interval = 0.5
    ctx = make(ping_interval=interval, pong_timeout=interval)
    p = ws_peer(ctx)
    try:
        established = rec.times(Reason.ESTABLISHED)[0]
        op, _ = run_until(ctx, p.frame, "a ping")
        assert op == 0x9
        assert_fired(time.monotonic() - established, interval)
        run_until(ctx, lambda: rec.times(Reason.CLOSED), "CLOSED", 5 * interval)
        assert_fired(rec.times(Reason.CLOSED)[0] - established, 2 * interval)
        assert p.pull()  # the socket is gone
        assert any("no pong" in r.getMessage() for r in caplog.records)
    finally:
        p.close()


def test_peer_that_answers_pings_stays(make: Callable[..., Context], rec: Recorder) -> None:
    from websockets.protocol import State
    from websockets.sync.client import connect

    interval = 0.3
    ctx = make(ping_interval=interval, pong_timeout=interval)
    stop, states, errors = threading.Event(), [], []

    def client() -> None:
        try:
            with connect(
                f"ws://{HOST}:{ctx.port}/", open_timeout=5, ping_interval=None, proxy=None
            ) as ws:
                stop.wait(10)
                states.append(ws.protocol.state)
        except Exception as exc:  # reported by the main thread
            errors.append(exc)

    t = threading.Thread(target=client, daemon=True)
    t.start()
    try:
        run_until(ctx, lambda: rec.times(Reason.ESTABLISHED) or errors, "ESTABLISHED")
        run_for(ctx, 6 * interval)
        assert len(rec.times(Reason.RECEIVE_PONG)) >= 4  # pongs, answered automatically
        assert rec.times(Reason.CLOSED) == []
    finally:
        stop.set()
        run_until(ctx, lambda: not t.is_alive(), "the client to close", 5)
        t.join(5)
    assert not errors, errors
    assert states == [State.OPEN]


# ---------------------------------------------------------------------------- close


def test_close_timeout_unanswered_close(
    make: Callable[..., Context], rec: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="lwsbridge")
    ctx = make(close_timeout=T)
    p = ws_peer(ctx)
    try:
        assert p.send(masked(0x1, b"bye"))  # the server's callback returns -1
        op, payload = run_until(ctx, p.frame, "the server's close frame")
        sent_close = time.monotonic()
        assert op == 0x8 and struct.unpack("!H", payload[:2])[0] == 1000
        # ... and the peer never answers nor closes
        run_until(ctx, p.pull, "the socket to be closed", 5 * T)
        assert_fired(time.monotonic() - sent_close)
        assert len(rec.times(Reason.CLOSED)) == 1
        assert any("timed out closing" in r.getMessage() for r in caplog.records)
    finally:
        p.close()


# ---------------------------------------------------------------------------- client


def test_client_connect_timeout(make: Callable[..., Context], rec: Recorder) -> None:
    """A listener that takes the TCP connection but never answers the handshake."""
    with socket.socket() as listener:
        listener.bind((HOST, 0))
        listener.listen(8)  # never accepted
        port = listener.getsockname()[1]
        ctx = make(port=None, connect_timeout=T)
        start = time.monotonic()
        default = ctx.client_connect(ClientConnectInfo(HOST, port))
        own = ctx.client_connect(ClientConnectInfo(HOST, port, timeout=T / 2))
        errs = lambda: [c for r, c, *_ in rec.calls if r is Reason.CLIENT_CONNECTION_ERROR]  # noqa: E731
        run_until(ctx, lambda: len(errs()) == 2, "two CLIENT_CONNECTION_ERRORs", 5 * T)
        by_conn = {c: t for r, c, _p, t in rec.calls if r is Reason.CLIENT_CONNECTION_ERROR}
        assert_fired(by_conn[own] - start, T / 2)
        assert_fired(by_conn[default] - start, T)
        for msg in rec.payloads(Reason.CLIENT_CONNECTION_ERROR):
            assert "timed out" in msg and "connect timeout" in msg
        run_for(ctx, 0.2)
        assert len(errs()) == 2  # exactly one each, nothing else
        assert not rec.times(Reason.CLOSED) and not rec.times(Reason.CLIENT_ESTABLISHED)
