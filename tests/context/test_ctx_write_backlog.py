"""A WRITEABLE still wanted when a read's flush empties the output backlog.

Found by tests/faults (an exchange over a real link stalled for good): inside WRITEABLE
the callback writes more than the kernel takes and asks for the next WRITEABLE; later a
read (here a ping, whose pong goes out through ``queue_output``) flushes the rest.  The
socket is then known writable, so the context drops POLLOUT and must deliver the
WRITEABLE through its ready queue; it used not to queue it, and no WRITEABLE came again.
The host's loop here reports only POLLIN for the connection (``service_fd``), which
makes the read path the one that empties the backlog, deterministically.
"""

from __future__ import annotations

import socket

from support.servicing import pump
from wsclient import PING, encode_frame, handshake

from lwsbridge.context import POLLIN, Protocol, Reason, WriteKind

BIG = 1 << 20  # far more than the socket buffers (64 kB asked, each side) take at once


def test_writeable_after_a_read_flushed_the_backlog(make_ctx, client) -> None:
    writes: list[int] = []

    def cb(conn, reason, user, payload):
        if reason is Reason.ESTABLISHED:
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
            conn.callback_on_writable()
        elif reason is Reason.SERVER_WRITEABLE and len(writes) < 2:
            conn.write(b"x" * BIG, WriteKind.BINARY)
            writes.append(len(writes))
            conn.callback_on_writable()  # the next one, once this has gone out
        return 0

    ctx = make_ctx([Protocol("p", cb)])
    c = client(ctx.port, rcvbuf=65536)
    handshake(ctx, c)
    (conn,) = ctx.all_connections()
    pump(lambda: ctx.service(5), lambda: writes, "the first WRITEABLE")
    assert conn.buffered_bytes > 0, "the first message waits in the output backlog"

    # Drain the backlog through reads only: the client takes what arrived and pings;
    # servicing the ping flushes more of the backlog (no POLLOUT is ever reported).
    def step() -> None:
        c.pull()
        c.send(encode_frame(PING, b"p"))
        ctx.service_fd(conn.fd, POLLIN)

    pump(step, lambda: conn.buffered_bytes == 0 or len(writes) == 2, "the backlog to drain")
    # The second WRITEABLE comes, through the normal service, without anything more
    # from the client.
    pump(lambda: ctx.service(5), lambda: len(writes) == 2, "the second WRITEABLE")
