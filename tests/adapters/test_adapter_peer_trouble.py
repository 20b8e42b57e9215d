"""A peer that resets or half-closes: the same callbacks on every loop.

This is the revents rule of ``lwsbridge.adapters`` seen from the callbacks: whatever
a loop library says about a reset or hung-up socket (POLLERR, POLLHUP, or just
"readable"/"writable"), the adapter gives ``service_fd`` the watched directions, and
the context closes the connection once.  Each case runs on every adapter and must
give exactly the callbacks listed, with nothing after CLOSED.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Any

import pytest
from adapterkit import RawWS

from lwsbridge.context import Context, Protocol, Reason, WriteKind

#: what the connection's protocol hears, in order; nothing else, nothing after
EXPECTED = [Reason.ESTABLISHED, Reason.RECEIVE, Reason.CLOSED]
#: the handshake's and the connection object's own reasons: not about the peer's trouble
SETUP = {
    Reason.FILTER_PROTOCOL_CONNECTION,
    Reason.FILTER_NETWORK_CONNECTION,
    Reason.FILTER_HTTP_CONNECTION,
    Reason.SERVER_NEW_CLIENT_INSTANTIATED,
    Reason.WSI_CREATE,
    Reason.WSI_DESTROY,
}
# SERVER_WRITEABLE is not listed: the "writing" case asks for it until the socket is
# full, and how many that takes depends on the kernel.
#: server-side output the peer never reads: more than the kernel's largest send
#: buffer (tcp_wmem's maximum, 4 MiB by default), so one write leaves bytes queued
FLOOD = 16 << 20


def reset(ws: RawWS) -> None:
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
    ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ws.sock.close()


def half_close(ws: RawWS) -> None:
    """FIN only: the peer says it will send nothing more, and keeps reading."""
    ws.sock.shutdown(socket.SHUT_WR)


def run_case(adapter: Any, contexts: Any, workers: Any, hangup: Any, flood: bool) -> list[Any]:
    heard: list[Reason] = []
    after_closed: list[Reason] = []
    got = threading.Event()
    full = threading.Event()

    def cb(conn, reason, user, payload) -> int:
        if conn is None or reason in SETUP:
            return 0
        if reason is Reason.SERVER_WRITEABLE:  # only in the "writing" case
            conn.write(b"x" * FLOOD, WriteKind.BINARY)
            if conn.buffered_bytes:
                full.set()  # the kernel took no more: the context now watches POLLOUT
            else:
                conn.callback_on_writable()
            return 0
        (after_closed if Reason.CLOSED in heard else heard).append(reason)
        if reason is Reason.RECEIVE:
            got.set()
            if flood:  # fill the socket, so that it breaks while POLLOUT is watched
                conn.callback_on_writable()
        return 0

    ctx = contexts(
        Context([Protocol("p", cb)], port=0, interface="127.0.0.1", writeable_same_pass=False)
    )

    def peer() -> None:
        ws = RawWS(ctx.port, "p", rcvbuf=4096)
        ws.send(0x1, b"hello")
        assert got.wait(10)
        assert full.wait(10) if flood else True
        hangup(ws)
        time.sleep(0.3)  # the loop runs on meanwhile: a second CLOSED would show here
        ws.sock.close()

    workers.start(peer)
    adapter.run(ctx, lambda: Reason.CLOSED in heard and workers.done(), 10, "CLOSED")
    workers.check()
    adapter.run(ctx, lambda: len(ctx.fds) == 2, 5, "the connection's fd to leave")
    assert ctx.connection_count == 0
    return [heard, after_closed]


@pytest.mark.parametrize("flood", [False, True], ids=["idle", "writing"])
def test_peer_reset_closes_once(adapter, contexts, workers, flood) -> None:
    heard, after = run_case(adapter, contexts, workers, reset, flood)
    assert (heard, after) == (EXPECTED, []), adapter.name


@pytest.mark.parametrize("flood", [False, True], ids=["idle", "writing"])
def test_peer_half_close_closes_once(adapter, contexts, workers, flood) -> None:
    heard, after = run_case(adapter, contexts, workers, half_close, flood)
    assert (heard, after) == (EXPECTED, []), adapter.name
