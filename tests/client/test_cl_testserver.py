"""The client against test servers: lwsbridge's (in-process and as a subprocess) and the
real libwebsockets-test-server; and the lwsbridge-test-client app against both."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from clientutil import Recorder, closed_port, run_bounded
from support.peers import require_executable
from support.procs import Server, console_script, serve_on_free_port
from support.servicing import pump

from lwsbridge.context import ClientConnectInfo, Context, Protocol, Reason, WriteKind

MIRROR_MESSAGES = [f"d #{i:02x}80ff {i} {2 * i} {3 * i} {4 * i};" for i in range(1, 9)]


@pytest.fixture
def lwsbridge_server_proc(tmp_path: Path) -> Iterator[Server]:
    cmd = console_script("lwsbridge-test-server")
    with serve_on_free_port(
        lambda p: [*cmd, "-p", str(p), "-i", "127.0.0.1"], tmp_path, "lwsbridge-test-server"
    ) as srv:
        yield srv


@pytest.fixture
def lws_server_proc(tmp_path: Path) -> Iterator[Server]:
    exe = require_executable(
        "libwebsockets-test-server", "apt-get install libwebsockets-test-server"
    )
    # -i lo: it listens on every interface otherwise
    with serve_on_free_port(
        lambda p: [exe, "-p", str(p), "-i", "lo"], tmp_path, "lws-test-server"
    ) as srv:
        yield srv


def _talk_to_test_server(port: int, step_extra: Callable[[], None] | None = None) -> None:
    """dumb-increment: consecutive numbers; lws-mirror: our messages come back."""
    dumb = Recorder()
    sent: list[str] = []

    def mirror_writeable(conn: Any, payload: Any) -> None:
        msg = MIRROR_MESSAGES[len(sent)]
        conn.write(msg, WriteKind.TEXT)
        sent.append(msg)
        if len(sent) < len(MIRROR_MESSAGES):
            conn.callback_on_writable()

    mirror = Recorder.writer(mirror_writeable)
    ctx = Context(
        [
            Protocol("dumb-increment-protocol", dumb.callback),
            Protocol("lws-mirror-protocol", mirror.callback),
        ],
        port=None,
    )
    try:
        d = ctx.client_connect(
            ClientConnectInfo(
                "127.0.0.1",
                port,
                origin="http://127.0.0.1",
                protocol="dumb-increment-protocol",
            )
        )
        m = ctx.client_connect(
            ClientConnectInfo(
                "127.0.0.1", port, origin="http://127.0.0.1", protocol="lws-mirror-protocol"
            )
        )

        def step() -> None:
            ctx.service(2)
            if step_extra is not None:
                step_extra()

        def mirrored() -> list[str]:
            return [bytes(p).decode("utf-8", "replace") for p in mirror.received(m)]

        pump(
            step,
            lambda: (
                (
                    len(dumb.received(d)) >= 10
                    and all(msg in "".join(mirrored()) for msg in MIRROR_MESSAGES)
                )
                or dumb.ended(d)
                or mirror.ended(m)
            ),
            "10 numbers and the mirror's echoes",
            8.0,
        )
        assert dumb.first(d, Reason.CLIENT_ESTABLISHED) == "dumb-increment-protocol"
        assert mirror.first(m, Reason.CLIENT_ESTABLISHED) == "lws-mirror-protocol"
        assert not dumb.ended(d), dumb.of(d)
        assert not mirror.ended(m), mirror.of(m)
        numbers = [int(p) for p in dumb.received(d)]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), numbers
        assert sent == MIRROR_MESSAGES
        joined = "".join(mirrored())
        for msg in MIRROR_MESSAGES:
            assert msg in joined, (msg, mirrored())
    finally:
        ctx.destroy()


def test_in_process_test_server(test_server: Context) -> None:
    _talk_to_test_server(test_server.port, lambda: test_server.service(2))


def test_lwsbridge_test_server_process(lwsbridge_server_proc: Server) -> None:
    _talk_to_test_server(lwsbridge_server_proc.port)
    assert lwsbridge_server_proc.proc.poll() is None
    assert "Traceback" not in lwsbridge_server_proc.log()


@pytest.mark.peers
def test_libwebsockets_test_server(lws_server_proc: Server) -> None:
    _talk_to_test_server(lws_server_proc.port)
    assert lws_server_proc.proc.poll() is None


# ---------------------------------------------------------------------------- the app

SUMMARY = re.compile(
    r"numbers received: (\d+), mirror sent: (\d+), mirror received: (\d+)", re.MULTILINE
)


def _run_test_client(port: int) -> tuple[list[int], int, int, str]:
    cmd = [*console_script("lwsbridge-test-client"), "127.0.0.1", "-p", str(port), "-n", "20"]
    r = run_bounded(cmd, timeout=20)
    assert r.returncode == 0, f"exit {r.returncode}; stderr:\n{r.stderr[-3000:]}"
    numbers = [int(x) for x in r.stdout.split()]
    m = SUMMARY.search(r.stderr)
    assert m, r.stderr
    n, sent, received = (int(g) for g in m.groups())
    assert n == len(numbers) == 20, (n, numbers)
    assert numbers == list(range(numbers[0], numbers[0] + 20)), numbers
    assert "Traceback" not in r.stderr, r.stderr
    return numbers, sent, received, r.stderr


def test_app_against_lwsbridge_test_server(lwsbridge_server_proc: Server) -> None:
    _numbers, sent, received, _err = _run_test_client(lwsbridge_server_proc.port)
    assert sent > 0 and received > 0, (sent, received)


@pytest.mark.peers
def test_app_against_libwebsockets_test_server(lws_server_proc: Server) -> None:
    _numbers, sent, received, _err = _run_test_client(lws_server_proc.port)
    assert sent > 0 and received > 0, (sent, received)


def test_app_against_closed_port() -> None:
    port = closed_port()
    cmd = [*console_script("lwsbridge-test-client"), "127.0.0.1", "-p", str(port), "-n", "20"]
    r = run_bounded(cmd, timeout=20)
    assert r.returncode != 0, r.stderr
    assert "connection error" in r.stderr, r.stderr
    assert "refused" in r.stderr.lower(), r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stdout.strip() == ""
