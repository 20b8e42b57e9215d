"""Many clients from one context at once, against the echo server in the same loop."""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator
from typing import Any

import pytest
from clientutil import Recorder
from support.servicing import pump, settle, stepper

from lwsbridge.apps.echo_server import build_context as build_echo
from lwsbridge.context import ClientConnectInfo, Protocol, Reason, WriteKind

N_CLIENTS = 250


@pytest.fixture
def enough_fds() -> Iterator[None]:
    """Room for N clients + N server connections + the test's own fds."""
    need = 2 * N_CLIENTS + 100
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_many_clients_echo(make_ctx: Any, enough_fds: None) -> None:
    server = build_echo(0, "127.0.0.1", 1 << 20)
    try:
        msg = {}
        closing: list[bool] = []

        def writeable(conn: Any, payload: Any) -> int:
            if closing:
                return -1  # close 1000
            conn.write(msg[conn], WriteKind.TEXT)
            return 0

        rec = Recorder.writer(writeable)
        ctx = make_ctx([Protocol("echo-client", rec.callback)])
        t0 = time.perf_counter()
        conns = []
        for i in range(N_CLIENTS):
            c = ctx.client_connect(ClientConnectInfo("127.0.0.1", server.port))
            msg[c] = f"client {i} says hello"
            conns.append(c)
        connect_time = time.perf_counter() - t0
        assert connect_time < 0.05 * N_CLIENTS / 10, connect_time  # never blocks
        step = stepper(ctx, server, ms=1)
        pump(
            step,
            lambda: (
                sum(1 for c in conns if rec.has(c, Reason.CLIENT_ESTABLISHED)) == N_CLIENTS
                or any(rec.has(c, Reason.CLIENT_CONNECTION_ERROR) for c in conns)
            ),
            f"{N_CLIENTS} established",
            20.0,
        )
        pump(
            step,
            lambda: all(rec.received(c) or rec.ended(c) for c in conns),
            "every echo",
            20.0,
        )
        # every connection is open at once, on both sides
        assert ctx.connection_count == N_CLIENTS
        assert server.connection_count == N_CLIENTS
        closing.append(True)
        for c in conns:
            c.callback_on_writable()
        pump(step, lambda: all(rec.ended(c) for c in conns), "every close", 20.0)
        settle(step, 0.1)
        errors = [
            rec.first(c, Reason.CLIENT_CONNECTION_ERROR)
            for c in conns
            if rec.has(c, Reason.CLIENT_CONNECTION_ERROR)
        ]
        assert not errors, errors[:5]
        for c in conns:
            assert rec.received(c) == [msg[c].encode()], (c, rec.of(c))
            assert rec.count(c, Reason.CLOSED) == 1
        pump(
            step,
            lambda: server.connection_count == 0 and ctx.connection_count == 0,
            "every connection to go",
        )
    finally:
        server.destroy()
