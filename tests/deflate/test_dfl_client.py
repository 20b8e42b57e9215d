"""lwsbridge's client with Protocol(deflate=...) against websockets' server with compression.

The websockets server runs in a helper thread (its sync API); the lwsbridge context is
serviced in the test's thread, every wait bounded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from dflutil import payload
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.sync.server import Server as WsServer
from websockets.sync.server import ServerConnection, serve

from lwsbridge.context import ClientConnectInfo, Connection, Context, Protocol, Reason, WriteKind
from lwsbridge.core.deflate import PerMessageDeflate, PerMessageDeflateFactory

SIZES = [0, 1, 125, 126, 4096, 65536, 256 * 1024 + 7, 1 << 20]
SERVERS: dict[str, dict[str, Any]] = {
    "websockets_default": {"compression": "deflate"},
    "no_context_takeover": {
        "compression": None,
        "extensions": [
            ServerPerMessageDeflateFactory(
                server_no_context_takeover=True, client_no_context_takeover=True
            )
        ],
    },
    "takeover_15_bits": {
        "compression": None,
        "extensions": [ServerPerMessageDeflateFactory()],
    },
}


class EchoPeer:
    def __init__(self, **kw: Any) -> None:
        self.extensions: list[list[Any]] = []
        self.request_headers: list[str | None] = []
        self.server: WsServer = serve(
            self.handler, "127.0.0.1", 0, max_size=None, ping_interval=None, **kw
        )
        self.port = self.server.socket.getsockname()[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def handler(self, ws: ServerConnection) -> None:
        self.extensions.append(list(ws.protocol.extensions))
        self.request_headers.append(ws.request.headers.get("Sec-WebSocket-Extensions"))
        for msg in ws:
            ws.send(msg)

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(5)


@pytest.fixture(params=list(SERVERS))
def peer(request: pytest.FixtureRequest) -> Iterator[EchoPeer]:
    p = EchoPeer(**SERVERS[request.param])
    yield p
    p.stop()


def _echo_run(
    port: int,
    msgs: list[tuple[bytes, bool]],
    deflate: PerMessageDeflateFactory | bool,
    fragment: int | None = None,
) -> tuple[list[tuple[bytes, bool]], Any]:
    """lwsbridge client: send every message (fragments of ``fragment`` bytes if set)."""
    st: dict[str, Any] = {"i": 0, "frag": 0, "got": [], "closed": False, "err": None}
    parts: list[bytes] = []

    def cb(conn: Connection | None, reason: Reason, user: Any, p: Any) -> int:
        if conn is None:
            return 0
        if reason is Reason.CLIENT_ESTABLISHED:
            st["ext"] = conn.core.extension
            conn.callback_on_writable()
        elif reason is Reason.CLIENT_WRITEABLE and st["i"] < len(msgs):
            data, binary = msgs[st["i"]]
            kind = WriteKind.BINARY if binary else WriteKind.TEXT
            if fragment is None:
                conn.write(data, kind)
                st["i"] += 1
            else:
                off = st["frag"]
                piece = data[off : off + fragment]
                last = off + fragment >= len(data)
                conn.write(piece, kind if off == 0 else WriteKind.CONTINUATION, final=last)
                st["frag"] = 0 if last else off + fragment
                if last:
                    st["i"] += 1
                else:
                    conn.callback_on_writable()
        elif reason is Reason.CLIENT_RECEIVE:
            parts.append(bytes(p))
            if conn.is_final_fragment():
                st["got"].append((b"".join(parts), conn.frame_is_binary()))
                parts.clear()
                if len(st["got"]) == len(msgs):
                    conn.close_reason(1000, "done")
                    return -1
                conn.callback_on_writable()
        elif reason is Reason.CLIENT_CONNECTION_ERROR:
            st["err"] = p
        elif reason is Reason.CLOSED:
            st["closed"] = True
        return 0

    ctx = Context([Protocol("echo", cb, deflate=deflate)], port=None, max_message_size=64 << 20)
    try:
        ctx.client_connect(ClientConnectInfo("127.0.0.1", port, "/", subprotocols=()))
        deadline = time.monotonic() + 30
        while not (st["closed"] or st["err"]):
            assert time.monotonic() < deadline, f"timed out: {len(st['got'])} echoes"
            ctx.service(50)
    finally:
        ctx.destroy()
    assert st["err"] is None, st["err"]
    return st["got"], st.get("ext")


def _messages() -> list[tuple[bytes, bool]]:
    out: list[tuple[bytes, bool]] = []
    for n in SIZES:
        out.append((str(payload("text", n, n)).encode(), False))
        out.append((bytes(payload("binary", n, n)), True))
        out.append((bytes(payload("random", n, n)), True))
    return out


def test_client_deflate_against_websockets(peer: EchoPeer) -> None:
    msgs = _messages()
    got, ext = _echo_run(peer.port, msgs, True)
    assert got == msgs
    assert isinstance(ext, PerMessageDeflate)
    assert peer.request_headers[0] == "permessage-deflate; client_max_window_bits"
    assert peer.extensions[0] and peer.extensions[0][0].name == "permessage-deflate"


def test_client_deflate_fragmented(peer: EchoPeer) -> None:
    msgs = [(str(payload("text", 300_000, 1)).encode(), False), (b"x" * 10, True)]
    msgs.append((bytes(payload("random", 100_000, 2)), True))
    got, ext = _echo_run(peer.port, msgs, True, fragment=65_536)
    assert got == msgs and isinstance(ext, PerMessageDeflate)


@pytest.mark.parametrize(
    "cfg",
    [
        {"client_no_context_takeover": True, "server_no_context_takeover": True},
        {"client_max_window_bits": 9, "server_max_window_bits": 10},
        {"level": 1, "mem_level": 9, "min_size": 100},
    ],
    ids=["nct", "bits", "level_min_size"],
)
def test_client_configured_factory(cfg: dict[str, Any]) -> None:
    p = EchoPeer(compression=None, extensions=[ServerPerMessageDeflateFactory()])
    try:
        msgs = _messages()[:15]
        got, ext = _echo_run(p.port, msgs, PerMessageDeflateFactory(**cfg))
        assert got == msgs and isinstance(ext, PerMessageDeflate)
        offer = p.request_headers[0] or ""
        for k, v in cfg.items():
            if k.endswith("takeover"):
                assert k in offer
            elif k.endswith("bits"):
                assert f"{k}={v}" in offer
    finally:
        p.stop()


def test_client_without_deflate_offers_nothing() -> None:
    p = EchoPeer(compression="deflate")
    try:
        got, ext = _echo_run(p.port, [(b"abc", False)], False)
        assert got == [(b"abc", False)] and ext is None
        assert p.request_headers == [None] and p.extensions == [[]]
    finally:
        p.stop()
