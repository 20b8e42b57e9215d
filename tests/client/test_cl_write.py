"""The client's write discipline, fragment accessors, close rules and frame masking,
over real loopback sockets (an in-process echo server, or a raw server that records
the wire)."""

from __future__ import annotations

import itertools
import socket
import struct
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from clientutil import RawServer, Recorder, WireFrame, raw_server, server_frame, upgrade_response
from support.servicing import pump, settle, stepper

from lwsbridge.apps.echo_server import build_context as build_echo
from lwsbridge.context import ClientConnectInfo, Context, Protocol, Reason, WriteKind
from lwsbridge.core.errors import LocalProtocolError

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


@pytest.fixture
def echo_server() -> Iterator[Context]:
    ctx = build_echo(0, "127.0.0.1", 1 << 20)
    yield ctx
    ctx.destroy()


def _has_close(frames: list[WireFrame]) -> bool:
    return any(f.opcode == CLOSE for f in frames)


def ws_peer(after: Callable[[socket.socket, RawServer], None]) -> Any:
    """Raw-server handler: read the upgrade, answer 101, then run ``after``."""

    def handler(s: socket.socket, srv: RawServer) -> None:
        _line, headers = srv.read_request(s)
        s.sendall(upgrade_response(headers))
        after(s, srv)

    return handler


def record_until_close(reply: bool = True) -> Any:
    """After the handshake: record client frames until its close; answer it and hang up."""

    def after(s: socket.socket, srv: RawServer) -> None:
        srv.read_frames(s, _has_close)
        close = next((f for f in srv.notes if f.opcode == CLOSE), None)
        if close is not None and reply:
            s.sendall(server_frame(CLOSE, close.payload[:2]))
        s.close()

    return after


def sender(items: list[tuple[bytes | str, WriteKind, bool]], close_after: bool = True) -> Recorder:
    """A recorder that writes ``items`` one per CLIENT_WRITEABLE, then returns -1."""
    todo = list(items)

    def writeable(conn: Any, payload: Any) -> int:
        if not todo:
            return -1 if close_after else 0
        data, kind, final = todo.pop(0)
        conn.write(data, kind, final)
        conn.callback_on_writable()
        return 0

    return Recorder.writer(writeable)


def _connect(ctx: Context, port: int, **kw: Any) -> Any:
    return ctx.client_connect(ClientConnectInfo("127.0.0.1", port, **kw))


# ---------------------------------------------------------------------------- write discipline


def test_write_only_inside_client_writeable(make_ctx: Any, echo_server: Context) -> None:
    errors: dict[str, Any] = {}

    def try_write(where: str) -> Callable[[Any, Any], int]:
        def hook(conn: Any, payload: Any) -> int:
            try:
                conn.write(b"x")
            except LocalProtocolError as exc:
                errors[where] = exc
            else:
                errors[where] = None
            if where == "established":
                conn.callback_on_writable()
            return 0

        return hook

    writes: list[int] = []

    def writeable(conn: Any, payload: Any) -> int:
        conn.write(b"one")
        writes.append(1)
        with pytest.raises(LocalProtocolError):
            conn.write(b"two")  # one write per CLIENT_WRITEABLE
        errors.setdefault("second", True)
        return 0

    rec = Recorder(
        hooks={
            Reason.CLIENT_ESTABLISHED: try_write("established"),
            Reason.CLIENT_RECEIVE: try_write("receive"),
            Reason.CLIENT_WRITEABLE: writeable,
        }
    )
    ctx = make_ctx([Protocol("echo-client", rec.callback)])
    conn = _connect(ctx, echo_server.port)
    step = stepper(ctx, echo_server, ms=2)
    pump(step, lambda: rec.received(conn), "the echo")
    assert isinstance(errors["established"], LocalProtocolError), errors
    assert isinstance(errors["receive"], LocalProtocolError), errors
    assert errors["second"] is True
    with pytest.raises(LocalProtocolError):
        conn.write(b"outside any callback")
    settle(step, 0.1)
    assert rec.received(conn) == [b"one"]  # the refused writes sent nothing
    assert writes == [1]
    assert rec.count(conn, Reason.CLIENT_WRITEABLE) == 1


def test_one_writeable_per_request(make_ctx: Any, echo_server: Context) -> None:
    """callback_on_writable twice before the callback gives one CLIENT_WRITEABLE."""
    rec = Recorder()

    def est(conn: Any, payload: Any) -> None:
        conn.callback_on_writable()
        conn.callback_on_writable()

    rec.hooks[Reason.CLIENT_ESTABLISHED] = est
    rec.hooks[Reason.CLIENT_WRITEABLE] = lambda c, p: c.write(b"m") and 0
    ctx = make_ctx([Protocol("echo-client", rec.callback)])
    conn = _connect(ctx, echo_server.port)
    step = stepper(ctx, echo_server, ms=2)
    pump(step, lambda: rec.received(conn), "the echo")
    settle(step, 0.1)
    assert rec.count(conn, Reason.CLIENT_WRITEABLE) == 1


def test_echo_text_binary_and_sizes(make_ctx: Any, echo_server: Context) -> None:
    msgs = [
        ("héllo", WriteKind.TEXT),
        (b"\x00\xff" * 10, WriteKind.BINARY),
        (b"", WriteKind.BINARY),
        ("", WriteKind.TEXT),
        (b"x" * 125, WriteKind.BINARY),
        (b"y" * 126, WriteKind.BINARY),
        (b"z" * 65536, WriteKind.BINARY),
        (bytes(range(256)) * 1200, WriteKind.BINARY),  # 300 KiB: more than one read
    ]
    rec = sender([(d, k, True) for d, k in msgs], close_after=False)
    binaries: list[bool] = []
    parts: list[bytes] = []
    whole: list[bytes] = []

    def receive(conn: Any, payload: Any) -> int:
        parts.append(payload)
        if conn.is_final_fragment():
            binaries.append(conn.frame_is_binary())
            whole.append(b"".join(parts))
            parts.clear()
        return -1 if len(whole) == len(msgs) else 0

    rec.hooks[Reason.CLIENT_RECEIVE] = receive
    ctx = make_ctx([Protocol("echo-client", rec.callback)])
    conn = _connect(ctx, echo_server.port)
    pump(stepper(ctx, echo_server, ms=2), lambda: rec.ended(conn), "all echoes and the close")
    expect = [d.encode() if isinstance(d, str) else d for d, _k in msgs]
    assert whole == expect
    assert binaries == [k is WriteKind.BINARY for _d, k in msgs]
    assert rec.count(conn, Reason.CLOSED) == 1


# ---------------------------------------------------------------------------- fragments


def test_fragment_accessors(make_ctx: Any) -> None:
    big = bytes(range(256)) * 2048  # 512 KiB in one frame: delivered in pieces

    def after(s: socket.socket, srv: RawServer) -> None:
        s.sendall(
            server_frame(TEXT, b"ab", fin=False)
            + server_frame(PING, b"p")  # a control frame in between
            + server_frame(CONT, b"cd", fin=False)
            + server_frame(CONT, b"ef", fin=True)
            + server_frame(BINARY, big)
        )
        record_until_close()(s, srv)

    seen: list[tuple[bytes, bool, bool, int, bool]] = []

    def receive(conn: Any, payload: Any) -> int:
        seen.append(
            (
                payload,
                conn.is_first_fragment(),
                conn.is_final_fragment(),
                conn.remaining_packet_payload(),
                conn.frame_is_binary(),
            )
        )
        done = conn.frame_is_binary() and conn.is_final_fragment()
        return -1 if done else 0

    rec = Recorder(hooks={Reason.CLIENT_RECEIVE: receive})
    ctx = make_ctx([Protocol("frag", rec.callback)])
    with raw_server(ws_peer(after)) as srv:
        conn = _connect(ctx, srv.port)
        pump(stepper(ctx), lambda: rec.ended(conn), "the messages and the close")
        frames = list(srv.notes)
    # outside RECEIVE the accessors refuse
    with pytest.raises(LocalProtocolError):
        conn.is_final_fragment()
    text = [x for x in seen if not x[4]]
    assert [x[0] for x in text] == [b"ab", b"cd", b"ef"]
    assert [x[1] for x in text] == [True, False, False]
    assert [x[2] for x in text] == [False, False, True]
    binary = [x for x in seen if x[4]]
    assert b"".join(x[0] for x in binary) == big
    assert binary[0][1] is True and binary[-1][2] is True
    assert all(not x[2] for x in binary[:-1]) and all(not x[1] for x in binary[1:])
    # remaining_packet_payload counts down to 0 over the frame
    assert binary[-1][3] == 0
    delivered = 0
    for data, _first, _final, rem, _binary in binary:
        delivered += len(data)
        assert rem == len(big) - delivered, (delivered, rem)
    # the ping was answered with a masked pong carrying its payload
    pongs = [f for f in frames if f.opcode == PONG]
    assert pongs and pongs[0].payload == b"p" and pongs[0].masked
    assert rec.count(conn, Reason.CLOSED) == 1


def test_client_writes_fragmented_message(make_ctx: Any) -> None:
    rec = sender(
        [
            ("one", WriteKind.TEXT, False),
            ("two", WriteKind.CONTINUATION, False),
            ("three", WriteKind.CONTINUATION, True),
            (b"\x01\x02", WriteKind.BINARY, True),
        ]
    )
    ctx = make_ctx([Protocol("frag", rec.callback)])
    with raw_server(ws_peer(record_until_close())) as srv:
        conn = _connect(ctx, srv.port)
        pump(stepper(ctx), lambda: rec.ended(conn), "the close")
        frames = [f for f in srv.notes if f.opcode != CLOSE]
    assert [(f.opcode, f.fin, f.payload) for f in frames] == [
        (TEXT, False, b"one"),
        (CONT, False, b"two"),
        (CONT, True, b"three"),
        (BINARY, True, b"\x01\x02"),
    ]


def test_continuation_rules(make_ctx: Any, echo_server: Context) -> None:
    results: list[str] = []

    def writeable(conn: Any, payload: Any) -> int:
        n = rec.count(conn, Reason.CLIENT_WRITEABLE)
        try:
            if n == 1:
                conn.write(b"x", WriteKind.CONTINUATION)  # nothing to continue
            elif n == 2:
                conn.write(b"a", WriteKind.TEXT, final=False)
            elif n == 3:
                conn.write(b"b", WriteKind.TEXT)  # a message is open: must continue it
            elif n == 4:
                conn.write(b"c", WriteKind.CONTINUATION, final=True)
                return 0
        except LocalProtocolError:
            results.append(f"refused {n}")
        else:
            results.append(f"ok {n}")
        conn.callback_on_writable()
        return 0

    rec = Recorder.writer(writeable)
    ctx = make_ctx([Protocol("echo-client", rec.callback)])
    conn = _connect(ctx, echo_server.port)
    step = stepper(ctx, echo_server, ms=2)
    pump(step, lambda: rec.received(conn), "the echo")
    assert results == ["refused 1", "ok 2", "refused 3"]
    settle(step, 0.05)
    assert b"".join(rec.received(conn)) == b"ac"


# ---------------------------------------------------------------------------- closing


def test_client_returns_minus_one_close_1000_closed_once(make_ctx: Any) -> None:
    rec = sender([("bye", WriteKind.TEXT, True)])
    ctx = make_ctx([Protocol("c", rec.callback)])
    with raw_server(ws_peer(record_until_close())) as srv:
        conn = _connect(ctx, srv.port)
        pump(stepper(ctx), lambda: rec.ended(conn), "CLOSED")
        settle(stepper(ctx), 0.2)
        frames = list(srv.notes)
    closes = [f for f in frames if f.opcode == CLOSE]
    assert len(closes) == 1 and closes[0].close_code == 1000 and closes[0].masked
    assert frames[-1].opcode == CLOSE
    assert rec.count(conn, Reason.CLOSED) == 1
    assert rec.count(conn, Reason.CLIENT_CONNECTION_ERROR) == 0
    assert rec.count(conn, Reason.WS_PEER_INITIATED_CLOSE) == 0
    assert ctx.connection_count == 0


def test_close_reason_is_sent(make_ctx: Any) -> None:
    def est(conn: Any, payload: Any) -> int:
        conn.close_reason(4001, "going away now")
        return -1

    rec = Recorder(hooks={Reason.CLIENT_ESTABLISHED: est})
    ctx = make_ctx([Protocol("c", rec.callback)])
    with raw_server(ws_peer(record_until_close())) as srv:
        conn = _connect(ctx, srv.port)
        pump(stepper(ctx), lambda: rec.ended(conn), "CLOSED")
        closes = [f for f in srv.notes if f.opcode == CLOSE]
    assert closes and closes[0].payload == struct.pack("!H", 4001) + b"going away now"
    assert rec.count(conn, Reason.CLOSED) == 1


def test_client_close_against_echo_server(make_ctx: Any, echo_server: Context) -> None:
    rec = sender([("a", WriteKind.TEXT, True)])
    ctx = make_ctx([Protocol("c", rec.callback)])
    conn = _connect(ctx, echo_server.port)
    step = stepper(ctx, echo_server, ms=2)
    pump(step, lambda: rec.ended(conn), "CLOSED")
    pump(step, lambda: echo_server.connection_count == 0, "the server side to go")
    settle(step, 0.1)
    assert rec.count(conn, Reason.CLOSED) == 1
    assert ctx.connection_count == 0


@pytest.mark.parametrize("how", ["close-frame", "close-frame-no-fin", "tcp-fin", "tcp-reset"])
def test_server_closes(make_ctx: Any, how: str) -> None:
    def after(s: socket.socket, srv: RawServer) -> None:
        if how == "tcp-fin":
            s.close()
            return
        if how == "tcp-reset":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
            return
        s.sendall(server_frame(CLOSE, struct.pack("!H", 1001) + b"bye"))
        srv.read_frames(s, _has_close)
        if how == "close-frame":
            s.close()
        # close-frame-no-fin: keep the socket; the client must close by itself

    rec = Recorder()
    ctx = make_ctx([Protocol("c", rec.callback)], close_timeout=0.5)
    with raw_server(ws_peer(after)) as srv:
        conn = _connect(ctx, srv.port)
        pump(stepper(ctx), lambda: rec.ended(conn), "CLOSED", 3.0)
        settle(stepper(ctx), 0.2)
        frames = list(srv.notes)
    assert rec.has(conn, Reason.CLIENT_ESTABLISHED)
    assert rec.count(conn, Reason.CLOSED) == 1, rec.reasons(conn)
    assert rec.count(conn, Reason.CLIENT_CONNECTION_ERROR) == 0
    if how.startswith("close-frame"):
        assert rec.count(conn, Reason.WS_PEER_INITIATED_CLOSE) == 1
        closes = [f for f in frames if f.opcode == CLOSE]
        assert len(closes) == 1 and closes[0].masked and closes[0].close_code == 1001
    assert ctx.connection_count == 0


def test_test_server_closeme(make_ctx: Any, test_server: Context) -> None:
    """dumb-increment's "closeme": the server closes 1001 "seeya"; CLOSED once."""
    peer_close: list[Any] = []

    def writeable(conn: Any, payload: Any) -> None:
        conn.write("closeme\n", WriteKind.TEXT)

    def receive(conn: Any, payload: Any) -> None:
        if rec.count(conn, Reason.CLIENT_RECEIVE) == 2:
            conn.callback_on_writable()

    rec = Recorder(
        hooks={
            Reason.CLIENT_WRITEABLE: writeable,
            Reason.CLIENT_RECEIVE: receive,
            Reason.WS_PEER_INITIATED_CLOSE: lambda c, p: peer_close.append(p),
        }
    )
    ctx = make_ctx([Protocol("dumb-increment-protocol", rec.callback)])
    conn = _connect(ctx, test_server.port, protocol="dumb-increment-protocol")
    step = stepper(ctx, test_server, ms=2)
    pump(step, lambda: rec.ended(conn), "CLOSED")
    settle(step, 0.2)
    assert rec.count(conn, Reason.CLOSED) == 1
    assert len(peer_close) == 1
    ev = peer_close[0]
    assert getattr(ev, "code", None) == 1001, ev
    assert getattr(ev, "reason", None) == "seeya", ev


# ---------------------------------------------------------------------------- masking


def test_frames_masked_with_fresh_keys(make_ctx: Any) -> None:
    n = 40
    items: list[tuple[bytes | str, WriteKind, bool]] = [
        (b"same payload", WriteKind.BINARY, True) for _ in range(n)
    ]
    items += [(b"ping!", WriteKind.PING, True), ("t" * 200, WriteKind.TEXT, True)]
    rec = sender(items)
    ctx = make_ctx([Protocol("c", rec.callback)])
    with raw_server(ws_peer(record_until_close())) as srv:
        conn = _connect(ctx, srv.port)
        pump(stepper(ctx), lambda: rec.ended(conn), "CLOSED")
        frames = list(srv.notes)
        wire = bytes(srv.wire)
    assert len(frames) == n + 3  # + ping, text, close
    assert all(f.masked for f in frames)
    keys = [f.key for f in frames]
    assert all(len(k) == 4 for k in keys)
    # fresh per frame: consecutive keys differ, and (practically) all are distinct
    assert all(a != b for a, b in itertools.pairwise(keys))
    assert len(set(keys)) >= len(keys) - 1
    assert [f.payload for f in frames[:n]] == [b"same payload"] * n
    assert frames[n].opcode == PING and frames[n].payload == b"ping!"
    # the payload never shows in clear on the wire (40 copies, 4-byte keys)
    assert wire.count(b"same payload") <= 1
    assert rec.count(conn, Reason.CLOSED) == 1
