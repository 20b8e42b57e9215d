"""The extension hook (RFC 6455 §9): negotiation both roles, RSV bits, encode/decode path.

A toy extension stands in for permessage-deflate: it claims RSV1 and XORs payloads,
so any mistake in where the connection calls the hook shows in the data.
"""

from __future__ import annotations

from collections.abc import Sequence

from helpers import build_frame, client_key, parse_frames, response_101, take

from lwsbridge.core import (
    DataReceived,
    Established,
    Extension,
    ExtensionFactory,
    ExtensionOffer,
    MessageAssembler,
    Role,
    State,
    UpgradeRequest,
    WSConnection,
)
from lwsbridge.core.errors import RemoteProtocolError


class Flip(Extension):
    name = "x-flip"
    rsv_mask = 0x40

    def __init__(self) -> None:
        self.decoded = 0

    def decode(self, data: bytes, rsv: int, message_final: bool, max_size: int | None) -> bytes:
        assert rsv == 0x40
        out = bytes(b ^ 0xFF for b in data)
        self.decoded += len(out)
        if max_size is not None and len(out) > max_size:
            raise RemoteProtocolError("too big after decoding", code=1009)
        return out

    def encode(self, data: bytes, first: bool, final: bool) -> tuple[bytes, int]:
        return bytes(b ^ 0xFF for b in data), (0x40 if first else 0)


class FlipFactory(ExtensionFactory):
    name = "x-flip"

    def accept(self, offers: Sequence[ExtensionOffer]) -> Extension | None:
        return Flip() if any(o.name == self.name for o in offers) else None

    def finalize(self, response: ExtensionOffer) -> Extension:
        return Flip()


def _pair() -> tuple[WSConnection, WSConnection]:
    server = WSConnection(Role.SERVER)
    client = WSConnection(Role.CLIENT)
    client.initiate("example.com", "/", extensions=[FlipFactory()])
    for chunk in client.data_to_send():
        server.receive_data(chunk)
    (req,) = server.events()
    assert isinstance(req, UpgradeRequest)
    assert [o.name for o in req.extensions] == ["x-flip"]
    ext = FlipFactory().accept(req.extensions)
    assert ext is not None
    server.accept(extensions=[ext])
    head = b"".join(server.data_to_send())
    assert b"Sec-WebSocket-Extensions: x-flip\r\n" in head
    client.receive_data(head)
    (est,) = client.events()
    assert isinstance(est, Established)
    assert [e.name for e in est.extensions] == ["x-flip"]
    return server, client


def _deliver(src: WSConnection, dst: WSConnection) -> list[object]:
    for chunk in src.data_to_send():
        dst.receive_data(chunk)
    return list(dst.events())


def test_round_trip_through_the_hook_both_directions() -> None:
    server, client = _pair()
    client.send_data(b"hello", final=False)
    client.send_data(b" world")
    wire = b"".join(client.data_to_send())
    frames, rest = parse_frames(wire)
    assert rest == b""
    # RSV1 only on the first frame of the message (RFC 7692 §6 rule for the hook).
    assert [f.rsv for f in frames] == [0x40, 0]
    for chunk in [wire]:
        server.receive_data(chunk)
    asm = MessageAssembler()
    msgs = [asm.feed(e) for e in server.events() if isinstance(e, DataReceived)]
    assert msgs[-1] is not None and msgs[-1].data == b"hello world"
    server.send_data("text back")
    events = _deliver(server, client)
    assert [e.data for e in events if isinstance(e, DataReceived)] == [b"text back"]


def test_rsv1_without_negotiation_fails_1002() -> None:
    server = WSConnection(Role.SERVER)
    client = WSConnection(Role.CLIENT)
    client.initiate("example.com", "/")
    for chunk in client.data_to_send():
        server.receive_data(chunk)
    server.events()
    server.accept()
    server.data_to_send()
    server.receive_data(build_frame(0x2, b"x", rsv=0x40))
    out = take(server)
    assert out.frames[-1].close_code == 1002
    assert server.state is State.CLOSED


def test_rsv_bits_the_extension_does_not_claim_fail_1002() -> None:
    server, _client = _pair()
    server.receive_data(build_frame(0x2, b"x", rsv=0x20))  # RSV2
    assert take(server).frames[-1].close_code == 1002


def test_rsv1_on_a_continuation_fails_1002() -> None:
    server, _client = _pair()
    server.receive_data(build_frame(0x2, b"\x00", fin=False, rsv=0x40))
    server.receive_data(build_frame(0x0, b"\x00", rsv=0x40))
    assert take(server).frames[-1].close_code == 1002


def test_message_limit_is_passed_to_decode() -> None:
    server, _client = _pair()
    server.max_message_size = 4
    server.receive_data(build_frame(0x2, b"\x00" * 10, rsv=0x40))
    assert take(server).frames[-1].close_code == 1009


def test_server_declines_unoffered_extension_on_client() -> None:
    client = WSConnection(Role.CLIENT)
    client.initiate("example.com", "/")
    req = b"".join(client.data_to_send())
    key = client_key(req)
    client.receive_data(response_101(key, extra=["Sec-WebSocket-Extensions: x-flip"]))
    assert client.state is State.CLOSED
