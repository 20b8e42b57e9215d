"""Every example as a subprocess (sys.executable): start, talk to it, kill it by PID."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from adapterkit import RawWS, have
from support.procs import free_port

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the example exited early with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"port {port} never opened")


class Example:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[str] = []

    def start(self, name: str, *args: str, stdin: int | None = subprocess.DEVNULL, wait=()):
        fd, path = tempfile.mkstemp(prefix=f"{name}-", suffix=".log")
        self.logs.append(path)
        try:
            proc = subprocess.Popen(
                [sys.executable, str(EXAMPLES / f"{name}.py"), *args],
                stdin=stdin,
                stdout=fd,
                stderr=subprocess.STDOUT,
            )
        finally:
            os.close(fd)
        self.procs.append(proc)
        for port in wait:
            wait_port(port, proc)
        return proc

    def output(self, i: int = 0) -> str:
        return Path(self.logs[i]).read_text(errors="replace")


@pytest.fixture
def example() -> Iterator[Example]:
    ex = Example()
    yield ex
    for proc in ex.procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
    for name in ex.logs:
        os.unlink(name)


def ws_echo(port: int, msgs: list[str]) -> list[str]:
    from websockets.sync.client import connect

    with connect(f"ws://127.0.0.1:{port}/", open_timeout=5) as ws:
        out = []
        for m in msgs:
            ws.send(m)
            out.append(ws.recv(timeout=5))
        return out


def test_select_loop_example(example) -> None:
    port = free_port()
    proc = example.start("select_loop", "--port", str(port), stdin=subprocess.PIPE, wait=[port])
    from websockets.sync.client import connect

    assert ws_echo(port, ["hello", "x" * 70000]) == ["hello", "x" * 70000]
    with connect(f"ws://127.0.0.1:{port}/", open_timeout=5) as ws:
        ws.send("ready?")
        assert ws.recv(timeout=5) == "ready?"
        assert proc.stdin is not None
        proc.stdin.write(b"from stdin\n")
        proc.stdin.flush()
        assert ws.recv(timeout=5) == "from stdin"
    proc.stdin.close()  # EOF on the host's own fd: it stops watching it, serves on
    assert ws_echo(port, ["still here"]) == ["still here"]
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(5) == 0


@pytest.mark.parametrize("flavour", ["asyncio", "uvloop"])
def test_asyncio_loop_example(example, flavour) -> None:
    if flavour == "uvloop" and not have("uvloop"):
        pytest.skip("uvloop is not installed")
    port, tick_port = free_port(), free_port()
    args = ["--port", str(port), "--tick-port", str(tick_port)]
    if flavour == "uvloop":
        args.append("--uvloop")
    proc = example.start("asyncio_loop", *args, wait=[port, tick_port])
    assert ws_echo(port, ["a", "b" * 100000]) == ["a", "b" * 100000]
    time.sleep(0.25)
    with socket.create_connection(("127.0.0.1", tick_port), timeout=5) as s:
        assert int(s.makefile().readline()) >= 1
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(5) == 0


@pytest.mark.skipif(not have("gevent"), reason="gevent is not installed")
def test_gevent_loop_example(example) -> None:
    from websockets.sync.client import connect

    port, echo_port = free_port(), free_port()
    proc = example.start(
        "gevent_loop", "--port", str(port), "--echo-port", str(echo_port), wait=[port, echo_port]
    )
    with connect(f"ws://127.0.0.1:{port}/", subprotocols=["dumb-increment-protocol"]) as ws:
        got = [ws.recv(timeout=5) for _ in range(5)]
    assert got == ["0", "1", "2", "3", "4"]
    with socket.create_connection(("127.0.0.1", echo_port), timeout=5) as s:
        f = s.makefile("rwb")
        f.write(b"hi\n")
        f.flush()
        ticks, _, rest = f.readline().partition(b" ")
    assert rest == b"hi\n" and int(ticks) >= 1
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
        assert b"<html" in r.read().lower()
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(5) == 0


@pytest.mark.skipif(not have("trio"), reason="trio is not installed")
def test_trio_loop_example(example) -> None:
    from websockets.sync.client import connect

    port, line_port = free_port(), free_port()
    proc = example.start(
        "trio_loop", "--port", str(port), "--line-port", str(line_port), wait=[port, line_port]
    )
    with connect(f"ws://127.0.0.1:{port}/", subprotocols=["dumb-increment-protocol"]) as ws:
        got = [ws.recv(timeout=5) for _ in range(5)]
    assert got == ["0", "1", "2", "3", "4"]
    with socket.create_connection(("127.0.0.1", line_port), timeout=5) as s:
        f = s.makefile("rwb")
        f.write(b"shout\nagain\n")
        f.flush()
        assert [f.readline(), f.readline()] == [b"SHOUT\n", b"AGAIN\n"]
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(5) == 0


@pytest.mark.skipif(not have("zmq"), reason="pyzmq is not installed")
def test_zmq_loop_example(example) -> None:
    import zmq
    from websockets.sync.client import connect

    port, pub_port, push_port = free_port(), free_port(), free_port()
    zctx = zmq.Context()
    pub = zctx.socket(zmq.PUB)
    pub.bind(f"tcp://127.0.0.1:{pub_port}")
    pull = zctx.socket(zmq.PULL)
    proc = example.start(
        "zmq_loop",
        "--port",
        str(port),
        "--zmq-pub",
        str(pub_port),
        "--zmq-push",
        str(push_port),
        "--max-queue",
        "8",
        wait=[port],
    )
    try:
        pull.connect(f"tcp://127.0.0.1:{push_port}")
        with (
            connect(f"ws://127.0.0.1:{port}/") as a,
            connect(f"ws://127.0.0.1:{port}/") as b,
        ):
            # PUB -> every websocket client (publish until the SUB has joined).
            deadline = time.monotonic() + 10
            got_a = None
            while got_a is None:
                assert time.monotonic() < deadline, "nothing published ever arrived"
                pub.send(b"hello")
                with contextlib.suppress(TimeoutError):
                    got_a = a.recv(timeout=0.2)
            assert got_a == "hello"
            assert b.recv(timeout=5) == "hello"
            pub.send(b"\xff\x00binary")
            # (more "hello"s may still be on their way)
            for ws in (a, b):
                while (m := ws.recv(timeout=5)) == "hello":
                    pass
                assert m == b"\xff\x00binary"
            # websocket -> PUSH
            a.send("up from a")
            b.send(b"up from b")
            assert pull.poll(5000)
            ups = {pull.recv()}
            assert pull.poll(5000)
            ups.add(pull.recv())
            assert ups == {b"up from a", b"up from b"}

        # A client that does not read: its queue stays bounded, oldest dropped.
        slow = RawWS(port, rcvbuf=4096)
        time.sleep(0.2)
        blob = b"y" * 50000
        for _ in range(400):
            pub.send(blob)
        time.sleep(1.0)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as r:
            stats = json.loads(r.read())
        assert stats["clients"] == 1 and stats["dropped"] > 0, stats
        slow.abort()
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(5) == 0
    finally:
        pub.close(0)
        pull.close(0)
        zctx.term()
