"""Cross-checks against real peers' sans-IO layers (wsproto, websockets), in memory.

Skipped when a peer library is missing, unless LWSBRIDGE_REQUIRE_PEERS=1.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from lwsbridge.core import (
    Closed,
    CloseReceived,
    DataReceived,
    Established,
    Event,
    MessageAssembler,
    Ping,
    Pong,
    Role,
    State,
    UpgradeRequest,
    WSConnection,
)

pytestmark = pytest.mark.peers

if os.environ.get("LWSBRIDGE_REQUIRE_PEERS") == "1":
    import websockets  # noqa: F401
    import wsproto
else:
    wsproto = pytest.importorskip("wsproto")
    pytest.importorskip("websockets")

from websockets.client import ClientProtocol  # noqa: E402
from websockets.frames import Close as WSClose  # noqa: E402
from websockets.frames import Opcode as WSOpcode  # noqa: E402
from websockets.server import ServerProtocol  # noqa: E402
from websockets.uri import parse_uri  # noqa: E402
from wsproto import ConnectionType  # noqa: E402
from wsproto import events as wpe  # noqa: E402


def pump_ours(ours: WSConnection) -> tuple[bytes, bool]:
    out = ours.data_to_send()
    return b"".join(out), b"" in out


def collect(ours: WSConnection, asm: MessageAssembler) -> tuple[list[Any], list[Event]]:
    msgs: list[Any] = []
    other: list[Event] = []
    for ev in ours.events():
        if isinstance(ev, DataReceived):
            m = asm.feed(ev)
            if m is not None:
                msgs.append(m.data)
        else:
            other.append(ev)
    return msgs, other


# --------------------------------------------------------------------------- wsproto


def wsproto_pair_with_our_server() -> tuple[Any, WSConnection]:
    peer = wsproto.WSConnection(ConnectionType.CLIENT)
    ours = WSConnection(Role.SERVER)
    ours.receive_data(
        peer.send(wpe.Request(host="example.com", target="/ws", subprotocols=["chat"]))
    )
    (req,) = ours.events()
    assert isinstance(req, UpgradeRequest) and req.subprotocols == ("chat",)
    ours.accept("chat")
    peer.receive_data(pump_ours(ours)[0])
    (acc,) = list(peer.events())
    assert isinstance(acc, wpe.AcceptConnection) and acc.subprotocol == "chat"
    assert isinstance(ours.events()[0], Established)
    return peer, ours


def wsproto_pair_with_our_client() -> tuple[Any, WSConnection]:
    peer = wsproto.WSConnection(ConnectionType.SERVER)
    ours = WSConnection(Role.CLIENT)
    ours.initiate("example.com", "/ws", subprotocols=["chat", "v2"])
    peer.receive_data(pump_ours(ours)[0])
    (req,) = list(peer.events())
    assert isinstance(req, wpe.Request) and req.target == "/ws"
    assert req.subprotocols == ["chat", "v2"]
    ours.receive_data(peer.send(wpe.AcceptConnection(subprotocol="v2")))
    (est,) = ours.events()
    assert isinstance(est, Established) and est.subprotocol == "v2"
    assert ours.state is State.OPEN
    return peer, ours


def wsproto_messages(peer: Any) -> tuple[list[Any], list[Any]]:
    msgs: list[Any] = []
    other: list[Any] = []
    buf: list[Any] = []
    for ev in peer.events():
        if isinstance(ev, (wpe.TextMessage, wpe.BytesMessage)):
            buf.append(ev.data)
            if ev.message_finished:
                msgs.append("".join(buf) if isinstance(ev, wpe.TextMessage) else b"".join(buf))
                buf = []
        else:
            other.append(ev)
    return msgs, other


@pytest.mark.parametrize("our_role", [Role.SERVER, Role.CLIENT])
def test_wsproto_messages_both_ways(our_role: Role) -> None:
    peer, ours = (
        wsproto_pair_with_our_server()
        if our_role is Role.SERVER
        else wsproto_pair_with_our_client()
    )
    asm = MessageAssembler()
    # peer -> ours: text, binary, fragmented text with a split character, big binary
    wire = peer.send(wpe.TextMessage("héllo"))
    wire += peer.send(wpe.BytesMessage(b"\x00\x01\xff"))
    wire += peer.send(wpe.TextMessage("ab€"[:2], message_finished=False))
    wire += peer.send(wpe.Ping(b"are you there"))
    wire += peer.send(wpe.TextMessage("€cd"))
    big = bytes(range(256)) * 300
    wire += peer.send(wpe.BytesMessage(big))
    for i in range(0, len(wire), 7):  # awkward chunking
        ours.receive_data(wire[i : i + 7])
    msgs, other = collect(ours, asm)
    assert msgs == ["héllo", b"\x00\x01\xff", "ab€cd", big]
    assert other == [Ping(b"are you there")]
    # our automatic pong reaches the peer
    peer.receive_data(pump_ours(ours)[0])
    _, pev = wsproto_messages(peer)
    assert [(type(e), e.payload) for e in pev] == [(wpe.Pong, b"are you there")]

    # ours -> peer
    ours.send_data("wörld")
    ours.send_data(b"\x10\x20")
    ours.send_data("frag", final=False)
    ours.send_data("ment", final=False)
    ours.send_data("ed")
    ours.send_data(big)
    ours.send_ping(b"ping!")
    peer.receive_data(pump_ours(ours)[0])
    pmsgs, pev = wsproto_messages(peer)
    assert pmsgs == ["wörld", b"\x10\x20", "fragmented", big]
    assert [type(e) for e in pev] == [wpe.Ping]
    ours.receive_data(peer.send(pev[0].response()))
    assert ours.events() == [Pong(b"ping!")]


@pytest.mark.parametrize("our_role", [Role.SERVER, Role.CLIENT])
def test_wsproto_peer_initiates_close(our_role: Role) -> None:
    peer, ours = (
        wsproto_pair_with_our_server()
        if our_role is Role.SERVER
        else wsproto_pair_with_our_client()
    )
    ours.receive_data(peer.send(wpe.CloseConnection(code=1001, reason="bye")))
    assert ours.events() == [CloseReceived(1001, "bye"), Closed(1001, "bye", True)]
    data, eof = pump_ours(ours)
    assert eof is (our_role is Role.SERVER)
    peer.receive_data(data)
    (ev,) = list(peer.events())
    assert isinstance(ev, wpe.CloseConnection) and ev.code == 1001
    assert peer.state.name == "CLOSED"


@pytest.mark.parametrize("our_role", [Role.SERVER, Role.CLIENT])
def test_wsproto_we_initiate_close(our_role: Role) -> None:
    peer, ours = (
        wsproto_pair_with_our_server()
        if our_role is Role.SERVER
        else wsproto_pair_with_our_client()
    )
    ours.send_close(4321, "done")
    assert ours.state is State.LOCAL_CLOSING
    peer.receive_data(pump_ours(ours)[0])
    (ev,) = list(peer.events())
    assert isinstance(ev, wpe.CloseConnection) and (ev.code, ev.reason) == (4321, "done")
    ours.receive_data(peer.send(ev.response()))
    assert ours.events() == [CloseReceived(4321, "done"), Closed(4321, "done", True)]
    assert ours.state is State.CLOSED


def test_wsproto_client_sees_our_protocol_error_close() -> None:
    peer, ours = wsproto_pair_with_our_server()
    ours.receive_data(b"\x83\x80\x00\x00\x00\x00")  # reserved opcode 3, masked, empty
    data, eof = pump_ours(ours)
    assert eof
    peer.receive_data(data)
    (ev,) = list(peer.events())
    assert isinstance(ev, wpe.CloseConnection) and ev.code == 1002


# --------------------------------------------------------------------------- websockets


def websockets_client_with_our_server() -> tuple[ClientProtocol, WSConnection]:
    peer = ClientProtocol(parse_uri("ws://example.com/path"), subprotocols=["chat"])  # type: ignore[list-item]
    ours = WSConnection(Role.SERVER)
    peer.send_request(peer.connect())
    ours.receive_data(b"".join(peer.data_to_send()))
    (req,) = ours.events()
    assert isinstance(req, UpgradeRequest) and req.target == "/path"
    ours.accept("chat")
    peer.receive_data(pump_ours(ours)[0])
    (resp,) = peer.events_received()
    assert resp.status_code == 101  # type: ignore[union-attr]
    assert peer.subprotocol == "chat"
    ours.events()
    return peer, ours


def websockets_server_with_our_client() -> tuple[ServerProtocol, WSConnection]:
    peer = ServerProtocol()
    ours = WSConnection(Role.CLIENT)
    ours.initiate("example.com", "/path")
    peer.receive_data(pump_ours(ours)[0])
    (request,) = peer.events_received()
    peer.send_response(peer.accept(request))  # type: ignore[arg-type]
    ours.receive_data(b"".join(peer.data_to_send()))
    (est,) = ours.events()
    assert isinstance(est, Established)
    return peer, ours


def websockets_messages(peer: Any) -> tuple[list[Any], list[Any]]:
    msgs: list[Any] = []
    other: list[Any] = []
    parts: list[bytes] = []
    kind = None
    for frame in peer.events_received():
        if frame.opcode in (WSOpcode.TEXT, WSOpcode.BINARY, WSOpcode.CONT):
            if frame.opcode is not WSOpcode.CONT:
                kind = frame.opcode
            parts.append(frame.data)
            if frame.fin:
                raw = b"".join(parts)
                msgs.append(raw.decode() if kind is WSOpcode.TEXT else raw)
                parts = []
        else:
            other.append(frame)
    return msgs, other


@pytest.mark.parametrize("our_role", [Role.SERVER, Role.CLIENT])
def test_websockets_round_trip_and_close(our_role: Role) -> None:
    peer: Any
    peer, ours = (
        websockets_client_with_our_server()
        if our_role is Role.SERVER
        else websockets_server_with_our_client()
    )
    asm = MessageAssembler()
    peer.send_text("hi €".encode())
    peer.send_binary(b"\x00" * 70000)
    peer.send_text(b"fr", fin=False)
    peer.send_continuation("ag €".encode()[:4], fin=False)
    peer.send_continuation("ag €".encode()[4:], fin=True)
    peer.send_ping(b"pp")
    for chunk in peer.data_to_send():
        ours.receive_data(chunk)
    msgs, other = collect(ours, asm)
    assert msgs == ["hi €", b"\x00" * 70000, "frag €"]
    assert other == [Ping(b"pp")]

    ours.send_data("back")
    ours.send_data(b"\x01" * 300, final=False)
    ours.send_data(b"\x02")
    peer.receive_data(pump_ours(ours)[0])
    pmsgs, pother = websockets_messages(peer)
    assert pmsgs == ["back", b"\x01" * 300 + b"\x02"]
    assert [f.opcode for f in pother] == [WSOpcode.PONG] and pother[0].data == b"pp"

    ours.send_close(1000, "bye")
    peer.receive_data(pump_ours(ours)[0])
    (close_frame,) = peer.events_received()
    assert close_frame.opcode is WSOpcode.CLOSE
    close = WSClose.parse(close_frame.data)
    assert (close.code, close.reason) == (1000, "bye")
    for chunk in peer.data_to_send():
        if chunk:
            ours.receive_data(chunk)
    assert ours.events()[-1] == Closed(1000, "bye", True)
