"""A fault inside the context itself costs one connection, never the host's loop."""

from __future__ import annotations

import logging

from support.servicing import stepper
from wsclient import Echo, handshake, text, wait_eof, wait_frame

from lwsbridge.context import POLLIN, Protocol
from lwsbridge.core.connection import WSConnection


def test_internal_error_closes_only_that_connection(make_ctx, client, caplog, monkeypatch) -> None:
    echo = Echo()
    ctx = make_ctx([Protocol("echo", echo.callback)])
    bad, good = client(ctx.port), client(ctx.port)
    handshake(ctx, bad)
    handshake(ctx, good)
    port = bad.sock.getsockname()[1]
    bad_core = next(c for c in ctx.all_connections() if c.peer[1] == port).core
    real_receive = WSConnection.receive_data

    def faulty_receive(core, data):  # type: ignore[no-untyped-def]
        # A bug of ours below service_fd (here: in the core) while reading one connection.
        if core is bad_core:
            raise RuntimeError("simulated bug")
        return real_receive(core, data)

    monkeypatch.setattr(WSConnection, "receive_data", faulty_receive)
    caplog.set_level(logging.ERROR, logger="lwsbridge")
    bad.send(text("boom"))
    # Driving the context by hand: service_fd must not raise into the host.
    step = stepper(ctx)
    wait_eof(step, bad, "the faulty connection closed")
    assert any("internal error" in r.getMessage() for r in caplog.records)
    assert any(r.exc_info for r in caplog.records)
    good.send(text("still here"))
    assert wait_frame(ctx, good).payload == b"still here"
    # and the plain-int form reports the fd as handled
    assert ctx.service_fd(ctx.wakeup_fd, POLLIN) == 0
