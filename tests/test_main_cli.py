"""``python -m lwsbridge``: the interactive client against a real echo server subprocess.

Lines typed go out as text messages and come back printed; end of input and Ctrl-C
exit 0; a bad URL, a missing CA file or a refused connection is one line and a
non-zero exit, never a traceback.
"""

from __future__ import annotations

import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lwsbridge.adapters import run as run_loop
from lwsbridge.context import Connection, Context, Protocol, Reason, WriteKind
from tests.support.procs import HOST, Server, free_port, run_server, stop_process

DEADLINE = 20.0  # seconds for any one step; a hang fails the test instead of CI


@pytest.fixture
def echo(tmp_path: Path) -> Iterator[Server]:
    with run_server("lwsbridge-test-echo", tmp_path) as srv:
        yield srv


def start(url: str, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "lwsbridge", url, *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
    )


class Lines:
    """Reads one stream of the child line by line, each read bounded by DEADLINE."""

    def __init__(self, stream: object) -> None:
        self.fd = stream.fileno()  # type: ignore[attr-defined]
        self.buf = b""

    def next(self) -> str:
        deadline = time.monotonic() + DEADLINE
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            assert left > 0, f"no line within {DEADLINE} s; got so far {self.buf!r}"
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                chunk = os.read(self.fd, 65536)
                assert chunk, f"stream ended; got so far {self.buf!r}"
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode("utf-8")


def finish(proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    if proc.stdin is not None and proc.stdin.closed:
        proc.stdin = None  # communicate() would flush it
    try:
        _out, err = proc.communicate(timeout=DEADLINE)
    finally:
        stop_process(proc)
    return proc.returncode, err.decode("utf-8", "replace")


def test_lines_echoed_then_eof_exits_zero(echo: Server) -> None:
    proc = start(echo.ws_url)
    try:
        out, err = Lines(proc.stdout), Lines(proc.stderr)
        assert err.next() == f"Connected to {echo.ws_url}"
        assert proc.stdin is not None
        proc.stdin.write(b"hello\n")
        assert out.next() == "< hello"
        # Non-ASCII text, and a line long enough to arrive in several pieces (the
        # client gathers them into one message).
        long = "wörld " * 20000
        proc.stdin.write(f"{long}\n".encode())
        assert out.next() == f"< {long}"
        proc.stdin.close()  # end of input: close 1000 and exit 0
        rc, rest = finish(proc)
    finally:
        stop_process(proc)
    assert rc == 0, rest
    assert "Traceback" not in rest
    echo.assert_alive()


def test_input_before_connect_is_sent(echo: Server) -> None:
    # Lines already waiting when the connection comes up go out after CLIENT_ESTABLISHED.
    proc = start(echo.ws_url)
    try:
        assert proc.stdin is not None
        proc.stdin.write(b"early\n")
        assert Lines(proc.stdout).next() == "< early"
        proc.stdin.close()
        rc, err = finish(proc)
    finally:
        stop_process(proc)
    assert rc == 0, err


def test_ctrl_c_exits_zero(echo: Server) -> None:
    proc = start(echo.ws_url)
    try:
        assert Lines(proc.stderr).next().startswith("Connected to")
        proc.send_signal(signal.SIGINT)
        rc, err = finish(proc)
    finally:
        stop_process(proc)
    assert rc == 0, err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://127.0.0.1/", "the scheme must be ws:// or wss://"),
        ("ws://", "no host name"),
        ("ws://127.0.0.1:99999/", "Port out of range"),
        ("ws://127.0.0.1:port/", "Port could not be cast"),
    ],
)
def test_bad_url_is_one_line(url: str, says: str) -> None:
    rc, err = finish(start(url))
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"python -m lwsbridge: bad URL {url!r}: ")
    assert says in lines[0]


def test_missing_ca_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    rc, err = finish(start(f"wss://{HOST}:1/", "--ca", str(missing)))
    assert rc == 2
    assert err.strip() == f"python -m lwsbridge: CA file {str(missing)!r} not found"


def test_refused_connection_is_one_line() -> None:
    url = f"ws://{HOST}:{free_port()}/"  # nothing listens there
    rc, err = finish(start(url))
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"python -m lwsbridge: cannot connect to {url}: ")
    assert "refused" in lines[0]


def _binary_then_close(conn: Connection | None, reason: Reason, user: Any, payload: Any) -> int:
    """Server side: one binary message, then a close frame with 1001 "bye"."""
    if conn is None:
        return 0
    if reason is Reason.ESTABLISHED:
        conn.user = {"sent": False}
        conn.callback_on_writable()
    elif reason is Reason.SERVER_WRITEABLE:
        if not conn.user["sent"]:
            conn.write(b"\x00\x01\xff", WriteKind.BINARY)
            conn.user["sent"] = True
            conn.callback_on_writable()
        else:
            conn.close_reason(1001, "bye")
            return -1
    return 0


@pytest.fixture
def closing_server() -> Iterator[int]:
    """An in-process server (its own thread and context) that sends and closes."""
    ports: queue.Queue[int] = queue.Queue()
    stop = threading.Event()

    def serve() -> None:
        ctx = Context([Protocol("x", _binary_then_close)], port=0, interface=HOST)
        try:
            assert ctx.port is not None
            ports.put(ctx.port)
            run_loop(ctx, "epoll", stop)
        finally:
            ctx.destroy()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield ports.get(timeout=DEADLINE)
    finally:
        stop.set()
        thread.join(DEADLINE)


def test_binary_printed_and_server_close_reported(closing_server: int) -> None:
    url = f"ws://{HOST}:{closing_server}/"
    proc = start(url)
    try:
        assert Lines(proc.stdout).next() == "< (binary) 0001ff"
        rc, err = finish(proc)
    finally:
        stop_process(proc)
    assert rc == 0, err
    assert err.strip().splitlines()[-1] == "Connection closed by the server: 1001 bye"
