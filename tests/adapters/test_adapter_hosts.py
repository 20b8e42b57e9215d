"""Each adapter beside the host's own work in the same thread; select's fd limit;
lazy imports; ``adapters.run``."""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from adapterkit import ArrayDriver, have, recording

from lwsbridge.apps.echo_server import build_context as build_echo
from lwsbridge.context import Context


def url(ctx: Context) -> str:
    return f"ws://127.0.0.1:{ctx.port}/"


def echo_client(ctx: Context, n: int = 20) -> int:
    from websockets.sync.client import connect

    with connect(url(ctx)) as ws:
        for i in range(n):
            ws.send(f"m{i}")
            assert ws.recv(timeout=5) == f"m{i}"
    return n


def echo_ctx(contexts) -> Context:
    return contexts(build_echo(0, "127.0.0.1", 1 << 20))


@pytest.mark.parametrize("name", ["select", "poll", "epoll"])
def test_array_loop_with_host_pipe(name, contexts, workers) -> None:
    ctx = echo_ctx(contexts)
    r, w = os.pipe()
    got = bytearray()
    seen: list[int] = []

    def on_pipe(fd: int, revents: int) -> None:
        seen.append(revents)
        got.extend(os.read(fd, 4096))

    def writer() -> None:
        for i in range(50):
            os.write(w, b"%d\n" % i)
            time.sleep(0.002)

    expected = b"".join(b"%d\n" % i for i in range(50))
    workers.start(writer)
    workers.start(echo_client, ctx)
    try:
        ArrayDriver(name).run(
            ctx,
            lambda: workers.done() and bytes(got) == expected,
            10,
            "the pipe and the websocket client",
            on_attach=lambda loop: loop.watch(r, 1, on_pipe),
        )
    finally:
        os.close(r)
        os.close(w)
    workers.check()
    assert workers.results.count(20) == 1
    assert seen and all(rev & 1 for rev in seen)


@pytest.mark.skipif(not have("zmq"), reason="pyzmq is not installed")
def test_zmq_req_rep_beside_websockets(contexts, workers) -> None:
    import zmq

    from lwsbridge.adapters.zmq_poller import ZmqPollerAdapter

    ctx = echo_ctx(contexts)
    zctx = zmq.Context()
    rep = zctx.socket(zmq.REP)
    port = rep.bind_to_random_port("tcp://127.0.0.1")

    def requester() -> int:
        req = zctx.socket(zmq.REQ)
        req.connect(f"tcp://127.0.0.1:{port}")
        try:
            for i in range(30):
                req.send(b"ping %d" % i)
                assert req.poll(5000), "no reply"
                assert req.recv() == b"pong %d" % i
        finally:
            req.close(0)
        return 30

    poller = zmq.Poller()
    poller.register(rep, zmq.POLLIN)
    ad = recording(ZmqPollerAdapter)(ctx, poller)
    replies = 0
    try:
        for _ in range(3):
            workers.start(echo_client, ctx)
        workers.start(requester)
        deadline = time.monotonic() + 10
        while not workers.done():
            assert time.monotonic() < deadline, "timed out"
            rest = ad.handle(dict(poller.poll(ad.timeout(50))))
            assert set(rest) <= {rep}
            if rest.get(rep, 0) & zmq.POLLIN:
                msg = rep.recv()
                rep.send(msg.replace(b"ping", b"pong"))
                replies += 1
        assert ad.seen == dict(ctx.fds)
    finally:
        ad.close()
        rep.close(0)
        zctx.term()
    workers.check()
    assert replies == 30
    assert sorted(workers.results) == [20, 20, 20, 30]


@pytest.mark.skipif(not have("gevent"), reason="gevent is not installed")
def test_gevent_other_greenlets_run(contexts, workers) -> None:
    import gevent

    from lwsbridge.adapters.gevent_loop import GeventAdapter

    ctx = echo_ctx(contexts)
    ticks = [0]
    work = [0]

    def ticker() -> None:
        while True:
            gevent.sleep(0.01)
            ticks[0] += 1

    def worker() -> None:
        while True:
            work[0] += sum(range(1000))
            gevent.sleep(0)

    ad = GeventAdapter(ctx)
    glets = [gevent.spawn(ticker), gevent.spawn(worker)]
    try:
        for _ in range(3):
            workers.start(echo_client, ctx)
        start = time.monotonic()

        def wait_done() -> None:
            while not workers.done() or ticks[0] < 5:
                gevent.sleep(0.01)

        ad_done = gevent.spawn(wait_done)
        ad_done.join(10)
        elapsed = time.monotonic() - start
    finally:
        gevent.killall(glets)
        ad.close()
    workers.check()
    assert workers.results == [20, 20, 20]
    assert ticks[0] >= max(3, int(elapsed / 0.01 * 0.3)), (ticks[0], elapsed)
    assert work[0] > 0


@pytest.mark.skipif(not have("trio"), reason="trio is not installed")
def test_trio_other_task_in_the_nursery(contexts, workers) -> None:
    import trio

    from lwsbridge.adapters.trio_loop import TrioAdapter

    ctx = echo_ctx(contexts)
    ticks = [0]
    lines: list[bytes] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            ad = recording(TrioAdapter)(ctx, nursery)

            async def ticker() -> None:
                while True:
                    await trio.sleep(0.01)
                    ticks[0] += 1

            async def line_reader(stream: trio.SocketStream) -> None:
                async for chunk in stream:
                    lines.append(chunk)

            a, b = socket.socketpair()
            nursery.start_soon(ticker)
            nursery.start_soon(line_reader, trio.SocketStream(trio.socket.from_stdlib_socket(a)))
            for _ in range(3):
                workers.start(echo_client, ctx)
            workers.start(lambda: b.sendall(b"hello from a thread\n") or 1)
            with trio.fail_after(10):
                while not workers.done() or not lines or ticks[0] < 5:
                    await trio.sleep(0.01)
            assert ad.seen == dict(ctx.fds)
            ad.close()
            b.close()
            nursery.cancel_scope.cancel()

    trio.run(main)
    workers.check()
    assert sorted(workers.results) == [1, 20, 20, 20]
    assert ticks[0] >= 3
    assert b"".join(lines) == b"hello from a thread\n"


@pytest.mark.parametrize("flavour", ["asyncio", "uvloop"])
def test_asyncio_other_coroutines(flavour, contexts, workers) -> None:
    import asyncio

    from lwsbridge.adapters.asyncio_loop import AsyncioAdapter

    if flavour == "uvloop" and not have("uvloop"):
        pytest.skip("uvloop is not installed")
    ctx = echo_ctx(contexts)
    ticks = [0]
    served: list[bytes] = []

    async def main() -> None:
        ad = recording(AsyncioAdapter)(ctx)

        async def ticker() -> None:
            while True:
                await asyncio.sleep(0.01)
                ticks[0] += 1

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            line = await reader.readline()
            served.append(line)
            writer.write(line.upper())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]

        def line_client() -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"shout\n")
                return s.recv(100)

        tick = asyncio.ensure_future(ticker())
        for _ in range(3):
            workers.start(echo_client, ctx)
        workers.start(line_client)
        try:
            async with asyncio.timeout(10):
                while not workers.done() or ticks[0] < 5:
                    await asyncio.sleep(0.01)
            assert ad.seen == dict(ctx.fds)
        finally:
            tick.cancel()
            server.close()
            ad.close()

    if flavour == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    workers.check()
    assert sorted(workers.results, key=str) == [20, 20, 20, b"SHOUT\n"]
    assert served == [b"shout\n"] and ticks[0] >= 3


# ---------------------------------------------------------------------------- select's limit


def _fill_fds_below(limit: int) -> list[int]:
    """Open /dev/null until the next fd would be >= ``limit``."""
    held = []
    while True:
        fd = os.open(os.devnull, os.O_RDONLY)
        held.append(fd)
        if fd >= limit - 1:
            return held


def test_select_refuses_high_fd_at_attach(contexts) -> None:
    from lwsbridge.adapters.select_loop import SelectLoop

    held = _fill_fds_below(1024)
    try:
        ctx = echo_ctx(contexts)
        high = sorted(fd for fd, _ in ctx.fds if fd >= 1024)
        assert high
        with pytest.raises(ValueError, match=f"fd {high[0]} is >= FD_SETSIZE"):
            SelectLoop(ctx)
        assert ctx.poll_sink is None
    finally:
        for fd in held:
            os.close(fd)


def test_select_closes_connection_on_high_fd_and_goes_on(contexts, workers, caplog) -> None:
    caplog.set_level(logging.ERROR, logger="lwsbridge")
    ctx = echo_ctx(contexts)
    driver = ArrayDriver("select")
    held = _fill_fds_below(1024)
    outcome: dict[str, Any] = {}
    try:

        def doomed() -> None:
            s = socket.create_connection(("127.0.0.1", ctx.port), timeout=5)
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                outcome["data"] = s.recv(100)
            except ConnectionResetError:
                outcome["data"] = b"RST"
            s.close()

        workers.start(doomed)
        driver.run(ctx, workers.done, 5, "the refused connection to be closed")
        workers.check()
    finally:
        for fd in held:
            os.close(fd)
    assert outcome["data"] in (b"", b"RST")
    msgs = [r.getMessage() for r in caplog.records if r.name == "lwsbridge"]
    named = [re.search(r"select: fd (\d+) cannot be watched", m) for m in msgs]
    assert any(m and int(m.group(1)) >= 1024 for m in named), msgs
    # The loop goes on: low fds work again.
    workers.start(echo_client, ctx)
    driver.run(ctx, workers.done, 5, "an echo after the refusal")
    workers.check()
    assert driver.last_events is not None


# ---------------------------------------------------------------------------- imports, run()


def test_importing_adapters_imports_no_loop_library() -> None:
    code = (
        "import sys, lwsbridge, lwsbridge.context, lwsbridge.adapters\n"
        "from lwsbridge.adapters import select_loop, poll_loop, epoll_loop, zmq_poller,"
        " gevent_loop, trio_loop, asyncio_loop\n"
        "bad = [m for m in ('zmq', 'gevent', 'trio', 'asyncio', 'uvloop') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "assert lwsbridge.adapters.LOOPS == "
        "('select', 'poll', 'epoll', 'zmq', 'gevent', 'trio', 'asyncio')\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


@pytest.mark.parametrize("name", ["select", "poll", "epoll", "zmq", "gevent", "trio", "asyncio"])
def test_run_named_loop_until_stop_event(name, contexts) -> None:
    from lwsbridge import adapters

    if name in ("zmq", "gevent", "trio") and not have(name):
        pytest.skip(f"{name} is not installed")
    ctx = echo_ctx(contexts)
    stop = threading.Event()
    result: dict[str, Any] = {}

    def client() -> None:
        try:
            result["n"] = echo_client(ctx, 5)
        except BaseException as exc:
            result["error"] = exc
        finally:
            stop.set()

    t = threading.Thread(target=client, daemon=True)
    t.start()
    threading.Timer(10, stop.set).start()
    start = time.monotonic()
    adapters.run(ctx, name, stop)
    assert time.monotonic() - start < 9
    t.join(5)
    assert result.get("n") == 5, result
    assert ctx.poll_sink is None  # detached


def test_run_unknown_loop(contexts) -> None:
    from lwsbridge import adapters

    ctx = echo_ctx(contexts)
    with pytest.raises(ValueError, match="nope"):
        adapters.run(ctx, "nope")


def test_adapters_depend_on_serviceable_not_the_context() -> None:
    """Importing every adapter module leaves lwsbridge.context unimported."""
    code = (
        "import sys\n"
        "from lwsbridge.adapters import select_loop, poll_loop, epoll_loop, zmq_poller,"
        " gevent_loop, trio_loop, asyncio_loop\n"
        "assert 'lwsbridge.context' not in sys.modules, 'an adapter imports the context'\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_every_loop_has_one_entry_point_of_one_shape() -> None:
    """The registry names each loop's module; each has serve(context, stop_event=None)."""
    import inspect

    from lwsbridge import adapters, loops

    assert loops.names() == adapters.LOOPS
    for name in loops.names():
        serve = loops.load_serve(name)
        params = list(inspect.signature(serve).parameters.values())
        assert [p.name for p in params] == ["context", "stop_event"], name
        assert params[1].default is None, name
        assert loops.load(name).__module__ == serve.__module__, name
    with pytest.raises(ValueError, match="unknown loop 'nope'"):
        loops.load_serve("nope")
