"""Loops at scale (issue 13 item 5): a close storm on every loop, zmq's nested epoll set,
and the select loop's connection cap below FD_SETSIZE.

The close storm runs ``benchmarks/close_storm.py`` sized for CI (its server is a
subprocess that counts ESTABLISHED and CLOSED); the settle-time target (2 s for 20,000
connections) is the benchmark's business, so here only the outcome is checked: the
server's fds are back to their baseline, a fresh client is served and no CLOSED is
missed or doubled.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from adapterkit import have

from lwsbridge.adapters.select_loop import FD_SETSIZE, SelectLoop
from lwsbridge.apps.echo_server import build_context

HOST = "127.0.0.1"
BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
STORM = 1000  # connections: seconds on a loaded 2-core machine


@pytest.mark.parametrize(
    "loop", ["builtin", "select", "poll", "epoll", "zmq", "gevent", "trio", "asyncio"]
)
def test_close_storm_settles(loop: str) -> None:
    module = {"zmq": "zmq", "gevent": "gevent", "trio": "trio"}.get(loop)
    if module is not None and not have(module):
        pytest.skip(f"{module} is not installed")
    n = min(STORM, 900) if loop == "select" else STORM
    out = subprocess.run(
        [sys.executable, "close_storm.py", "-n", str(n), "--loop", loop, "--settle", "0", "--json"],
        cwd=BENCH,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["failed"] == []
    n = r["connections"]  # fewer than asked only where RLIMIT_NOFILE's hard limit is low
    assert r["peak_fds"] >= r["fds_before"] + n  # the storm really had n connections
    assert r["fds_after"] == r["fds_before"]
    assert r["fresh_s"] == r["fresh_s"]  # not NaN: the fresh client was served
    assert r["established"] == r["closed"] == n + 2
    assert r["unmatched"] == 0


def _serve_until(step: object, cond: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        step()  # type: ignore[operator]


@pytest.mark.skipif(not have("zmq"), reason="pyzmq is not installed")
def test_zmq_context_fds_share_one_poller_entry() -> None:
    """The host's zmq.Poller holds one nested epoll fd, not one entry per connection
    (zmq.Poller.unregister is O(n): per-fd entries made a close storm O(n^2))."""
    import zmq

    from lwsbridge.adapters.zmq_poller import ZmqPollerAdapter

    ctx = build_context(0, HOST, 1 << 16)
    poller = zmq.Poller()
    clients: list[socket.socket] = []
    ad = ZmqPollerAdapter(ctx, poller)
    try:

        def step() -> None:
            ad.handle(dict(poller.poll(ad.timeout(50))))

        for _ in range(20):
            clients.append(socket.create_connection((HOST, ctx.port), timeout=5))
        _serve_until(step, lambda: ctx.connection_count == 20, "20 connections")
        assert len(poller.sockets) == 1  # not 22: the listener, the wakeup, 20 clients
        assert [k for k, _ in poller.sockets] == [ad.nested_fd]
        for c in clients:
            c.close()
        _serve_until(step, lambda: ctx.connection_count == 0, "the connections to close")
        ad.close()
        assert poller.sockets == []
    finally:
        for c in clients:
            c.close()
        ad.close()
        ctx.destroy()


def _upgrade(port: int) -> bytes:
    """An upgrade request's answer (up to the end of the head, or what came before EOF)."""
    with socket.create_connection((HOST, port), timeout=5) as s:
        s.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data


def test_select_loop_caps_connections_below_fd_setsize() -> None:
    ctx = build_context(0, HOST, 1 << 16)
    before = ctx.max_connections
    try:
        loop = SelectLoop(ctx)
        assert ctx.max_connections < FD_SETSIZE
        assert ctx.max_connections == min(before, ctx.max_connections)
        loop.close()
        assert ctx.max_connections == before  # detaching puts the old limit back
    finally:
        ctx.destroy()


def test_select_loop_answers_503_above_the_limit() -> None:
    """Above the (lowered) limit a new client gets a 503 on the select loop; the
    limit set on the context reaches its listener."""
    import threading

    ctx = build_context(0, HOST, 1 << 16)
    loop = SelectLoop(ctx)
    ctx.max_connections = 2
    held: list[socket.socket] = []
    answers: list[bytes] = []
    try:
        for _ in range(2):
            held.append(socket.create_connection((HOST, ctx.port), timeout=5))
        loop.run_once(0)
        _serve_until(lambda: loop.run_once(50), lambda: ctx.connection_count == 2, "2 held")
        t = threading.Thread(target=lambda: answers.append(_upgrade(ctx.port)))
        t.start()
        _serve_until(lambda: loop.run_once(50), lambda: not t.is_alive(), "the third answer")
        t.join()
        assert answers[0].startswith(b"HTTP/1.1 503"), answers
        assert ctx.connection_count == 2
    finally:
        for c in held:
            c.close()
        loop.close()
        ctx.destroy()


def test_max_connections_setter_refuses_nonsense() -> None:
    ctx = build_context(0, HOST, 1 << 16)
    try:
        with pytest.raises(ValueError, match="at least 1"):
            ctx.max_connections = 0
    finally:
        ctx.destroy()


@pytest.mark.skipif(not have("zmq"), reason="pyzmq is not installed")
def test_zmq_without_epoll_registers_the_fds_in_the_poller(monkeypatch) -> None:
    """Where there is no epoll the context's fds go into the host's poller, as before."""
    import zmq

    from lwsbridge.adapters import zmq_poller

    monkeypatch.setattr(zmq_poller, "NESTED", False)
    ctx = build_context(0, HOST, 1 << 16)
    poller = zmq.Poller()
    clients: list[socket.socket] = []
    ad = zmq_poller.ZmqPollerAdapter(ctx, poller)
    try:
        assert ad.nested_fd is None

        def step() -> None:
            ad.handle(dict(poller.poll(ad.timeout(50))))

        for _ in range(5):
            clients.append(socket.create_connection((HOST, ctx.port), timeout=5))
        _serve_until(step, lambda: ctx.connection_count == 5, "5 connections")
        assert len(poller.sockets) == 7  # the listener, the wakeup and the 5 clients
        for c in clients:
            c.close()
        _serve_until(step, lambda: ctx.connection_count == 0, "the connections to close")
        assert len(poller.sockets) == 2
        ad.close()
        assert poller.sockets == []
    finally:
        for c in clients:
            c.close()
        ad.close()
        ctx.destroy()


def _trio_tasks_while_serving(n: int) -> tuple[int | None, int, int]:
    """(nested_fd, tasks in the nursery with ``n`` connections, tasks after they closed)."""
    import trio

    from lwsbridge.adapters.trio_loop import TrioAdapter

    ctx = build_context(0, HOST, 1 << 16)
    clients: list[socket.socket] = []
    seen: list[int | None] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            ad = TrioAdapter(ctx, nursery)
            seen.append(ad.nested_fd)
            with trio.fail_after(20):
                for _ in range(n):
                    clients.append(socket.create_connection((HOST, ctx.port), timeout=5))
                while ctx.connection_count < n:
                    await trio.sleep(0.01)
                seen.append(len(nursery.child_tasks))
                for c in clients:
                    c.close()
                while ctx.connection_count:
                    await trio.sleep(0.01)
                seen.append(len(nursery.child_tasks))
            ad.close()

    try:
        trio.run(main)
    finally:
        for c in clients:
            c.close()
        ctx.destroy()
    nested, during, after = seen
    assert during is not None and after is not None
    return nested, during, after


@pytest.mark.skipif(not have("trio"), reason="trio is not installed")
def test_trio_context_fds_share_one_task() -> None:
    """With epoll, trio waits on one nested epoll fd with one task for all the
    context's fds, not a task (and a cancel scope, an epoll re-arm per wait) per fd."""
    nested, during, after = _trio_tasks_while_serving(20)
    assert nested is not None
    assert during == after == 2  # the nested set's task and the timer task


@pytest.mark.skipif(not have("trio"), reason="trio is not installed")
def test_trio_without_epoll_has_a_task_per_fd(monkeypatch) -> None:
    """Where there is no epoll: one task per fd and direction, as before."""
    from lwsbridge.adapters import trio_loop

    monkeypatch.setattr(trio_loop, "NESTED", False)
    nested, during, after = _trio_tasks_while_serving(5)
    assert nested is None
    assert during == 8  # the listener, the wakeup, 5 connections (POLLIN) and the timer
    assert after == 3


def _gevent_watchers_while_serving(n: int) -> tuple[int | None, int]:
    """(nested_fd, the hub's active watchers added by ``n`` connections)."""
    import gevent

    from lwsbridge.adapters.gevent_loop import GeventAdapter

    ctx = build_context(0, HOST, 1 << 16)
    loop = gevent.get_hub().loop
    clients: list[socket.socket] = []
    ad = GeventAdapter(ctx)
    try:
        before = loop.activecnt
        for _ in range(n):
            clients.append(socket.create_connection((HOST, ctx.port), timeout=5))
        _serve_until(lambda: gevent.sleep(0.01), lambda: ctx.connection_count == n, "accepts")
        during = loop.activecnt
        for c in clients:
            c.close()
        _serve_until(lambda: gevent.sleep(0.01), lambda: ctx.connection_count == 0, "closes")
        return ad.nested_fd, during - before
    finally:
        for c in clients:
            c.close()
        ad.close()
        ctx.destroy()


@pytest.mark.skipif(not have("gevent"), reason="gevent is not installed")
def test_gevent_context_fds_share_one_watcher() -> None:
    """With epoll, the hub has one io watcher (on the nested epoll fd) for all the
    context's fds: connections add no io watcher."""
    nested, added = _gevent_watchers_while_serving(20)
    assert nested is not None
    assert added == 1  # the hub timer for the handshake timeouts, no io watcher


@pytest.mark.skipif(not have("gevent"), reason="gevent is not installed")
def test_gevent_without_epoll_has_a_watcher_per_fd(monkeypatch) -> None:
    from lwsbridge.adapters import gevent_loop

    monkeypatch.setattr(gevent_loop, "NESTED", False)
    nested, added = _gevent_watchers_while_serving(5)
    assert nested is None
    assert added == 6  # an io watcher per connection and the handshake-timeout timer


def _asyncio_serve(n: int) -> tuple[int | None, list[bool]]:
    """(nested_fd, whether asyncio had a reader of its own for each connection's fd)."""
    import asyncio

    from lwsbridge.adapters.asyncio_loop import AsyncioAdapter

    ctx = build_context(0, HOST, 1 << 16)
    clients: list[socket.socket] = []
    out: list[bool] = []

    async def main() -> int | None:
        loop = asyncio.get_running_loop()
        ad = AsyncioAdapter(ctx)
        try:
            async with asyncio.timeout(20):
                for _ in range(n):
                    clients.append(socket.create_connection((HOST, ctx.port), timeout=5))
                while ctx.connection_count < n:
                    await asyncio.sleep(0.01)
                if getattr(ad, "nested_fd", None) is not None:
                    # remove_reader says whether asyncio had a reader for the fd (and
                    # would drop it): the nested set's fds have none.
                    out.extend(loop.remove_reader(c.fd) for c in ctx.all_connections())
                for c in clients:
                    c.close()
                while ctx.connection_count:
                    await asyncio.sleep(0.01)
            return ad.nested_fd
        finally:
            ad.close()

    try:
        nested = asyncio.run(main())
    finally:
        for c in clients:
            c.close()
        ctx.destroy()
    return nested, out


def test_asyncio_context_fds_share_one_reader() -> None:
    """With epoll, asyncio reads one nested epoll fd for all the context's fds."""
    nested, had_reader = _asyncio_serve(20)
    assert nested is not None
    assert had_reader == [False] * 20


def test_asyncio_without_epoll_serves_with_a_reader_per_fd(monkeypatch) -> None:
    from lwsbridge.adapters import asyncio_loop

    monkeypatch.setattr(asyncio_loop, "NESTED", False)
    nested, _ = _asyncio_serve(5)
    assert nested is None
