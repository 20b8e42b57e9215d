"""A fault inside the context itself costs one connection, never the host's loop."""

from __future__ import annotations

import logging

from support.servicing import stepper
from wsclient import Echo, handshake, text, wait_eof, wait_frame

from lwsbridge.context import POLLIN, Protocol


def test_internal_error_closes_only_that_connection(make_ctx, client, caplog) -> None:
    echo = Echo()
    ctx = make_ctx([Protocol("echo", echo.callback)])
    bad, good = client(ctx.port), client(ctx.port)
    handshake(ctx, bad)
    handshake(ctx, good)
    bad_conn = next(c for c in ctx.all_connections() if c.peer[1] == bad.sock.getsockname()[1])
    real_read = ctx._read

    def faulty_read(conn):  # type: ignore[no-untyped-def]
        if conn is bad_conn:
            raise RuntimeError("simulated bug")
        return real_read(conn)

    ctx._read = faulty_read  # type: ignore[method-assign]
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
