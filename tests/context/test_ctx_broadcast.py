"""Context.broadcast: one frame written at once to every connection that can take it.

Real sockets on 127.0.0.1.  The protocol below does what a broadcaster such as the
test server's mirror does: what ``broadcast`` returns is queued per connection and
written from its WRITEABLE, so each client's messages must arrive whole and in order
whichever path carried them.
"""

from __future__ import annotations

import socket
import threading
import zlib
from typing import Any

import pytest
from support.servicing import pump
from wsclient import BINARY, CLOSE, TEXT, Frame, RawClient, handshake, wait_frame

from lwsbridge.context import Connection, Context, Protocol, Reason, WriteKind
from lwsbridge.core.errors import LocalProtocolError

SMALL = 4096  # socket buffers of the choked member (the kernel doubles them)
BIG = 256 * 1024  # far more than SMALL buffers take


class Broadcaster:
    """Records WRITEABLEs; writes what broadcast() left, in order, from WRITEABLE."""

    def __init__(self) -> None:
        self.conns: list[Connection] = []
        self.backlog: dict[Connection, list[tuple[bytes, WriteKind]]] = {}
        self.writeables: dict[Connection, int] = {}

    def callback(self, conn: Any, reason: Reason, user: Any, payload: Any) -> int:
        if conn is None:
            return 0
        if reason is Reason.ESTABLISHED:
            self.conns.append(conn)
        elif reason is Reason.SERVER_WRITEABLE:
            self.writeables[conn] = self.writeables.get(conn, 0) + 1
            q = self.backlog.get(conn)
            if q:
                data, kind = q.pop(0)
                conn.write(data, kind)
                if q:
                    conn.callback_on_writable()
        return 0

    def send(
        self, ctx: Context, data: bytes, kind: WriteKind = WriteKind.BINARY
    ) -> list[Connection]:
        """Broadcast to every member with nothing waiting; queue it for the others."""
        caught_up = [c for c in self.conns if not self.backlog.get(c)]
        left = ctx.broadcast(caught_up, data, kind)
        for c in self.conns:
            if c in left or self.backlog.get(c):
                self.backlog.setdefault(c, []).append((data, kind))
                c.callback_on_writable()
        return left


def open_members(make_ctx, client, n: int, protocol: Protocol, **kw: Any) -> tuple[Context, list]:
    ctx = make_ctx([Protocol("http", lambda *a: 0), protocol])
    clients = []
    for _ in range(n):
        c = client(ctx.port, **kw)
        handshake(ctx, c, protocols=(protocol.name,))
        clients.append(c)
    return ctx, clients


def frames(ctx: Context, c: RawClient, n: int) -> list[Frame]:
    return [wait_frame(ctx, c, f"frame {i + 1} of {n}") for i in range(n)]


def test_members_are_written_at_once_without_writeable(make_ctx, client) -> None:
    b = Broadcaster()
    ctx, clients = open_members(make_ctx, client, 3, Protocol("b", b.callback))
    pump(lambda: ctx.service(5), lambda: len(b.conns) == 3, "3 members")
    assert b.send(ctx, b"one") == []
    assert ctx.broadcast(b.conns, "two \u00e9", WriteKind.TEXT) == []
    # Nothing is left queued: the kernel has both frames already.
    assert all(c.buffered_bytes == 0 for c in b.conns)
    for c in clients:
        got = frames(ctx, c, 2)
        assert [(f.opcode, f.fin, f.payload) for f in got] == [
            (BINARY, True, b"one"),
            (TEXT, True, "two \u00e9".encode()),
        ]
    assert b.writeables == {}, "a member written at once gets no WRITEABLE"


def slow_and_fast(make_ctx, client):
    """A broadcaster with two members: ``slow`` (small buffers both ends) and ``fast``."""
    b = Broadcaster()
    ctx = make_ctx([Protocol("http", lambda *a: 0), Protocol("b", b.callback)])
    slow = client(ctx.port, rcvbuf=SMALL)
    handshake(ctx, slow, protocols=("b",))
    fast = client(ctx.port)
    handshake(ctx, fast, protocols=("b",))
    pump(lambda: ctx.service(5), lambda: len(b.conns) == 2, "2 members")
    slow_conn = b.conns[0]
    assert slow_conn.sock is not None
    slow_conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL)
    return b, ctx, slow, fast, slow_conn


def test_a_choked_member_is_left_to_writeable_and_gets_every_message_in_order(
    make_ctx, client
) -> None:
    b, ctx, slow, fast, slow_conn = slow_and_fast(make_ctx, client)

    big = bytes(range(256)) * (BIG // 256)
    assert b.send(ctx, big) == []  # written, but the kernel took only part for `slow`
    assert slow_conn.buffered_bytes > 0
    assert slow_conn.send_pipe_choked()
    # The rest waits as a view of the shared frame, not a copy.
    assert all(isinstance(chunk, memoryview) for chunk in slow_conn.output.chunks)

    left = b.send(ctx, b"second")
    assert slow_conn in left, "output still queued: left to its WRITEABLE"
    b.send(ctx, b"third")
    for c in (slow, fast):
        got = frames(ctx, c, 3)
        assert [f.payload for f in got] == [big, b"second", b"third"]
        assert all(f.opcode == BINARY and f.fin for f in got)
    assert b.writeables.get(slow_conn, 0) >= 2  # second and third went out there


def test_a_deflate_member_is_left_to_writeable(make_ctx, client) -> None:
    b = Broadcaster()
    ctx = make_ctx([Protocol("http", lambda *a: 0), Protocol("b", b.callback, deflate=True)])
    plain = client(ctx.port)
    handshake(ctx, plain, protocols=("b",))
    deflated = client(ctx.port)
    resp = handshake(
        ctx,
        deflated,
        protocols=("b",),
        extra=(("Sec-WebSocket-Extensions", "permessage-deflate"),),
    )
    assert "permessage-deflate" in resp.headers["sec-websocket-extensions"]
    pump(lambda: ctx.service(5), lambda: len(b.conns) == 2, "2 members")
    plain_conn, deflate_conn = b.conns

    msg = b"compress me " * 20
    assert b.send(ctx, msg) == [deflate_conn]
    assert b.send(ctx, msg) == []  # it has a backlog now: not even offered
    for _ in range(2):
        f = wait_frame(ctx, plain, "the plain frame")
        assert (f.opcode, f.payload) == (BINARY, msg)
    inflate = zlib.decompressobj(-15)
    for _ in range(2):
        f = wait_frame(ctx, deflated, "the compressed frame")
        assert f.opcode == BINARY
        assert inflate.decompress(f.payload + b"\x00\x00\xff\xff") == msg
    assert b.writeables.get(deflate_conn, 0) >= 2
    assert plain_conn not in b.writeables


def test_a_closing_member_is_left_alone(make_ctx, client) -> None:
    b = Broadcaster()
    ctx, (closing, other) = open_members(make_ctx, client, 2, Protocol("b", b.callback))
    pump(lambda: ctx.service(5), lambda: len(b.conns) == 2, "2 members")
    closing_conn, other_conn = b.conns
    ctx.close(closing_conn, 1001, "bye")
    assert ctx.broadcast(b.conns, b"after the close") == [closing_conn]
    f = wait_frame(ctx, closing, "the close frame")
    assert (f.opcode, f.close_code) == (CLOSE, 1001)
    assert wait_frame(ctx, other, "the message").payload == b"after the close"
    assert other_conn not in b.writeables  # written at once
    # Nothing after the close frame: no data frame ever follows it.
    ctx.service(5)
    assert closing.take_frame() is None


def test_a_member_with_a_fragmented_message_open_is_left(make_ctx, client) -> None:
    sent: list[str] = []

    def cb(conn: Any, reason: Reason, user: Any, payload: Any) -> int:
        if reason is Reason.ESTABLISHED:
            conn.callback_on_writable()
        elif reason is Reason.SERVER_WRITEABLE and not sent:
            conn.write(b"first half ", WriteKind.BINARY, final=False)
            sent.append("half")
        return 0

    ctx, (c,) = open_members(make_ctx, client, 1, Protocol("f", cb))
    pump(lambda: ctx.service(5), lambda: sent, "the first fragment")
    (conn,) = ctx.connections("f")
    assert ctx.broadcast([conn], b"not now") == [conn]
    f = wait_frame(ctx, c, "the fragment")
    assert (f.opcode, f.fin, f.payload) == (BINARY, False, b"first half ")
    ctx.service(5)
    assert c.take_frame() is None


def test_broadcast_refuses_other_kinds_and_other_threads(make_ctx, client) -> None:
    b = Broadcaster()
    ctx, _ = open_members(make_ctx, client, 1, Protocol("b", b.callback))
    pump(lambda: ctx.service(5), lambda: b.conns, "the member")
    with pytest.raises(LocalProtocolError, match="TEXT or BINARY"):
        ctx.broadcast(b.conns, b"x", WriteKind.PING)
    errors: list[BaseException] = []

    def other() -> None:
        try:
            ctx.broadcast(b.conns, b"x")
        except LocalProtocolError as exc:
            errors.append(exc)

    t = threading.Thread(target=other)
    t.start()
    t.join(5)
    assert len(errors) == 1
    # A plain int kind is accepted, as write() accepts one.
    assert ctx.broadcast(b.conns, b"int kind", 1) == []


def test_several_messages_go_in_one_send_all_or_none(make_ctx, client) -> None:
    b, ctx, slow, fast, slow_conn = slow_and_fast(make_ctx, client)
    big = b"x" * BIG
    assert b.send(ctx, big) == []
    assert slow_conn.send_pipe_choked()
    msgs = [(b"a", WriteKind.BINARY), ("b", WriteKind.TEXT), (b"c" * 300, WriteKind.BINARY)]
    assert ctx.broadcast_messages(b.conns, msgs) == [slow_conn]
    got = frames(ctx, fast, 4)
    assert [(f.opcode, f.payload) for f in got] == [
        (BINARY, big),
        (BINARY, b"a"),
        (TEXT, b"b"),
        (BINARY, b"c" * 300),
    ]
    # Nothing of the three reached the choked member: it still gets only the first.
    assert [f.payload for f in frames(ctx, slow, 1)] == [big]
    ctx.service(5)
    assert slow.take_frame() is None
    with pytest.raises(LocalProtocolError, match="TEXT or BINARY"):
        ctx.broadcast_messages(b.conns, [(b"ok", WriteKind.TEXT), (b"no", WriteKind.PONG)])
