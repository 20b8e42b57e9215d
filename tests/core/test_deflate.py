"""permessage-deflate (RFC 7692): negotiation, framing, bounded inflation, interop."""

from __future__ import annotations

import os
import tracemalloc
import zlib
from collections.abc import Iterator

import pytest
from helpers import build_frame, client_key, parse_frames, response_101, take
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    ServerPerMessageDeflateFactory,
)
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode as WsOpcode
from websockets.http11 import Request as WsRequest
from websockets.http11 import Response as WsResponse
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from lwsbridge.core import (
    Closed,
    ConnectionFailed,
    DataReceived,
    Established,
    Event,
    ExtensionOffer,
    HandshakeFailed,
    MessageAssembler,
    Ping,
    RemoteProtocolError,
    Role,
    State,
    UpgradeRequest,
    WSConnection,
)
from lwsbridge.core.deflate import PerMessageDeflate, PerMessageDeflateFactory
from lwsbridge.core.extensions import parse_extensions

PMD = "permessage-deflate"
TAIL = b"\x00\x00\xff\xff"


def _offer(text: str) -> tuple[ExtensionOffer, ...]:
    return parse_extensions([text.encode()])


def _pair(
    server_factory: PerMessageDeflateFactory,
    client_factory: PerMessageDeflateFactory,
    max_message_size: int = 1 << 20,
) -> tuple[WSConnection, WSConnection]:
    server = WSConnection(Role.SERVER, max_message_size=max_message_size)
    client = WSConnection(Role.CLIENT, max_message_size=max_message_size)
    client.initiate("example.com", "/", extensions=[client_factory])
    for chunk in client.data_to_send():
        server.receive_data(chunk)
    (req,) = server.events()
    assert isinstance(req, UpgradeRequest)
    ext = server_factory.accept(req.extensions)
    assert ext is not None
    server.accept(extensions=[ext])
    client.receive_data(b"".join(server.data_to_send()))
    (est,) = client.events()
    assert isinstance(est, Established), est
    assert isinstance(client.extension, PerMessageDeflate)
    assert [type(e) for e in server.events()] == [Established]
    return server, client


def _drain(conn: WSConnection) -> list[Event]:
    """Events, running forced service while the connection asks for it."""
    events = conn.events()
    while conn.pending():
        conn.process_pending()
        events += conn.events()
    return events


def _messages(events: list[Event]) -> list[bytes]:
    """Whole messages, text encoded back to UTF-8."""
    asm = MessageAssembler(0)
    out: list[bytes] = []
    for e in events:
        if isinstance(e, DataReceived):
            m = asm.feed(e)
            if m is not None:
                out.append(m.data.encode() if isinstance(m.data, str) else m.data)
    return out


def _transfer(src: WSConnection, dst: WSConnection) -> tuple[bytes, list[Event]]:
    wire = b"".join(src.data_to_send())
    dst.receive_data(wire)
    return wire, _drain(dst)


def _payloads() -> Iterator[bytes | str]:
    yield b""
    yield b"x"
    yield "héllo wörld ✓ " * 50
    yield b"abc" * 10_000
    yield os.urandom(70_000)
    yield "ünïcode " * 40_000  # > 256 KiB decoded: several decode pieces


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("server_nct", [False, True])
@pytest.mark.parametrize("client_nct", [False, True])
@pytest.mark.parametrize("bits", [8, 9, 12, 15])
def test_round_trip_both_roles(server_nct: bool, client_nct: bool, bits: int) -> None:
    factory = PerMessageDeflateFactory(
        server_no_context_takeover=server_nct,
        client_no_context_takeover=client_nct,
        server_max_window_bits=bits,
        client_max_window_bits=bits,
    )
    server, client = _pair(factory, factory, max_message_size=0)
    sext, cext = server.extension, client.extension
    assert isinstance(sext, PerMessageDeflate) and isinstance(cext, PerMessageDeflate)
    assert (sext.local_no_context_takeover, sext.remote_no_context_takeover) == (
        server_nct,
        client_nct,
    )
    assert (cext.local_no_context_takeover, cext.remote_no_context_takeover) == (
        client_nct,
        server_nct,
    )
    assert sext.local_max_window_bits == cext.remote_max_window_bits == bits
    msgs = list(_payloads()) * 2
    for a, b in ((client, server), (server, client)):
        for m in msgs:
            a.send_data(m)
        wire, events = _transfer(a, b)
        frames, rest = parse_frames(wire)
        assert rest == b""
        assert all(f.rsv == 0x40 for f in frames)
        assert _messages(events) == [m.encode() if isinstance(m, str) else m for m in msgs]
        assert not b.pending()
    # with no_context_takeover the state is gone between messages
    assert (not sext.has_compressor) == server_nct
    assert (not cext.has_decompressor) == server_nct
    assert (not cext.has_compressor) == client_nct
    assert (not sext.has_decompressor) == client_nct


def test_zlib_state_is_created_lazily() -> None:
    server, client = _pair(PerMessageDeflateFactory(), PerMessageDeflateFactory())
    sext = server.extension
    assert isinstance(sext, PerMessageDeflate)
    assert not sext.has_compressor and not sext.has_decompressor
    client.send_data(b"hi")
    _transfer(client, server)
    assert not sext.has_compressor and sext.has_decompressor


def test_context_takeover_shrinks_repeated_messages() -> None:
    msg = os.urandom(500).hex()
    sizes = {}
    for nct in (False, True):
        f = PerMessageDeflateFactory(client_no_context_takeover=nct)
        server, client = _pair(f, f)
        client.send_data(msg)
        client.send_data(msg)
        wire, events = _transfer(client, server)
        assert _messages(events) == [msg.encode()] * 2
        frames, _ = parse_frames(wire)
        sizes[nct] = [len(fr.payload) for fr in frames]
    assert sizes[False][1] < 20 < sizes[False][0]  # back-reference into the last message
    assert sizes[True][0] == sizes[True][1] > 500


def test_tail_removed_on_send_and_empty_message_is_one_byte() -> None:
    server, _client = _pair(PerMessageDeflateFactory(), PerMessageDeflateFactory())
    server.send_data(b"")
    server.send_data(b"hello hello hello")
    frames = take(server).frames
    assert frames[0].payload == b"\x00" and frames[0].rsv == 0x40  # RFC 7692 §7.2.3.6
    d = zlib.decompressobj(-15)
    assert d.decompress(frames[0].payload + TAIL) == b""
    assert not frames[1].payload.endswith(TAIL)
    assert d.decompress(frames[1].payload + TAIL) == b"hello hello hello"


def test_fragmented_with_interleaved_control_frames() -> None:
    server, client = _pair(PerMessageDeflateFactory(), PerMessageDeflateFactory())
    parts = [b"one " * 100, b"", b"two " * 100, b"three"]
    for i, p in enumerate(parts):
        client.send_data(p, final=i == len(parts) - 1)
        if i == 1:
            client.send_ping(b"p")
    wire, events = _transfer(client, server)
    frames, _ = parse_frames(wire)
    assert [(f.opcode, f.rsv, f.fin) for f in frames] == [
        (2, 0x40, False),
        (0, 0, False),
        (9, 0, True),
        (0, 0, False),
        (0, 0, True),
    ]
    assert [type(e).__name__ for e in events].count("Ping") == 1
    assert _messages(events) == [b"".join(parts)]


def test_fragments_received_byte_by_byte() -> None:
    server, client = _pair(PerMessageDeflateFactory(), PerMessageDeflateFactory())
    client.send_data("αβγ " * 300, final=False)
    client.send_data("δεζ " * 300)
    wire = b"".join(client.data_to_send())
    events: list[Event] = []
    for i in range(len(wire)):
        server.receive_data(wire[i : i + 1])
        events += _drain(server)
    assert _messages(events) == [("αβγ " * 300 + "δεζ " * 300).encode()]
    assert all(e.data or e.is_first or e.is_final for e in events if isinstance(e, DataReceived))


def test_min_size_sends_small_messages_uncompressed() -> None:
    f = PerMessageDeflateFactory(min_size=64)
    server, client = _pair(f, f)
    client.send_data(b"a" * 63)
    client.send_data(b"a" * 64)
    client.send_data(b"a" * 10, final=False)  # fragmented: compressed, size unknown
    client.send_data(b"b" * 10)
    wire, events = _transfer(client, server)
    frames, _ = parse_frames(wire)
    assert [f.rsv for f in frames] == [0, 0x40, 0x40, 0]
    assert frames[0].payload == b"a" * 63
    assert _messages(events) == [b"a" * 63, b"a" * 64, b"a" * 10 + b"b" * 10]


def test_bfinal_block_from_peer_is_accepted() -> None:
    server, _client = _pair(PerMessageDeflateFactory(), PerMessageDeflateFactory())
    for text in (b"first message", b"second message"):
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        payload = c.compress(text) + c.flush(zlib.Z_FINISH)
        server.receive_data(build_frame(0x2, payload, rsv=0x40))
        assert _messages(_drain(server)) == [text]
    assert server.state is State.OPEN


def test_data_after_bfinal_fails_1002() -> None:
    server, _client = _pair(PerMessageDeflateFactory(), PerMessageDeflateFactory())
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    payload = c.compress(b"x") + c.flush(zlib.Z_FINISH) + b"garbage"
    server.receive_data(build_frame(0x2, payload, rsv=0x40))
    assert take(server).frames[-1].close_code == 1002


def test_corrupt_data_fails_1007() -> None:
    server, _client = _pair(PerMessageDeflateFactory(), PerMessageDeflateFactory())
    server.receive_data(build_frame(0x2, b"\xff\xff\xff\xff", rsv=0x40))
    assert take(server).frames[-1].close_code == 1007
    assert server.state is State.CLOSED


def test_invalid_utf8_after_inflating_fails_1007() -> None:
    server, _client = _pair(PerMessageDeflateFactory(), PerMessageDeflateFactory())
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    payload = (c.compress(b"ok \xff") + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
    server.receive_data(build_frame(0x1, payload, rsv=0x40))
    assert take(server).frames[-1].close_code == 1007


def test_rsv1_on_continuation_still_fails_1002() -> None:
    server, client = _pair(PerMessageDeflateFactory(), PerMessageDeflateFactory())
    client.send_data(b"abc", final=False)
    server.receive_data(b"".join(client.data_to_send()))
    server.receive_data(build_frame(0x0, b"\x00", rsv=0x40))
    assert take(server).frames[-1].close_code == 1002


# ---------------------------------------------------------------- held output


def test_output_over_chunk_size_is_held_and_delivered_by_process_pending() -> None:
    sf = PerMessageDeflateFactory(chunk_size=1000)
    server, client = _pair(sf, PerMessageDeflateFactory())
    text = "0123456789ü" * 1000  # 12 000 bytes of UTF-8; splits fall mid-character
    client.send_data(text)
    client.send_ping(b"after")
    client.send_data(b"next")
    server.receive_data(b"".join(client.data_to_send()))
    first = server.events()
    assert len(first) == 1 and isinstance(first[0], DataReceived)
    assert len(first[0].data) == 1000 and first[0].is_first and not first[0].is_final
    assert server.pending()
    rest: list[Event] = []
    services = 0
    while server.pending():
        server.process_pending()
        services += 1
        ev = server.events()
        assert len([e for e in ev if isinstance(e, DataReceived)]) <= 2
        rest += ev
    assert services == 12
    events = first + rest
    # the ping and the next message come after the held message, in order
    kinds = [type(e).__name__ for e in events]
    assert kinds.index("Ping") > max(
        i for i, e in enumerate(events) if isinstance(e, DataReceived) and e.data[:1] == b"0"
    )
    assert _messages(events) == [text.encode(), b"next"]
    assert all(isinstance(e, Ping) for e in events if not isinstance(e, DataReceived))
    server.process_pending()  # nothing held: no-op
    assert server.events() == []


def test_input_waits_while_output_is_held() -> None:
    sf = PerMessageDeflateFactory(chunk_size=100)
    server, client = _pair(sf, PerMessageDeflateFactory())
    client.send_data(b"z" * 1000)
    server.receive_data(b"".join(client.data_to_send()))
    assert server.pending()
    client.send_data(b"later")
    server.receive_data(b"".join(client.data_to_send()))  # buffered, not parsed
    evs = server.events()
    assert all(e.data != b"later" for e in evs if isinstance(e, DataReceived))
    assert _messages(evs + _drain(server)) == [b"z" * 1000, b"later"]


def test_pending_is_false_after_the_connection_closes() -> None:
    sf = PerMessageDeflateFactory(chunk_size=100)
    server, client = _pair(sf, PerMessageDeflateFactory())
    client.send_data(b"z" * 1000)
    server.receive_data(b"".join(client.data_to_send()))
    assert server.pending()
    server.abort()
    assert not server.pending()
    server.process_pending()


# ---------------------------------------------------------------- bombs


def _bomb(size: int) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return (c.compress(bytes(size)) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]


@pytest.mark.parametrize("chunk_size", [256 * 1024, 8 << 20])
def test_decompression_bomb_closes_1009_with_bounded_memory(chunk_size: int) -> None:
    frame = build_frame(0x2, _bomb(16 << 20), rsv=0x40)
    assert len(frame) < 32 * 1024
    server, _client = _pair(
        PerMessageDeflateFactory(chunk_size=chunk_size),
        PerMessageDeflateFactory(),
        max_message_size=1 << 20,
    )
    tracemalloc.start()
    try:
        server.receive_data(frame)
        delivered = 0
        events: list[Event] = []
        for _ in range(100):
            for e in server.events():
                if isinstance(e, DataReceived):
                    delivered += len(e.data)  # the application consumes the data
                else:
                    events.append(e)
            if not server.pending():
                break
            server.process_pending()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert delivered <= 1 << 20
    assert any(isinstance(e, ConnectionFailed) and e.code == 1009 for e in events)
    assert any(isinstance(e, Closed) and e.code == 1009 for e in events)
    assert take(server).frames[-1].close_code == 1009
    assert peak < 4 << 20, peak


def test_message_exactly_at_the_limit_passes() -> None:
    server, client = _pair(
        PerMessageDeflateFactory(chunk_size=1000),
        PerMessageDeflateFactory(),
        max_message_size=5000,
    )
    client.send_data(b"q" * 5000)
    _, events = _transfer(client, server)
    assert _messages(events) == [b"q" * 5000]
    client.send_data(b"q" * 5001)
    _, events = _transfer(client, server)
    assert any(isinstance(e, ConnectionFailed) and e.code == 1009 for e in events)


def test_compressed_size_is_not_the_limit() -> None:
    # 1000 bytes on the wire may inflate to the whole allowance but not beyond it
    server, client = _pair(
        PerMessageDeflateFactory(), PerMessageDeflateFactory(), max_message_size=100_000
    )
    client.send_data(b"\x00" * 100_000)
    wire, events = _transfer(client, server)
    assert len(wire) < 1000
    assert _messages(events) == [b"\x00" * 100_000]


# ---------------------------------------------------------------- window bits 8


# A quarter of the profile's examples (tests/conftest.py): 50 in CI, more in ``long``.
@settings(max_examples=settings.default.max_examples // 4)
@given(st.lists(st.binary(min_size=0, max_size=600), min_size=1, max_size=8))
def test_window_8_output_inflates_with_an_8_bit_window(msgs: list[bytes]) -> None:
    """We compress with 9 bits when 8 is negotiated: zlib's MAX_DIST keeps distances ≤ 250."""
    ext = PerMessageDeflate(local_max_window_bits=8)
    d = zlib.decompressobj(-8)
    for m in msgs:
        data = (m * 3)[:1500]  # repetitive: many back-references
        payload, rsv = ext.encode(data, True, True)
        assert rsv == 0x40
        assert d.decompress(payload + TAIL) == data


def test_window_8_negotiated_with_websockets_peer() -> None:
    """websockets' client offers server_max_window_bits=8 and inflates with wbits=-8."""
    ws = _ws_client(
        ClientPerMessageDeflateFactory(server_max_window_bits=8, client_max_window_bits=9)
    )
    server = _our_server_with(ws, PerMessageDeflateFactory())
    ext = server.extension
    assert isinstance(ext, PerMessageDeflate) and ext.local_max_window_bits == 8
    msgs: list[str | bytes] = [(b"%d abcdefgh " % i) * 200 for i in range(20)]
    assert _ours_to_ws(server, ws, msgs) == msgs


# ---------------------------------------------------------------- negotiation: server


@pytest.mark.parametrize(
    ("config", "offer", "response"),
    [
        ({}, PMD, PMD),
        ({}, f"{PMD}; client_max_window_bits", PMD),
        ({}, f"{PMD}; client_max_window_bits=10", f"{PMD}; client_max_window_bits=10"),
        ({}, f"{PMD}; server_max_window_bits=9", f"{PMD}; server_max_window_bits=9"),
        ({}, f"{PMD}; server_max_window_bits=8", f"{PMD}; server_max_window_bits=8"),
        ({}, f"{PMD}; server_no_context_takeover", f"{PMD}; server_no_context_takeover"),
        ({}, f"{PMD}; client_no_context_takeover", f"{PMD}; client_no_context_takeover"),
        (
            {"server_no_context_takeover": True, "client_no_context_takeover": True},
            PMD,
            f"{PMD}; server_no_context_takeover; client_no_context_takeover",
        ),
        ({"server_max_window_bits": 10}, PMD, f"{PMD}; server_max_window_bits=10"),
        (
            {"server_max_window_bits": 10},
            f"{PMD}; server_max_window_bits=12",
            f"{PMD}; server_max_window_bits=10",
        ),
        (
            {"server_max_window_bits": 10},
            f"{PMD}; server_max_window_bits=9",
            f"{PMD}; server_max_window_bits=9",
        ),
        (
            {"client_max_window_bits": 11},
            f"{PMD}; client_max_window_bits",
            f"{PMD}; client_max_window_bits=11",
        ),
        (
            {"client_max_window_bits": 11},
            f"{PMD}; client_max_window_bits=13",
            f"{PMD}; client_max_window_bits=11",
        ),
        (
            {"client_max_window_bits": 11},
            f"{PMD}; client_max_window_bits=9",
            f"{PMD}; client_max_window_bits=9",
        ),
        ({"client_max_window_bits": 11}, PMD, None),  # client cannot honour the limit
        # invalid offers are declined
        ({}, f"{PMD}; foo", None),
        ({}, f"{PMD}; server_no_context_takeover; server_no_context_takeover", None),
        ({}, f"{PMD}; client_max_window_bits=10; client_max_window_bits=10", None),
        ({}, f"{PMD}; server_no_context_takeover=1", None),
        ({}, f"{PMD}; client_no_context_takeover=x", None),
        ({}, f"{PMD}; server_max_window_bits", None),
        ({}, f"{PMD}; server_max_window_bits=7", None),
        ({}, f"{PMD}; server_max_window_bits=16", None),
        ({}, f"{PMD}; server_max_window_bits=010", None),
        ({}, f"{PMD}; client_max_window_bits=abc", None),
        ({}, f'{PMD}; client_max_window_bits="10"', f"{PMD}; client_max_window_bits=10"),
        ({}, "x-other", None),
        # the first acceptable offer wins; invalid ones are skipped
        (
            {},
            f"{PMD}; bogus, {PMD}; server_max_window_bits=11, {PMD}",
            f"{PMD}; server_max_window_bits=11",
        ),
        (
            {"client_max_window_bits": 10},
            f"{PMD}, {PMD}; client_max_window_bits",
            f"{PMD}; client_max_window_bits=10",
        ),
    ],
)
def test_server_negotiation(config: dict[str, int], offer: str, response: str | None) -> None:
    ext = PerMessageDeflateFactory(**config).accept(_offer(offer))  # type: ignore[arg-type]
    if response is None:
        assert ext is None
    else:
        assert ext is not None
        assert ext.response() == _offer(response)[0]


def test_server_accepted_values_reach_the_extension() -> None:
    f = PerMessageDeflateFactory(server_max_window_bits=11, client_max_window_bits=10)
    ext = f.accept(
        _offer(
            f"{PMD}; client_no_context_takeover; client_max_window_bits=12; "
            "server_max_window_bits=13"
        )
    )
    assert ext is not None
    assert ext.local_max_window_bits == 11 and ext.remote_max_window_bits == 10
    assert ext.remote_no_context_takeover and not ext.local_no_context_takeover


# ---------------------------------------------------------------- negotiation: client


@pytest.mark.parametrize(
    ("config", "offer"),
    [
        ({}, f"{PMD}; client_max_window_bits"),
        (
            {
                "server_no_context_takeover": True,
                "client_no_context_takeover": True,
                "server_max_window_bits": 10,
                "client_max_window_bits": 9,
            },
            f"{PMD}; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=10; client_max_window_bits=9",
        ),
    ],
)
def test_client_offer(config: dict[str, int], offer: str) -> None:
    assert PerMessageDeflateFactory(**config).offer() == _offer(offer)[0]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("config", "response", "expected"),
    [
        # expected: (local nct, remote nct, local bits, remote bits)
        ({}, PMD, (False, False, 15, 15)),
        ({}, f"{PMD}; server_no_context_takeover", (False, True, 15, 15)),
        ({}, f"{PMD}; client_no_context_takeover", (True, False, 15, 15)),
        ({}, f"{PMD}; server_max_window_bits=9", (False, False, 15, 9)),
        ({}, f"{PMD}; client_max_window_bits=8", (False, False, 8, 15)),
        ({"client_max_window_bits": 12}, PMD, (False, False, 12, 15)),
        (
            {"client_max_window_bits": 12},
            f"{PMD}; client_max_window_bits=10",
            (False, False, 10, 15),
        ),
        (
            {"server_max_window_bits": 12},
            f"{PMD}; server_max_window_bits=12",
            (False, False, 15, 12),
        ),
        ({"client_no_context_takeover": True}, PMD, (True, False, 15, 15)),
        (
            {"server_no_context_takeover": True},
            f"{PMD}; server_no_context_takeover",
            (False, True, 15, 15),
        ),
    ],
)
def test_client_finalize(
    config: dict[str, int], response: str, expected: tuple[bool, bool, int, int]
) -> None:
    ext = PerMessageDeflateFactory(**config).finalize(_offer(response)[0])  # type: ignore[arg-type]
    got = (
        ext.local_no_context_takeover,
        ext.remote_no_context_takeover,
        ext.local_max_window_bits,
        ext.remote_max_window_bits,
    )
    assert got == expected


@pytest.mark.parametrize(
    ("config", "response"),
    [
        ({}, f"{PMD}; foo"),
        ({}, f"{PMD}; client_max_window_bits"),  # a response needs a value
        ({}, f"{PMD}; server_max_window_bits"),
        ({}, f"{PMD}; server_max_window_bits=7"),
        ({}, f"{PMD}; client_max_window_bits=16"),
        ({}, f"{PMD}; server_no_context_takeover=1"),
        ({}, f"{PMD}; server_no_context_takeover; server_no_context_takeover"),
        ({"server_no_context_takeover": True}, PMD),
        ({"server_max_window_bits": 10}, PMD),
        ({"server_max_window_bits": 10}, f"{PMD}; server_max_window_bits=11"),
        ({"client_max_window_bits": 10}, f"{PMD}; client_max_window_bits=11"),
        ({}, "x-other"),
    ],
)
def test_client_finalize_rejects(config: dict[str, int], response: str) -> None:
    f = PerMessageDeflateFactory(**config)  # type: ignore[arg-type]
    with pytest.raises(RemoteProtocolError):
        f.finalize(_offer(response)[0])


def test_invalid_response_fails_the_handshake() -> None:
    client = WSConnection(Role.CLIENT)
    client.initiate("example.com", "/", extensions=[PerMessageDeflateFactory()])
    key = client_key(b"".join(client.data_to_send()))
    client.receive_data(
        response_101(key, extra=[f"Sec-WebSocket-Extensions: {PMD}; server_max_window_bits=20"])
    )
    events = client.events()
    assert isinstance(events[0], HandshakeFailed)
    assert client.state is State.CLOSED


@pytest.mark.parametrize(
    "kwargs",
    [
        {"server_max_window_bits": 7},
        {"client_max_window_bits": 16},
        {"level": 10},
        {"mem_level": 0},
        {"min_size": -1},
        {"chunk_size": 0},
    ],
)
def test_factory_rejects_bad_configuration(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        PerMessageDeflateFactory(**kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------- property


# A fifth of the profile's examples (tests/conftest.py): 40 in CI, more in ``long``.
@settings(max_examples=settings.default.max_examples // 5)
@given(
    msgs=st.lists(st.tuples(st.binary(max_size=3000), st.integers(1, 4)), min_size=1, max_size=6),
    nct=st.booleans(),
    bits=st.integers(8, 15),
    chunk=st.integers(1, 4096),
    split=st.integers(1, 500),
)
def test_property_round_trip(
    msgs: list[tuple[bytes, int]], nct: bool, bits: int, chunk: int, split: int
) -> None:
    f = PerMessageDeflateFactory(
        client_no_context_takeover=nct, client_max_window_bits=bits, chunk_size=chunk
    )
    server, client = _pair(f, f, max_message_size=0)
    for data, nfrag in msgs:
        step = max(1, len(data) // nfrag)
        pieces = [data[i : i + step] for i in range(0, len(data), step)] or [b""]
        for i, p in enumerate(pieces):
            client.send_data(p, final=i == len(pieces) - 1)
    wire = b"".join(client.data_to_send())
    events: list[Event] = []
    for i in range(0, len(wire), split):
        server.receive_data(wire[i : i + split])
        events += _drain(server)
    assert _messages(events) == [d for d, _ in msgs]
    assert all(len(e.data) <= chunk for e in events if isinstance(e, DataReceived))


# ---------------------------------------------------------------- interop: websockets


def _ws_client(factory: ClientPerMessageDeflateFactory) -> ClientProtocol:
    ws = ClientProtocol(parse_uri("ws://example.com/"), extensions=[factory], max_size=None)
    ws.send_request(ws.connect())
    return ws


def _our_server_with(ws: ClientProtocol, factory: PerMessageDeflateFactory) -> WSConnection:
    server = WSConnection(Role.SERVER, max_message_size=0)
    for chunk in ws.data_to_send():
        server.receive_data(chunk)
    (req,) = server.events()
    assert isinstance(req, UpgradeRequest)
    ext = factory.accept(req.extensions)
    assert ext is not None
    server.accept(extensions=[ext])
    for chunk in server.data_to_send():
        ws.receive_data(chunk)
    (resp,) = ws.events_received()
    assert isinstance(resp, WsResponse)
    assert ws.handshake_exc is None, ws.handshake_exc
    assert resp.headers["Sec-WebSocket-Extensions"].startswith(PMD)
    return server


def _ours_to_ws(
    ours: WSConnection, ws: ClientProtocol | ServerProtocol, msgs: list[str | bytes]
) -> list[str | bytes]:
    for m in msgs:
        ours.send_data(m)
    for chunk in ours.data_to_send():
        ws.receive_data(chunk)
    got: list[str | bytes] = []
    for ev in ws.events_received():
        assert isinstance(ev, WsFrame), ev
        assert ev.fin
        got.append(bytes(ev.data).decode() if ev.opcode is WsOpcode.TEXT else bytes(ev.data))
    return got


def _ws_to_ours(
    ws: ClientProtocol | ServerProtocol, ours: WSConnection, msgs: list[str | bytes]
) -> list[bytes]:
    for m in msgs:
        if isinstance(m, str):
            ws.send_text(m.encode())
        else:
            ws.send_binary(m)
    for chunk in ws.data_to_send():
        ours.receive_data(chunk)
    events = _drain(ours)
    assert not any(isinstance(e, ConnectionFailed) for e in events), events
    return _messages(events)


def _interop_msgs() -> list[str | bytes]:
    return [
        "",
        "hi",
        "héllo ✓ " * 300,
        b"",
        b"\x00\x01\x02",
        os.urandom(5000),
        b"pattern " * 40_000,  # 320 KB: several decode pieces on our side
        "text " * 30_000,
    ] * 2


@pytest.mark.parametrize("nct", [False, True])
@pytest.mark.parametrize("bits", range(9, 16))
def test_interop_our_server_websockets_client(nct: bool, bits: int) -> None:
    ws = _ws_client(
        ClientPerMessageDeflateFactory(
            server_no_context_takeover=nct,
            client_no_context_takeover=nct,
            server_max_window_bits=bits,
            client_max_window_bits=bits,
        )
    )
    server = _our_server_with(ws, PerMessageDeflateFactory())
    ext = server.extension
    assert isinstance(ext, PerMessageDeflate)
    assert ext.local_max_window_bits == ext.remote_max_window_bits == bits
    assert ext.local_no_context_takeover == ext.remote_no_context_takeover == nct
    msgs = _interop_msgs()
    assert _ws_to_ours(ws, server, msgs) == [m.encode() if isinstance(m, str) else m for m in msgs]
    assert _ours_to_ws(server, ws, msgs) == msgs


@pytest.mark.parametrize("nct", [False, True])
@pytest.mark.parametrize("bits", range(9, 16))
def test_interop_our_client_websockets_server(nct: bool, bits: int) -> None:
    ws = ServerProtocol(
        extensions=[
            ServerPerMessageDeflateFactory(
                server_no_context_takeover=nct,
                client_no_context_takeover=nct,
                server_max_window_bits=bits,
                client_max_window_bits=bits,
            )
        ],
        max_size=None,
    )
    client = WSConnection(Role.CLIENT, max_message_size=0)
    client.initiate("example.com", "/", extensions=[PerMessageDeflateFactory()])
    for chunk in client.data_to_send():
        ws.receive_data(chunk)
    (req,) = ws.events_received()
    assert isinstance(req, WsRequest)
    ws.send_response(ws.accept(req))
    for chunk in ws.data_to_send():
        client.receive_data(chunk)
    (est,) = client.events()
    assert isinstance(est, Established), est
    ext = client.extension
    assert isinstance(ext, PerMessageDeflate)
    assert ext.local_max_window_bits == ext.remote_max_window_bits == bits
    assert ext.local_no_context_takeover == ext.remote_no_context_takeover == nct
    msgs = _interop_msgs()
    assert _ws_to_ours(ws, client, msgs) == [m.encode() if isinstance(m, str) else m for m in msgs]
    assert _ours_to_ws(client, ws, msgs) == msgs


def test_interop_fragmented_messages_with_websockets() -> None:
    ws = _ws_client(ClientPerMessageDeflateFactory())
    server = _our_server_with(ws, PerMessageDeflateFactory())
    server.send_data("part one ", final=False)
    server.send_ping(b"x")
    server.send_data("part two ", final=False)
    server.send_data("end")
    for chunk in server.data_to_send():
        ws.receive_data(chunk)
    frames = [f for f in ws.events_received() if isinstance(f, WsFrame)]
    data = b"".join(bytes(f.data) for f in frames if f.opcode is not WsOpcode.PING)
    assert data == b"part one part two end"
    # and websockets' fragments to us
    ws.send_text(b"a" * 100, fin=False)
    ws.send_continuation(b"b" * 100, fin=False)
    ws.send_continuation(b"c" * 100, fin=True)
    for chunk in ws.data_to_send():
        server.receive_data(chunk)
    assert _messages(_drain(server)) == [b"a" * 100 + b"b" * 100 + b"c" * 100]


@pytest.mark.parametrize("pieces", [1, 2, 3])
def test_bfinal_ending_on_a_piece_boundary_in_a_non_final_frame(pieces: int) -> None:
    """The peer's deflate stream ends (BFINAL) exactly when the decoded output fills
    ``chunk_size`` pieces, in a frame that is not the message's last (found by the
    long fuzz run).  The extension used to keep saying "more output held" with none
    left, so the connection stayed in forced service with nothing to deliver and its
    input unread: a busy loop that never ended and a stalled connection."""
    server, _client = _pair(PerMessageDeflateFactory(), PerMessageDeflateFactory())
    ext = server.extension
    assert isinstance(ext, PerMessageDeflate)
    text = bytes(range(256)) * (ext.chunk_size * pieces // 256)
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    payload = c.compress(text) + c.flush(zlib.Z_FINISH)
    server.receive_data(build_frame(0x2, payload, fin=False, rsv=0x40))
    server.receive_data(build_frame(0x0, b"", fin=True))
    server.receive_data(build_frame(0x9, b"still reading"))
    events = server.events()
    for _ in range(4 * pieces + 4):  # bounded: one piece per forced service
        if not server.pending():
            break
        server.process_pending()
        events += server.events()
    assert not server.pending()
    assert _messages(events) == [text]
    assert any(isinstance(e, Ping) for e in events), "input after the message was not read"
    assert server.state is State.OPEN
