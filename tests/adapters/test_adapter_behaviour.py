"""One behaviour suite, run on every adapter (the ``adapter`` fixture)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
from adapterkit import BINARY, TEXT, RawWS

from lwsbridge.adapters import UnknownFdError
from lwsbridge.apps import demo_server, echo_protocol, echo_server
from lwsbridge.context import POLLIN, POLLOUT, Context, Protocol, Reason, WriteKind

SIZES = (0, 125, 126, 65535, 65536, 1 << 20)


def url(ctx: Context) -> str:
    return f"ws://127.0.0.1:{ctx.port}/"


def echo_ctx(contexts) -> Context:
    return contexts(echo_server.build_context(0, "127.0.0.1", 2 << 20))


def settled(ctx: Context, driver) -> None:
    """The adapter's view of the poll set was the context's when it detached."""
    assert driver.last_events == dict(ctx.fds)


def test_echo_sizes_text_and_binary(adapter, contexts, workers) -> None:
    from websockets.sync.client import connect

    ctx = echo_ctx(contexts)

    def client() -> None:
        with connect(url(ctx), max_size=None) as ws:
            for n in SIZES:
                t = "é" * (n // 2) + "a" * (n % 2)
                ws.send(t)
                assert ws.recv(timeout=10) == t
                b = bytes(i & 0xFF for i in range(n)) if n < 70000 else b"\x5a" * n
                ws.send(b)
                assert ws.recv(timeout=10) == b

    workers.start(client)
    adapter.run(ctx, workers.done, 20, "the echo client")
    workers.check()
    adapter.run(ctx, lambda: len(ctx.fds) == 2, 5, "the connection to close")
    settled(ctx, adapter)


def test_hundred_concurrent_clients(adapter, contexts, workers) -> None:
    from websockets.sync.client import connect

    ctx = echo_ctx(contexts)
    n = 100
    barrier = threading.Barrier(n)
    peak = [0]

    def client(i: int) -> int:
        with connect(url(ctx), open_timeout=20) as ws:
            barrier.wait(20)  # all 100 open at once
            for j in range(3):
                msg = f"client {i} message {j}"
                ws.send(msg)
                assert ws.recv(timeout=20) == msg
        return i

    for i in range(n):
        workers.start(client, i)

    def done() -> bool:
        peak[0] = max(peak[0], len(ctx.connections()))
        return workers.done()

    adapter.run(ctx, done, 40, "100 clients")
    workers.check()
    assert sorted(workers.results) == list(range(n))
    assert peak[0] == n
    adapter.run(ctx, lambda: len(ctx.fds) == 2, 10, "every connection to close")
    settled(ctx, adapter)


def test_writeable_discipline_slow_reader(adapter, contexts, workers) -> None:
    """A reader that stops: WRITEABLE stops, buffering stays under one message."""
    msg_size = 64 * 1024
    count = 160  # 10 MiB: more than the kernel buffers
    state: dict[str, Any] = {"writes": 0, "max_out": 0, "entry_out": [], "conn": None}

    def cb(conn, reason, user, payload) -> int:
        if reason is Reason.ESTABLISHED:
            state["conn"] = conn
            conn.callback_on_writable()
        elif reason is Reason.SERVER_WRITEABLE:
            state["entry_out"].append(conn.buffered_bytes)
            i = state["writes"]
            conn.write(bytes([i & 0xFF]) * msg_size, WriteKind.BINARY)
            state["writes"] = i + 1
            state["max_out"] = max(state["max_out"], conn.buffered_bytes)
            if state["writes"] < count:
                conn.callback_on_writable()
        return 0

    # writeable_same_pass=False: every WRITEABLE comes from the adapter's POLLOUT (lws's
    # discipline).  (With same-pass delivery the context loses a WRITEABLE after 64 in
    # one pass: test_context_writeable_burst_not_lost below.)
    ctx = contexts(
        Context([Protocol("p", cb)], port=0, interface="127.0.0.1", writeable_same_pass=False)
    )
    go = threading.Event()

    def reader() -> int:
        ws = RawWS(ctx.port, rcvbuf=65536)
        try:
            assert go.wait(10)
            for i in range(count):
                op, data = ws.recv()
                assert op == BINARY and data == bytes([i & 0xFF]) * msg_size, i
            return count
        finally:
            ws.close()

    workers.start(reader)
    stall = {"last": -1, "since": time.monotonic()}

    def stalled() -> bool:
        conn = state["conn"]
        if conn is not None:
            state["max_out"] = max(state["max_out"], conn.buffered_bytes)
        if state["writes"] != stall["last"]:
            stall["last"], stall["since"] = state["writes"], time.monotonic()
            return False
        return state["writes"] > 0 and time.monotonic() - stall["since"] > 0.3

    adapter.run(ctx, stalled, 10, "WRITEABLE to stop for a peer that does not read")
    stopped_at = state["writes"]
    assert 2 <= stopped_at < count
    assert dict(ctx.fds)[state["conn"].fd] & 0x4
    go.set()
    adapter.run(ctx, workers.done, 20, "the reader to get every message")
    workers.check()
    assert state["writes"] == count
    assert state["max_out"] <= msg_size + 16, state["max_out"]
    assert all(n == 0 for n in state["entry_out"]), "WRITEABLE with bytes still queued"


def test_dumb_increment_timer_rate(adapter, contexts, workers) -> None:
    from websockets.sync.client import connect

    ctx = contexts(demo_server.build_context(0, "127.0.0.1"))

    def client() -> list[tuple[float, str]]:
        got = []
        with connect(url(ctx), subprotocols=["dumb-increment-protocol"]) as ws:
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                msg = ws.recv(timeout=5)
                got.append((time.monotonic(), msg))
        return got

    workers.start(client)
    adapter.run(ctx, workers.done, 10, "a second of dumb-increment")
    workers.check()
    got = workers.results[0]
    assert [m for _t, m in got] == [str(i) for i in range(len(got))]
    # The timer keeps firing on every loop; how often depends on the machine's load, so
    # only what cannot depend on it is checked: it never fires early (50 ms re-armed
    # after each TIMER is at most 20/s; slack for delivery bunching at the ends).
    assert len(got) >= 5, got
    rate = (len(got) - 1) / (got[-1][0] - got[0][0])
    assert rate <= 25.0, (rate, len(got))


def test_close_paths(adapter, contexts, workers) -> None:
    """Client close, the server's callback returning -1 (closeme), and RST."""
    from websockets.exceptions import ConnectionClosedOK
    from websockets.sync.client import connect

    closed: list[Any] = []
    inner = demo_server.DumbIncrement.callback

    def cb(conn, reason, user, payload) -> int:
        if reason is Reason.CLOSED:
            closed.append(conn)
        return inner(conn, reason, user, payload)

    ctx = contexts(
        Context(
            [Protocol("http", lambda *a: 0), Protocol("dumb", cb, demo_server.DumbIncrement)],
            port=0,
            interface="127.0.0.1",
        )
    )

    def by_client() -> str:
        with connect(url(ctx), subprotocols=["dumb"]) as ws:
            ws.recv(timeout=5)
        return "client"

    def by_server() -> str:
        with connect(url(ctx), subprotocols=["dumb"]) as ws:
            ws.send("closeme\n")
            with pytest.raises(ConnectionClosedOK):
                while True:
                    ws.recv(timeout=5)
            assert ws.close_code == 1001 and ws.close_reason == "seeya"
        return "server"

    def by_rst() -> str:
        ws = RawWS(ctx.port, "dumb")
        op, data = ws.recv()
        assert op == TEXT and data == b"0"
        ws.abort()
        return "rst"

    for fn in (by_client, by_server, by_rst):
        workers.start(fn)
    adapter.run(ctx, lambda: workers.done() and len(closed) == 3, 10, "three closes")
    workers.check()
    assert sorted(workers.results) == ["client", "rst", "server"]
    assert len(set(map(id, closed))) == 3
    adapter.run(ctx, lambda: len(ctx.fds) == 2, 5, "no fds but the listener and wakeup")
    settled(ctx, adapter)


def test_cancel_service_from_another_thread(adapter, contexts, workers) -> None:
    seen: list[str] = []

    def cb(conn, reason, user, payload) -> int:
        if reason is Reason.EVENT_WAIT_CANCELLED:
            seen.append(threading.current_thread().name)
        return 0

    ctx = contexts(Context([Protocol("p", cb)], port=0, interface="127.0.0.1"))

    def canceller() -> None:
        time.sleep(0.1)
        ctx.cancel_service()

    workers.start(canceller)
    # A long poll timeout: only the wakeup pipe can end the array loops' wait early.
    took = adapter.run(ctx, lambda: seen, 5, "EVENT_WAIT_CANCELLED", poll_ms=10_000)
    assert took < 2.0
    assert seen == [threading.current_thread().name]


def test_callback_exception_closes_only_that_connection(adapter, contexts, workers, caplog):
    from websockets.exceptions import ConnectionClosedOK
    from websockets.sync.client import connect

    caplog.set_level(logging.ERROR, logger="lwsbridge")

    def cb(conn, reason, user, payload) -> int:
        if reason is Reason.RECEIVE and payload == b"boom":
            raise RuntimeError("kaboom")
        return echo_protocol.echo_callback(conn, reason, user, payload)

    ctx = contexts(
        Context(
            [Protocol("echo", cb, echo_protocol.EchoSession)],
            port=0,
            interface="127.0.0.1",
            any_subprotocol=True,
        )
    )
    boomed = threading.Event()

    def victim() -> str:
        with connect(url(ctx)) as ws:
            ws.send("boom")
            with pytest.raises(ConnectionClosedOK):
                ws.recv(timeout=5)
        boomed.set()
        return "victim"

    def survivor() -> str:
        with connect(url(ctx)) as ws:
            ws.send("before")
            assert ws.recv(timeout=5) == "before"
            assert boomed.wait(10)
            for i in range(3):
                ws.send(f"after {i}")
                assert ws.recv(timeout=5) == f"after {i}"
        return "survivor"

    workers.start(victim)
    workers.start(survivor)
    adapter.run(ctx, workers.done, 10, "both clients")
    workers.check()
    assert sorted(workers.results) == ["survivor", "victim"]
    errs = [r for r in caplog.records if r.name == "lwsbridge" and r.levelno >= logging.ERROR]
    assert len(errs) == 1 and "RECEIVE" in errs[0].getMessage()


def test_unknown_fd_is_an_error_naming_it(adapter, contexts) -> None:
    if adapter.name == "uvloop":
        pytest.skip("uvloop's remove_reader/remove_writer do not say whether the fd was known")
    ctx = contexts(Context([Protocol("p", lambda *a: 0)], port=0, interface="127.0.0.1"))
    raised: list[str] = []

    def poke(ad: Any) -> None:
        # No interest table: the loop library's own registrations are what a DEL or
        # a CHANGE that stops watching is checked against (adapter_cls: the adapter
        # without the test's recording checks).
        cls = ad.adapter_cls
        for call in (
            lambda: cls.del_fd(ad, 987654, POLLIN),
            lambda: cls.change_fd(ad, 987654, POLLIN, 0),
            lambda: cls.del_fd(ad, 987654, POLLIN | POLLOUT),
        ):
            with pytest.raises(UnknownFdError, match="987654") as info:
                call()
            raised.append(str(info.value))
        assert ad.seen == dict(ctx.fds)

    adapter.run(ctx, lambda: True, 5, "nothing", on_attach=poke)
    assert len(raised) == 3 and all("fd 987654" in r for r in raised)
    assert all(r.startswith(f"{adapter.name}: ") for r in raised)
    settled(ctx, adapter)


def test_http_request_served(adapter, contexts, workers) -> None:
    import urllib.request

    ctx = contexts(demo_server.build_context(0, "127.0.0.1"))

    def get() -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{ctx.port}/", timeout=5) as r:
            return r.read()

    workers.start(get)
    adapter.run(ctx, workers.done, 10, "the test page")
    workers.check()
    assert b"<html" in workers.results[0].lower()


def test_context_writeable_burst_not_lost(contexts, workers) -> None:
    """A protocol that asks again from every WRITEABLE must get all of them."""
    from adapterkit import ArrayDriver

    n = 200
    writes = [0]

    def cb(conn, reason, user, payload) -> int:
        if reason is Reason.ESTABLISHED:
            conn.callback_on_writable()
        elif reason is Reason.SERVER_WRITEABLE:
            conn.write(b"x" * 100, WriteKind.BINARY)
            writes[0] += 1
            if writes[0] < n:
                conn.callback_on_writable()
        return 0

    ctx = contexts(Context([Protocol("p", cb)], port=0, interface="127.0.0.1"))

    def reader() -> int:
        ws = RawWS(ctx.port)
        ws.sock.settimeout(2)
        try:
            for _ in range(n):
                assert ws.recv()[0] == BINARY
        finally:
            ws.close()
        return n

    workers.start(reader)
    ArrayDriver("poll").run(ctx, workers.done, 4, "the reader")
    workers.check()
    assert writes[0] == n
