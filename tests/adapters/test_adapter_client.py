"""The client half of the behaviour suite, and the apps' ``--loop`` option, on every adapter.

* lwsbridge client connections (``Context.client_connect``) driven by each adapter echo
  against an lwsbridge echo server (a second context on the built-in loop in a thread);
* ``lwsbridge-test-client --loop L -n 20`` gets dumb-increment from
  ``lwsbridge-test-server --loop L`` and exits 0;
* SIGTERM ends ``lwsbridge-test-server``, ``lwsbridge-test-echo`` and
  ``lwsbridge-test-client`` promptly with exit status 0 on every loop.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from adapterkit import AppProcesses, need_loop

from lwsbridge.adapters import LOOPS
from lwsbridge.apps.echo_server import build_context as build_echo
from lwsbridge.context import ClientConnectInfo, Context, Protocol, Reason, WriteKind

SIZES = (0, 125, 126, 65535, 65536, 1 << 20)
CLIENTS = 5


@pytest.fixture
def echo_server() -> Iterator[int]:
    """An lwsbridge echo server (built-in loop) in a thread of its own; yields its port."""
    ready = threading.Event()
    stop = threading.Event()
    port: list[int] = []
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            ctx = build_echo(0, "127.0.0.1", 4 << 20)
        except BaseException as exc:
            errors.append(exc)
            ready.set()
            return
        try:
            port.append(ctx.port)
            ready.set()
            while not stop.is_set():
                ctx.service(50)
        except BaseException as exc:
            errors.append(exc)
        finally:
            ctx.destroy()

    t = threading.Thread(target=serve, name="echo-server", daemon=True)
    t.start()
    assert ready.wait(10)
    if errors:
        raise errors[0]
    yield port[0]
    stop.set()
    t.join(10)
    assert not t.is_alive(), "echo server thread did not stop"
    if errors:
        raise errors[0]


def messages(i: int) -> list[tuple[bytes, bool]]:
    out: list[tuple[bytes, bool]] = []
    for n in SIZES:
        text = (f"c{i}é" * (n // 2 + 1)).encode("utf-8")[:n]
        text = text.decode("utf-8", "ignore").encode("utf-8")  # whole characters only
        binary = (bytes((i + k) & 0xFF for k in range(256)) * (n // 256 + 1))[:n]
        out += [(text, False), (binary, True)]
    return out


def test_client_connections_echo(adapter, contexts, echo_server) -> None:
    """CLIENTS client connections on the adapter: every size, text and binary, echoed."""
    state: dict[int, dict[str, Any]] = {}

    def cb(conn, reason, user, payload) -> int:
        if conn is None:
            return 0
        s = state.get(id(conn))
        if reason is Reason.CLIENT_ESTABLISHED:
            s = state[id(conn)] = {"todo": messages(len(state)), "sent": 0, "got": []}
            s.update(parts=[], closed=False, conn=conn)  # conn: keeps id(conn) unique
            conn.callback_on_writable()
        elif reason is Reason.CLIENT_WRITEABLE and s is not None:
            data, binary = s["todo"][s["sent"]]
            conn.write(data, WriteKind.BINARY if binary else WriteKind.TEXT)
            s["sent"] += 1
        elif reason is Reason.CLIENT_RECEIVE and s is not None:
            s["parts"].append(bytes(payload))
            if not conn.is_final_fragment():
                return 0
            s["got"].append((b"".join(s["parts"]), conn.frame_is_binary()))
            s["parts"].clear()
            if len(s["got"]) < len(s["todo"]):
                conn.callback_on_writable()
            else:
                conn.close_reason(1000, "done")
                return -1
        elif reason is Reason.CLIENT_CONNECTION_ERROR:
            errors.append(str(payload))
        elif reason is Reason.CLOSED and s is not None:
            s["closed"] = True
        return 0

    errors: list[str] = []
    ctx = contexts(Context([Protocol("echo-client", cb)], port=None, max_message_size=4 << 20))
    for _ in range(CLIENTS):
        ctx.client_connect(ClientConnectInfo("127.0.0.1", echo_server, "/"))

    def done() -> bool:
        return bool(errors) or (len(state) == CLIENTS and all(s["closed"] for s in state.values()))

    adapter.run(ctx, done, 30, f"{CLIENTS} client connections to echo and close")
    assert not errors, errors
    for i, s in enumerate(state.values()):
        assert s["got"] == s["todo"], f"client {i}: echoes differ"
    adapter.run(ctx, lambda: len(ctx.fds) <= 1, 5, "the client sockets to go")
    assert adapter.last_events == dict(ctx.fds)


def test_client_connection_refused(adapter, contexts) -> None:
    """A refused connect reports CLIENT_CONNECTION_ERROR through every adapter."""
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    errors: list[Any] = []

    def cb(conn, reason, user, payload) -> int:
        if reason is Reason.CLIENT_CONNECTION_ERROR:
            errors.append(payload)
        return 0

    ctx = contexts(Context([Protocol("p", cb)], port=None))
    ctx.client_connect(ClientConnectInfo("127.0.0.1", port, "/"))
    adapter.run(ctx, lambda: errors, 10, "CLIENT_CONNECTION_ERROR")
    assert len(errors) == 1


# ------------------------------------------------------------------ the apps, --loop L


@pytest.fixture
def apps() -> Iterator[AppProcesses]:
    procs = AppProcesses()
    yield procs
    procs.stop_all()


@pytest.mark.parametrize("loop", LOOPS)
def test_test_client_app_dumb_increment(loop: str, apps: AppProcesses) -> None:
    """``lwsbridge-test-client -n 20 --loop L`` against ``lwsbridge-test-server --loop L``."""
    need_loop(loop)
    port = apps.start_server("demo_server", "--loop", loop)
    start = time.monotonic()
    cmd = [sys.executable, "-m", "lwsbridge.apps.demo_client", "127.0.0.1", "-p", str(port)]
    out = subprocess.run(
        [*cmd, "-n", "20", "--loop", loop],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    took = time.monotonic() - start
    assert out.returncode == 0, out.stdout + out.stderr
    numbers = [int(x) for x in out.stdout.split()]
    assert numbers[:20] == list(range(20)), out.stdout
    assert "Traceback" not in out.stderr, out.stderr
    assert took < 10, took  # 20 numbers at 50 ms: ~1 s after connecting
    apps.assert_alive()


@pytest.mark.parametrize("app", ["demo_server", "echo_server"])
@pytest.mark.parametrize("loop", LOOPS)
def test_server_app_sigterm_exits_0(loop: str, app: str, apps: AppProcesses) -> None:
    """SIGTERM (and SIGINT) end the server promptly, exit 0, with a client connected."""
    from websockets.sync.client import connect

    need_loop(loop)
    for sig in (signal.SIGTERM, signal.SIGINT):
        port = apps.start_server(app, "--loop", loop)
        proto = ["dumb-increment-protocol"] if app == "demo_server" else None
        with connect(f"ws://127.0.0.1:{port}/", subprotocols=proto, open_timeout=5) as ws:
            if app == "echo_server":
                ws.send("ping?")
                assert ws.recv(timeout=5) == "ping?"
            else:
                assert ws.recv(timeout=5) == "0"
            took = apps.signal_last(sig)
        assert took < 2.0, f"{sig!r} took {took:.2f} s"


@pytest.mark.parametrize("loop", LOOPS)
def test_test_client_app_sigterm_exits_0(loop: str, apps: AppProcesses) -> None:
    """The test client without --count runs until SIGTERM, then exits 0."""
    need_loop(loop)
    port = apps.start_server("demo_server")
    proc = apps.start("demo_client", "127.0.0.1", "-p", str(port), "--loop", loop)
    assert apps.wait_output(proc, b"3\n", 10), apps.output(proc)
    took = apps.signal_last(signal.SIGTERM)
    assert took < 2.0, took
