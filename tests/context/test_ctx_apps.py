"""The test-server app's protocols, in-process on an ephemeral port."""

from __future__ import annotations

import contextlib
import itertools
import struct
import time
import zlib

import pytest
from support.servicing import pump, stepper
from wsclient import (
    CLOSE,
    TEXT,
    Frame,
    RawClient,
    close_frame,
    handshake,
    text,
    wait_eof,
    wait_frame,
)

from lwsbridge.apps.demo_server import Mirror, build_context
from lwsbridge.context import Reason


@pytest.fixture
def server():
    ctx = build_context(0, "127.0.0.1")
    yield ctx
    ctx.destroy()


def test_dumb_increment_counts_every_50ms(server, client) -> None:
    ctx = server
    c = client(ctx.port)
    resp = handshake(ctx, c, protocols=("dumb-increment-protocol",))
    assert resp.headers["sec-websocket-protocol"] == "dumb-increment-protocol"
    stamps, values = [], []
    for _ in range(8):
        f = wait_frame(ctx, c, "a number")
        stamps.append(time.monotonic())
        assert f.opcode == TEXT
        values.append(f.payload.decode())
    assert values == [str(i) for i in range(8)]
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    mean = sum(gaps) / len(gaps)
    assert 0.035 <= mean <= 0.15, gaps

    # "reset\n" restarts at 0 (a number already in flight may come first).
    c.send(text("reset\n"))
    after = [wait_frame(ctx, c).payload.decode() for _ in range(3)]
    assert "0" in after, after
    i = after.index("0")
    nxt = after[i + 1 :] + [wait_frame(ctx, c).payload.decode() for _ in range(2)]
    assert nxt[:2] == ["1", "2"]

    # "closeme\n": close 1001 "seeya".
    c.send(text("closeme\n"))

    def closing():
        f = c.take_frame()
        return f if f is not None and f.opcode == CLOSE else None

    f = pump(stepper(ctx), closing, "the close frame")
    assert (f.close_code, f.close_reason) == (1001, "seeya")
    c.send(close_frame(1001))
    wait_eof(ctx, c)
    pump(stepper(ctx), lambda: ctx.connection_count == 0, "the connection to go")


def test_dumb_increment_short_messages_ignored(server, client) -> None:
    ctx = server
    c = client(ctx.port)
    handshake(ctx, c, protocols=("dumb-increment-protocol",))
    assert wait_frame(ctx, c).payload == b"0"
    c.send(text("reset"))  # < 6 bytes: ignored
    got = [wait_frame(ctx, c).payload for _ in range(4)]
    assert got == [b"1", b"2", b"3", b"4"]


def test_mirror_reaches_every_member_including_sender(server, client) -> None:
    ctx = server
    members = [client(ctx.port) for _ in range(3)]
    for m in members:
        handshake(ctx, m, protocols=("lws-mirror-protocol",))
    outsider = client(ctx.port)
    handshake(ctx, outsider, protocols=("dumb-increment-protocol",))
    members[0].send(text("hello from 0"))
    members[2].send(text("hello from 2"))
    for m in members:
        got = [wait_frame(ctx, m, "mirrored message").payload for _ in range(2)]
        assert sorted(got) == [b"hello from 0", b"hello from 2"]
    # Every member sees the same order.
    members[1].send(text("a"))
    members[1].send(text("b"))
    for m in members:
        assert [wait_frame(ctx, m).payload for _ in range(2)] == [b"a", b"b"]
    # The dumb-increment client got only numbers.
    outsider.pull()
    while (f := outsider.take_frame()) is not None:
        assert f.payload.isdigit()


def test_mirror_writes_caught_up_members_at_once_and_the_others_in_order(client) -> None:
    """Caught-up members get a pass's messages in one broadcast, without a WRITEABLE;
    a deflate member (which the library leaves to WRITEABLE) gets the same, in order."""
    writeables: list[object] = []
    mirror = Mirror()
    inner = mirror.protocol.callback

    def counting(conn, reason, user, payload):
        if reason is Reason.SERVER_WRITEABLE:
            writeables.append(conn)
        return inner(conn, reason, user, payload)

    mirror.protocol.callback = counting
    ctx = build_context(0, "127.0.0.1", mirror=mirror)
    try:
        members = [client(ctx.port) for _ in range(3)]
        for m in members:
            handshake(ctx, m, protocols=("lws-mirror-protocol",))
        squeezed = client(ctx.port)
        resp = handshake(
            ctx,
            squeezed,
            protocols=("lws-mirror-protocol",),
            extra=(("Sec-WebSocket-Extensions", "permessage-deflate"),),
        )
        assert "permessage-deflate" in resp.headers["sec-websocket-extensions"]
        (deflate_conn,) = [c for c in ctx.connections() if c.core.extension is not None]
        members[0].send(text("one") + text("two"))
        for m in members:
            assert [wait_frame(ctx, m).payload for _ in range(2)] == [b"one", b"two"]
        inflate = zlib.decompressobj(-15)
        got = [wait_frame(ctx, squeezed).payload for _ in range(2)]
        assert [inflate.decompress(p + b"\x00\x00\xff\xff") for p in got] == [b"one", b"two"]
        assert writeables and all(c is deflate_conn for c in writeables)
    finally:
        ctx.destroy()


def test_test_server_serves_its_page(server, client) -> None:
    ctx = server
    c = client(ctx.port)
    c.send_get("/")
    resp = pump(stepper(ctx), c.take_response, "the test page")
    assert resp.status == 200
    assert resp.headers["content-type"].startswith("text/html")
    assert b"dumb-increment-protocol" in resp.body
    c.send_get("/../context.py")
    resp = pump(stepper(ctx), c.take_response, "the 404")
    assert resp.status == 404


# ---------------------------------------------------------------------------- mirror floods


def fast_frame(payload: bytes) -> bytes:
    """A client binary frame with the all-zero mask (legal, and no Python XOR loop)."""
    n = len(payload)
    if n < 126:
        head = bytes([0x82, 0x80 | n])
    elif n < 65536:
        head = bytes([0x82, 0x80 | 126]) + struct.pack("!H", n)
    else:
        head = bytes([0x82, 0x80 | 127]) + struct.pack("!Q", n)
    return head + b"\0\0\0\0" + payload


class Flood:
    """One client's messages, all in one buffer, handed to the kernel as it takes them."""

    def __init__(self, client: RawClient, messages: list[bytes]) -> None:
        self.client, self.data, self.sent = client, b"".join(map(fast_frame, messages)), 0

    def add(self, messages: list[bytes]) -> None:
        self.data = self.data[self.sent :] + b"".join(map(fast_frame, messages))
        self.sent = 0

    @property
    def done(self) -> bool:
        return self.sent == len(self.data)

    def step(self) -> None:
        if self.sent < len(self.data):
            with contextlib.suppress(BlockingIOError):  # full: the next step goes on
                self.sent += self.client.sock.send(self.data[self.sent : self.sent + (1 << 22)])


def drain(c: RawClient, into: list[Frame]) -> None:
    while (f := c.take_frame()) is not None:
        into.append(f)


def mirror_member(ctx, client) -> RawClient:
    c = client(ctx.port)
    handshake(ctx, c, protocols=("lws-mirror-protocol",))
    return c


def test_mirror_flood_in_one_write_reaches_every_member(server, client) -> None:
    """5,000 small messages in one write (one read: ~10 rings) are all mirrored, in order.

    The sender is paused while the ring is full instead of the ring overflowing and
    every member being closed with 1008.
    """
    ctx = server
    flooder, *readers = members = [mirror_member(ctx, client) for _ in range(3)]
    sent = [b"m%04d" % i for i in range(5000)]
    flood = Flood(flooder, sent)
    got: list[list[Frame]] = [[] for _ in members]

    def step() -> None:
        ctx.service(5)
        flood.step()
        for c, frames in zip(members, got, strict=True):
            drain(c, frames)

    flood.step()  # the kernel takes the ~55 kB at once: the server reads it in one go

    def done() -> bool:  # or a member was closed: the assertions below say how
        return all(len(f) >= len(sent) for f in got) or any(c.eof for c in members)

    pump(step, done, "every message", timeout=30)
    for c, frames in zip(members, got, strict=True):
        assert [f.payload for f in frames] == sent
        assert not c.eof
    assert len(ctx.connections("lws-mirror-protocol")) == 3
    assert readers[0].take_frame() is None


def test_mirror_drops_only_a_member_that_stops_reading(client) -> None:
    """A member that reads nothing blocks the ring: dropped after the stall timeout,
    while the readers get every message and the paused sender resumes."""
    mirror = Mirror(ring=16, stall_timeout=0.3)  # small: the test stays cheap
    # close_timeout: the dropped member's close waits behind its unread data until the
    # test reads it, however slow the machine
    ctx = build_context(0, "127.0.0.1", mirror=mirror, close_timeout=60)
    try:
        readers = [mirror_member(ctx, client) for _ in range(3)]
        flooder = readers[0]  # it reads too: it is a member
        # It never reads: the kernel buffers to it (a few MB on loopback, depending on
        # the kernel's settings) fill, then it stops taking messages and holds the ring.
        lazy = client(ctx.port, rcvbuf=4096)
        handshake(ctx, lazy, protocols=("lws-mirror-protocol",))

        def message(i: int) -> bytes:
            return b"%05d" % i + b"x" * (32 * 1024)

        sent = [message(i) for i in range(100)]
        flood = Flood(flooder, sent)
        got: list[list[Frame]] = [[] for _ in readers]
        batches_after_drop = 0

        def dropped() -> bool:
            return any(c.user.dropped for c in ctx.connections(mirror.protocol))

        def step() -> None:
            nonlocal batches_after_drop
            ctx.service(5)
            flood.step()
            for c, frames in zip(readers, got, strict=True):
                drain(c, frames)
            # More until the lazy one is dropped (how much its buffers take depends on
            # the kernel; capped at 64 MB), then one batch more: the others go on.
            if flood.done and len(sent) < 2000 and batches_after_drop < 1:
                batches_after_drop += dropped()
                more = [message(i) for i in range(len(sent), len(sent) + 50)]
                sent.extend(more)
                flood.add(more)

        def done() -> bool:
            if any(c.eof for c in readers):
                return True
            return (batches_after_drop or len(sent) >= 2000) and all(
                len(f) >= len(sent) for f in got
            )

        pump(step, done, "every message", timeout=60)
        assert dropped(), f"{len(sent)} messages of 32 kB did not fill the lazy member"
        for c, frames in zip(readers, got, strict=True):
            assert [f.payload for f in frames] == sent
            assert not c.eof
        assert len([c for c in ctx.connections(mirror.protocol) if not c.user.dropped]) == 3

        # The lazy member got a prefix, in order, then the close: 1008.
        lazy_frames: list[Frame] = []

        def lazy_closed() -> bool:
            drain(lazy, lazy_frames)
            return bool(lazy_frames) and lazy_frames[-1].opcode == CLOSE

        pump(stepper(ctx), lazy_closed, "the close of the stalled member")
        *data, close = lazy_frames
        assert 0 < len(data) < len(sent)
        assert [f.payload for f in data] == sent[: len(data)]
        assert (close.close_code, close.close_reason) == (1008, "too slow for the mirror")
        for c in readers:
            c.pull()
            assert not c.eof and c.take_frame() is None
    finally:
        ctx.destroy()


def test_mirror_ring_too_small_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="at least 4"):
        Mirror(ring=3)
