"""Connection limits: lws's fd table from RLIMIT_NOFILE, 503 at the limit, EMFILE, errors.

Every server runs in a subprocess whose soft RLIMIT_NOFILE the test sets, so the limit
the context derives (soft limit less the fds in use, as lws sizes its fd table) is
known; its stderr (lws-style log lines) goes to a file the test reads.
"""

from __future__ import annotations

import base64
import os
import re
import select
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HOST = "127.0.0.1"
TIMEOUT = 5.0

SERVER = r"""
import os, resource, sys, time
soft, mc, hog = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "hog"
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
from lwsbridge.apps.common import setup_logging
from lwsbridge.apps.echo_server import build_context
setup_logging(7)
ctx = build_context(0, "127.0.0.1", 1 << 20, **({"max_connections": mc} if mc else {}))
ctx.service(0)  # the built-in loop's selector exists before any hogging
hogged = []
if hog:
    try:
        while True:
            hogged.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
print("PORT", ctx.port, "LIMIT", ctx.max_connections, "HOGGED", len(hogged), flush=True)
end = time.monotonic() + 60
while time.monotonic() < end:
    ctx.service(100)
"""

LIMIT_LINE = re.compile(r"N: connection limit (\d+) \(RLIMIT_NOFILE (\d+), (\d+) fds in use(.*)\)")


class Server:
    def __init__(self, proc: subprocess.Popen[str], log: Path, port: int, limit: int, hogged: int):
        self.proc, self.log, self.port, self.limit, self.hogged = proc, log, port, limit, hogged

    def stderr(self) -> str:
        return self.log.read_text()

    def count(self, text: str, expect: int | None = None) -> int:
        """Log lines containing ``text``; with ``expect``, wait (bounded) until that many:
        the server logs a refusal just after closing the socket the client saw close."""
        deadline = time.monotonic() + (2.0 if expect is not None else 0)
        while True:
            n = sum(1 for line in self.stderr().splitlines() if text in line)
            if n == expect or time.monotonic() > deadline:
                return n
            time.sleep(0.01)

    def limit_line(self) -> re.Match[str]:
        m = LIMIT_LINE.search(self.stderr())
        assert m, self.stderr()
        return m


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    procs: list[subprocess.Popen[str]] = []

    def start(soft: int, max_connections: int = 0, hog: bool = False) -> Server:
        log = tmp_path / f"server-{len(procs)}.log"
        with open(log, "w") as err:
            proc = subprocess.Popen(
                [sys.executable, "-c", SERVER, str(soft), str(max_connections), str(hog and "hog")],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        procs.append(proc)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        line = proc.stdout.readline() if ready else ""
        m = re.match(r"PORT (\d+) LIMIT (\d+) HOGGED (\d+)", line)
        assert m, f"server did not start: {line!r} {log.read_text()}"
        return Server(proc, log, int(m[1]), int(m[2]), int(m[3]))

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.kill(proc.pid, 9)
        proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


# ---------------------------------------------------------------------------- clients


def _read_until(sock: socket.socket, cond: Callable[[bytes], bool]) -> bytes:
    buf = b""
    deadline = time.monotonic() + TIMEOUT
    while not cond(buf):
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        buf += data
    return buf


def ws_connect(port: int) -> socket.socket:
    s = socket.create_connection((HOST, port), timeout=TIMEOUT)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        f"GET / HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = _read_until(s, lambda b: b"\r\n\r\n" in b)
    assert head.startswith(b"HTTP/1.1 101 "), head
    return s


def _frame(opcode: int, payload: bytes) -> bytes:
    assert len(payload) < 126
    key = os.urandom(4)
    masked = bytes(b ^ key[i & 3] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + key + masked


def echo(s: socket.socket, msg: bytes) -> bytes:
    s.sendall(_frame(0x1, msg))
    data = _read_until(s, lambda b: len(b) >= 2 and len(b) >= 2 + (b[1] & 0x7F))
    assert len(data) >= 2 and data[0] & 0x0F == 0x1, data
    return data[2 : 2 + (data[1] & 0x7F)]


def ws_close(s: socket.socket) -> None:
    """Close handshake, then wait for the server's EOF: it has dropped the connection."""
    s.sendall(_frame(0x8, struct.pack("!H", 1000)))
    _read_until(s, lambda b: False)
    s.close()


def refused(port: int) -> bytes:
    """Connect, send nothing, read until the server closes; what it sent."""
    with socket.create_connection((HOST, port), timeout=TIMEOUT) as s:
        return _read_until(s, lambda b: False)


# ---------------------------------------------------------------------------- tests


def test_limit_from_rlimit_503_per_burst_and_recovery(server: Callable[..., Server]) -> None:
    srv = server(64)
    m = srv.limit_line()
    limit, soft, in_use = int(m[1]), int(m[2]), int(m[3])
    assert soft == 64 and limit == srv.limit
    # lws sizes its table from the soft limit less what is open (and a few spare fds)
    assert 3 <= in_use < 32
    assert soft - in_use - 16 <= limit <= soft - in_use
    assert "lowered" not in m[4]

    conns = [ws_connect(srv.port) for _ in range(limit)]
    try:
        burst = [refused(srv.port) for _ in range(10)]
        for data in burst:
            assert data.startswith(b"HTTP/1.1 503 "), data
            assert b"Connection: close" in data and b"Retry-After:" in data
        assert srv.count("at the limit of", 1) == 1, srv.stderr()
        assert srv.proc.poll() is None
        # the connections already there are served as before
        for i, s in enumerate(conns):
            assert echo(s, b"still here %d" % i) == b"still here %d" % i
        assert srv.count("at the limit of") == 1, "one line for the whole burst"

        # one goes: the next one is accepted, and the end of the burst is logged
        ws_close(conns.pop())
        conns.append(ws_connect(srv.port))
        assert echo(conns[-1], b"new") == b"new"
        assert srv.count("accepting again after refusing 10", 1) == 1, srv.stderr()

        # at the limit again: a new burst, a new (single) line
        for _ in range(3):
            assert refused(srv.port).startswith(b"HTTP/1.1 503 ")
        assert srv.count("at the limit of", 2) == 2, srv.stderr()
        assert "Traceback" not in srv.stderr()
    finally:
        for s in conns:
            s.close()


def test_higher_rlimit_picked_up_on_restart(server: Callable[..., Server]) -> None:
    low, high = server(64), server(128)
    a, b = low.limit_line(), high.limit_line()
    assert (int(a[2]), int(b[2])) == (64, 128)
    # same program, same fds in use: the whole extra 64 fds become connections
    assert int(b[1]) - int(a[1]) == 64 - (int(b[3]) - int(a[3]))
    assert high.limit > low.limit


def test_max_connections_lowers_the_limit(server: Callable[..., Server]) -> None:
    srv = server(256, max_connections=3)
    m = srv.limit_line()
    assert int(m[1]) == srv.limit == 3 and int(m[2]) == 256
    assert "lowered by max_connections" in m[4]
    conns = [ws_connect(srv.port) for _ in range(3)]
    try:
        assert refused(srv.port).startswith(b"HTTP/1.1 503 ")
        assert srv.count("at the limit of 3 connections", 1) == 1
        assert echo(conns[0], b"ok") == b"ok"
    finally:
        for s in conns:
            s.close()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc for CPU time")
def test_out_of_fds_refused_without_spinning(server: Callable[..., Server]) -> None:
    """EMFILE at accept: the spare fd is freed, the connection taken and closed."""
    srv = server(64, hog=True)
    assert srv.hogged > 0  # every fd of the process is in use
    for _ in range(2):
        assert refused(srv.port) == b""  # closed at once, nothing said (no fd to say it)
    assert srv.count("out of file descriptors", 2) == 2, srv.stderr()
    before = _cpu_seconds(srv.proc.pid)
    time.sleep(0.5)
    assert _cpu_seconds(srv.proc.pid) - before < 0.2, "the listener spins on EMFILE"
    assert refused(srv.port) == b""  # the spare fd was taken back: the trick works again
    assert srv.proc.poll() is None and "Traceback" not in srv.stderr()


WRAPPER = (
    "import resource, runpy, sys; "
    "resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), "
    "resource.getrlimit(resource.RLIMIT_NOFILE)[1])); "
    "sys.argv = [sys.argv[2], '-p', '0', '-i', '127.0.0.1']; "
    "runpy.run_module(sys.argv[0], run_name='__main__')"
)


@pytest.mark.parametrize(
    ("module", "prog"),
    [
        ("lwsbridge.apps.echo_server", "lwsbridge-test-echo"),
        ("lwsbridge.apps.demo_server", "lwsbridge-test-server"),
    ],
)
def test_soft_limit_too_low_is_a_clear_error(module: str, prog: str) -> None:
    r = subprocess.run(
        [sys.executable, "-c", WRAPPER, "10", module],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith(f"{prog}: RLIMIT_NOFILE soft limit 10 leaves no room"), r.stderr
    assert "ulimit -n" in r.stderr


FIRST_SERVICE_HOGGED = r"""
import os, resource, sys, time
soft, free_flag = int(sys.argv[1]), sys.argv[2]
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
from lwsbridge.apps.common import setup_logging
from lwsbridge.apps.echo_server import build_context
setup_logging(7)
ctx = build_context(0, "127.0.0.1", 1 << 20)
hogged = []  # every fd, before the first service(): the built-in loop cannot be made
try:
    while True:
        hogged.append(os.open(os.devnull, os.O_RDONLY))
except OSError:
    pass
print("PORT", ctx.port, "HOGGED", len(hogged), flush=True)
end = time.monotonic() + 60
while time.monotonic() < end:
    if hogged and os.path.exists(free_flag):  # stat: needs no fd
        for fd in hogged:
            os.close(fd)
        hogged = []
    ctx.service(50)
"""


def test_first_service_without_free_fds(tmp_path: Path) -> None:
    """No fd for the lazily made loop: service() logs once, keeps serving, recovers."""
    log, flag = tmp_path / "server.log", tmp_path / "free"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", FIRST_SERVICE_HOGGED, "64", str(flag)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        m = re.match(r"PORT (\d+) HOGGED (\d+)", proc.stdout.readline() if ready else "")
        assert m and int(m[2]) > 0, log.read_text()
        port = int(m[1])
        # still serving while starved: the listener's spare-fd trick answers (a close)
        for _ in range(2):
            assert refused(port) == b""
        srv = Server(proc, log, port, 0, int(m[2]))
        assert srv.count("out of file descriptors", 2) == 2, srv.stderr()
        assert proc.poll() is None and "Traceback" not in srv.stderr(), srv.stderr()
        assert srv.count("no free file descriptor to start the") == 1, "logged once"
        # fds free again: the loop is made and WebSockets are served
        flag.touch()
        assert srv.count("loop is running now", 1) == 1, srv.stderr()
        s = ws_connect(port)
        try:
            assert echo(s, b"back") == b"back"
        finally:
            s.close()
        assert srv.count("no free file descriptor to start the") == 1
        assert proc.poll() is None and "Traceback" not in srv.stderr()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, 9)
        proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()
