"""The test-server app's protocols, in-process on an ephemeral port."""

from __future__ import annotations

import itertools
import time

import pytest
from support.servicing import pump, stepper
from wsclient import CLOSE, TEXT, close_frame, handshake, text, wait_eof, wait_frame

from lwsbridge.apps.demo_server import build_context


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
