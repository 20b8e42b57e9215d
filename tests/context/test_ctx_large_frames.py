"""Large frames over real sockets: gathered whole (``whole_frame_size``) however they arrive.

The client sends each frame in small writes with the server serviced in between, so the
server reads it in many pieces (and two frames are in progress at once); the callback
must still get each frame in one RECEIVE with its own bytes, the context's pool must lend
a buffer to one connection at a time and get it back, also from a connection that dies
mid-frame.
"""

from __future__ import annotations

import os
import struct
import sys

from support.servicing import pump, stepper
from wsclient import BINARY, Echo, handshake, wait_frame

from lwsbridge.context import Protocol, Reason

MIB = 1 << 20
STEP = 16 * 1024


def client_frame(payload: bytes) -> bytes:
    """A masked binary frame, masked here with one big-int XOR (fast, independent)."""
    key = os.urandom(4)
    n = len(payload)
    full = key * (n // 4) + key[: n % 4]
    masked = (
        int.from_bytes(payload, sys.byteorder) ^ int.from_bytes(full, sys.byteorder)
    ).to_bytes(n, sys.byteorder)
    return bytes([0x80 | BINARY, 0x80 | 127]) + struct.pack("!Q", n) + key + masked


def receives(echo: Echo, conn: object) -> list[bytes]:
    return [bytes(p) for r, c, p in echo.calls if r is Reason.RECEIVE and c is conn]


def test_a_1mib_frame_in_many_small_reads_is_one_receive(make_ctx, client) -> None:
    echo = Echo()
    ctx = make_ctx([Protocol("echo", echo.callback)])
    c = client(ctx.port)
    handshake(ctx, c)
    (conn,) = ctx.all_connections()
    payload = os.urandom(MIB)
    frame = client_frame(payload)
    for i in range(0, len(frame), STEP):
        c.send(frame[i : i + STEP])
        ctx.service(0)
    pump(stepper(ctx), lambda: echo.count(Reason.RECEIVE), "the RECEIVE")
    assert receives(echo, conn) == [payload]
    back = wait_frame(ctx, c, "the echo")
    assert back.fin and back.payload == payload  # (Echo writes it back as TEXT)
    assert ctx.frame_pool is not None and ctx.frame_pool.lent == 0


def test_two_frames_in_progress_at_once_each_get_their_own_buffer(make_ctx, client) -> None:
    echo = Echo()
    ctx = make_ctx([Protocol("echo", echo.callback)], max_message_size=2 * MIB)
    pool = ctx.frame_pool
    assert pool is not None
    clients = [client(ctx.port), client(ctx.port)]
    for c in clients:
        handshake(ctx, c)
    conns = ctx.all_connections()
    payloads = [os.urandom(MIB - 1000), os.urandom(MIB)]
    frames = [client_frame(p) for p in payloads]
    half = len(frames[0]) // 2
    for c, f in zip(clients, frames, strict=True):
        for i in range(0, half, STEP):
            c.send(f[i : min(i + STEP, half)])
            ctx.service(0)
    pump(stepper(ctx), lambda: pool.lent == 2, "both frames being gathered")
    for c, f in zip(clients, frames, strict=True):
        for i in range(half, len(f), STEP):
            c.send(f[i : i + STEP])
            ctx.service(0)
    pump(stepper(ctx), lambda: echo.count(Reason.RECEIVE) == 2, "both RECEIVEs")
    by_conn = {id(conn): receives(echo, conn) for conn in conns}
    assert sorted(by_conn.values()) == sorted([[p] for p in payloads])
    for c in clients:
        assert wait_frame(ctx, c, "an echo").payload in payloads
    assert pool.lent == 0


def test_whole_frame_size_0_delivers_pieces_as_before(make_ctx, client) -> None:
    echo = Echo()
    ctx = make_ctx([Protocol("echo", echo.callback)], whole_frame_size=0)
    assert ctx.frame_pool is None
    c = client(ctx.port)
    handshake(ctx, c)
    (conn,) = ctx.all_connections()
    payload = os.urandom(256 * 1024)
    frame = client_frame(payload)
    for i in range(0, len(frame), STEP):
        c.send(frame[i : i + STEP])
        ctx.service(0)

    def whole() -> bool:
        return b"".join(receives(echo, conn)) == payload

    pump(stepper(ctx), whole, "the whole payload")
    assert len(receives(echo, conn)) > 1


def test_a_connection_dying_mid_frame_gives_its_buffer_back(make_ctx, client) -> None:
    echo = Echo()
    ctx = make_ctx([Protocol("echo", echo.callback)])
    pool = ctx.frame_pool
    assert pool is not None
    c = client(ctx.port)
    handshake(ctx, c)
    c.send(client_frame(os.urandom(MIB))[: 5 * STEP])
    pump(stepper(ctx), lambda: pool.lent == 1, "the frame being gathered")
    c.abort()
    pump(stepper(ctx), lambda: echo.count(Reason.CLOSED), "CLOSED")
    assert pool.lent == 0 and echo.count(Reason.RECEIVE) == 0


def test_large_frames_back_to_back_with_small_ones_and_split_headers(make_ctx, client) -> None:
    """After a read ends a large frame the service reads the next header alone (so the
    payload lands straight in the frame's buffer): whatever actually follows -- another
    large frame, a small one, a header cut short -- is still parsed and delivered whole
    and in order."""
    echo = Echo()
    ctx = make_ctx([Protocol("echo", echo.callback)])
    c = client(ctx.port)
    handshake(ctx, c)
    (conn,) = ctx.all_connections()
    big = [os.urandom(300_000), os.urandom(200_000), os.urandom(100_000)]
    key = os.urandom(4)
    small = (
        bytes([0x80 | BINARY, 0x80 | 4])
        + key
        + bytes(a ^ b for a, b in zip(b"tiny", key, strict=True))
    )
    first, second, third = (client_frame(p) for p in big)
    c.send(first + second + small + third[:5])  # the third header cut short
    pump(stepper(ctx), lambda: echo.count(Reason.RECEIVE) == 3, "three RECEIVEs")
    c.send(third[5:])
    pump(stepper(ctx), lambda: echo.count(Reason.RECEIVE) == 4, "the fourth RECEIVE")
    assert receives(echo, conn) == [big[0], big[1], b"tiny", big[2]]
    for want in (big[0], big[1], b"tiny", big[2]):
        assert wait_frame(ctx, c, "an echo").payload == want
    assert ctx.frame_pool is not None and ctx.frame_pool.lent == 0
