"""TCP keepalive (lws ``ka_time`` / ``ka_probes`` / ``ka_interval``).

The options on accepted and client sockets; the lack of them on a platform; and what
they are for: a peer that silently disappears (no FIN, no RST) is detected.  That last
part needs two network namespaces joined by a veth pair, so it runs as root only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from lwsbridge.context import ClientConnectInfo, Context, Protocol, Reason
from lwsbridge.log import NOTICE

HOST = "127.0.0.1"
KEEPIDLE = getattr(socket, "TCP_KEEPIDLE", None)
KEEPINTVL = getattr(socket, "TCP_KEEPINTVL", None)
KEEPCNT = getattr(socket, "TCP_KEEPCNT", None)
needs_ka_opts = pytest.mark.skipif(
    None in (KEEPIDLE, KEEPINTVL, KEEPCNT), reason="TCP_KEEPIDLE/INTVL/CNT not on this platform"
)


class Recorder:
    def __init__(self) -> None:
        self.reasons: list[Reason] = []

    def callback(self, conn: Any, reason: Reason, user: Any, payload: Any) -> int:
        if conn is not None:
            self.reasons.append(reason)
        return 0


@pytest.fixture
def contexts() -> Iterator[list[Context]]:
    made: list[Context] = []
    yield made
    for ctx in made:
        ctx.destroy()


def make(contexts: list[Context], rec: Recorder, **kw: Any) -> Context:
    ctx = Context([Protocol("ka", rec.callback)], port=0, interface=HOST, **kw)
    contexts.append(ctx)
    return ctx


def accept_one(ctx: Context, peer: socket.socket) -> socket.socket:
    """Service until the context has accepted ``peer``; its server-side socket."""
    want = peer.getsockname()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        ctx.service(10)
        for conn in ctx.all_connections():
            if conn.peer == want and conn.sock is not None:
                return conn.sock
    pytest.fail("the context did not accept the connection")


def ka(sock: socket.socket) -> tuple[int, ...]:
    opts = [sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)]
    for const in (KEEPIDLE, KEEPINTVL, KEEPCNT):
        assert const is not None
        opts.append(sock.getsockopt(socket.IPPROTO_TCP, const))
    return tuple(1 if i == 0 and v else v for i, v in enumerate(opts))


@needs_ka_opts
def test_keepalive_options_on_accepted_and_client_sockets(contexts: list[Context]) -> None:
    rec = Recorder()
    ctx = make(contexts, rec, ka_time=7, ka_probes=4, ka_interval=3)
    with socket.create_connection((HOST, ctx.port), timeout=5) as peer:
        assert ka(accept_one(ctx, peer)) == (1, 7, 3, 4)
    conn = ctx.client_connect(ClientConnectInfo(HOST, ctx.port))
    assert conn.sock is not None  # a numeric address: the socket exists at once
    assert ka(conn.sock) == (1, 7, 3, 4)


def test_keepalive_off_by_default(contexts: list[Context]) -> None:
    rec = Recorder()
    ctx = make(contexts, rec)
    assert (ctx.ka_time, ctx.ka_probes, ctx.ka_interval) == (0, 0, 0)
    with socket.create_connection((HOST, ctx.port), timeout=5) as peer:
        server_side = accept_one(ctx, peer)
        assert server_side.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0


@needs_ka_opts
def test_platform_without_tcp_keepidle(
    contexts: list[Context], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """As lws on such systems: SO_KEEPALIVE with the system's timing, said once."""
    assert KEEPIDLE is not None
    with socket.socket() as fresh:
        system_idle = fresh.getsockopt(socket.IPPROTO_TCP, KEEPIDLE)
    monkeypatch.delattr(socket, "TCP_KEEPIDLE")
    caplog.set_level(logging.DEBUG, logger="lwsbridge")
    rec = Recorder()
    ctx = make(contexts, rec, ka_time=7, ka_probes=4, ka_interval=3)
    peers = [socket.create_connection((HOST, ctx.port), timeout=5) for _ in range(2)]
    try:
        for peer in peers:
            assert ka(accept_one(ctx, peer)) == (1, system_idle, 3, 4)
        client = ctx.client_connect(ClientConnectInfo(HOST, ctx.port))
        deadline = time.monotonic() + 5
        while Reason.CLIENT_ESTABLISHED not in rec.reasons and time.monotonic() < deadline:
            ctx.service(10)
        assert Reason.CLIENT_ESTABLISHED in rec.reasons  # the connection works as ever
        assert client.sock is not None and ka(client.sock)[0] == 1
    finally:
        for peer in peers:
            peer.close()
    notes = [r for r in caplog.records if "keepalive" in r.getMessage().lower()]
    assert len(notes) == 1, [r.getMessage() for r in notes]
    assert notes[0].levelno == NOTICE and "TCP_KEEPIDLE not available" in notes[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


# ---------------------------------------------------------------------------- dead peer

KA_TIME, KA_INTERVAL, KA_PROBES = 1, 1, 2
SLACK = 4.0  # on top of ka_time + ka_probes * ka_interval

SERVER = r"""
import sys, time
from lwsbridge.apps.common import setup_logging
from lwsbridge.context import Context, Protocol, Reason
setup_logging(1 | 2 | 4 | 16)
def cb(conn, reason, user, payload):
    if conn is not None and reason in (Reason.ESTABLISHED, Reason.CLOSED):
        print(reason.name, f"{time.monotonic():.3f}", flush=True)
    return 0
ctx = Context([Protocol("ka", cb)], port=int(sys.argv[2]), interface=sys.argv[1],
              ka_time=int(sys.argv[3]), ka_interval=int(sys.argv[4]), ka_probes=int(sys.argv[5]))
print("READY", flush=True)
end = time.monotonic() + 40
while time.monotonic() < end:
    ctx.service(100)
"""

CLIENT = r"""
import base64, os, socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
head = b""
while b"\r\n\r\n" not in head:
    data = s.recv(4096)
    if not data:
        break
    head += data
print("UP" if head.startswith(b"HTTP/1.1 101 ") else f"BAD {head!r}", flush=True)
time.sleep(40)  # idle, and never closes: only its link goes away
"""


def _ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if r.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")


def _readline(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline() if ready else ""


@pytest.fixture
def netns_pair() -> Iterator[tuple[str, str, str, str, str]]:
    """Namespaces A and B joined by a veth pair: (nsA, nsB, vethB, addrA, addrB)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("network namespaces are Linux only")
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces (CI runs as root)")
    if shutil.which("ip") is None:
        pytest.skip("needs the `ip` command (iproute2) to create network namespaces")
    pid = os.getpid()
    ns_a, ns_b = f"lwsb-a-{pid}", f"lwsb-b-{pid}"
    veth_a, veth_b = f"lwsbA{pid}"[:15], f"lwsbB{pid}"[:15]
    x = pid % 250
    addr_a, addr_b = f"10.231.{x}.1", f"10.231.{x}.2"
    made: list[str] = []
    try:
        try:
            for ns in (ns_a, ns_b):
                _ip("netns", "add", ns)
                made.append(ns)
            veth = ["type", "veth", "peer", "name", veth_b, "netns", ns_b]
            _ip("link", "add", veth_a, "netns", ns_a, *veth)
            for ns, dev, addr in ((ns_a, veth_a, addr_a), (ns_b, veth_b, addr_b)):
                _ip("-n", ns, "addr", "add", f"{addr}/30", "dev", dev)
                _ip("-n", ns, "link", "set", dev, "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except RuntimeError as exc:
            pytest.skip(f"cannot create network namespaces here: {exc}")
        yield ns_a, ns_b, veth_b, addr_a, addr_b
    finally:
        for ns in made:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                _ip("netns", "del", ns)


def test_silently_dead_peer_is_detected(netns_pair: tuple[str, str, str, str, str]) -> None:
    ns_a, ns_b, veth_b, addr_a, _addr_b = netns_pair
    port = 7681
    procs: list[subprocess.Popen[str]] = []

    def start(ns: str, script: str, *args: object) -> subprocess.Popen[str]:
        p = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", script, *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(p)
        return p

    try:
        server = start(ns_a, SERVER, addr_a, port, KA_TIME, KA_INTERVAL, KA_PROBES)
        assert _readline(server, 10).strip() == "READY"
        client = start(ns_b, CLIENT, addr_a, port)
        assert _readline(client, 10).strip() == "UP"
        assert _readline(server, 5).startswith("ESTABLISHED")

        # An idle peer that is alive answers the probes: it stays, well past the time
        # a dead one takes to be dropped.
        budget = KA_TIME + KA_PROBES * KA_INTERVAL
        assert _readline(server, budget + 0.5) == "", "a live idle peer was dropped"

        # B's side goes silent: no FIN, no RST, nothing answers A's probes any more.
        dropped = time.monotonic()
        _ip("-n", ns_b, "link", "set", veth_b, "down")
        line = _readline(server, budget + SLACK + 2)
        assert line.startswith("CLOSED"), f"no CLOSED; server said {line!r}"
        took = float(line.split()[1]) - dropped
        assert 0 < took < budget + SLACK, took
    finally:
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, 9)
            p.wait(5)
    err = procs[0].stderr.read() if procs[0].stderr else ""
    for p in procs:
        for f in (p.stdout, p.stderr):
            if f is not None:
                f.close()
    assert "timed out" in err.lower(), err  # ETIMEDOUT from the kernel's keepalive
    assert "Traceback" not in err
