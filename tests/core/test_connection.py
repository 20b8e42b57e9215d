"""WSConnection in the OPEN state and beyond, both roles: frames, errors, closing, misuse.

Close codes we send are read back with the independent parser in ``helpers``.
"""

from __future__ import annotations

import struct

import pytest
from helpers import (
    Output,
    build_frame,
    of_type,
    open_client,
    open_conn,
    open_server,
    peer_frame,
    take,
    upgrade_request,
)

from lwsbridge.core import (
    Closed,
    CloseReceived,
    ConnectionFailed,
    DataReceived,
    Event,
    LocalProtocolError,
    Ping,
    Pong,
    Role,
    State,
    WSConnection,
)

ROLES = [Role.SERVER, Role.CLIENT]
role_param = pytest.mark.parametrize("role", ROLES, ids=["server", "client"])


def check_frames_masking(role: Role, out: Output) -> None:
    for f in out.frames:
        assert f.masked is (role is Role.CLIENT)


def assert_failed(conn: WSConnection, code: int) -> list[Event]:
    """The connection failed with ``code``: one close frame carrying it, then b"" EOF,
    then ConnectionFailed + exactly one Closed."""
    out = take(conn)
    assert out.ends_with_eof, out.chunks
    assert out.chunks.count(b"") == 1
    check_frames_masking(conn.role, out)
    closes = [f for f in out.frames if f.opcode == 8]
    assert len(closes) == 1 and closes[0].close_code == code
    assert out.frames[-1].opcode == 8  # nothing after our close frame
    events = conn.events()
    (failed,) = of_type(events, ConnectionFailed)
    assert failed.code == code and failed.reason  # type: ignore[attr-defined]
    (closed,) = of_type(events, Closed)
    assert events[-1] is closed
    assert closed == Closed(code, failed.reason, False)  # type: ignore[attr-defined]
    assert conn.state is State.CLOSED and conn.closed
    # Closed exactly once, whatever happens next.
    conn.receive_data(b"\x88\x80" + b"\x00" * 20)
    conn.receive_eof()
    conn.abort()
    assert conn.events() == [] and take(conn).chunks == []
    return events


def data_events(conn: WSConnection) -> list[DataReceived]:
    return [e for e in conn.events() if isinstance(e, DataReceived)]


# --------------------------------------------------------------------------- receiving data


@role_param
@pytest.mark.parametrize(
    ("opcode", "payload"),
    [(0x1, "héllo wörld €𝄞".encode()), (0x2, bytes(range(256))), (0x1, b""), (0x2, b"")],
)
def test_single_frame_messages(role: Role, opcode: int, payload: bytes) -> None:
    conn = open_conn(role)
    conn.receive_data(peer_frame(role, opcode, payload))
    assert conn.events() == [DataReceived(payload, opcode == 2, True, True, 0, True)]
    assert take(conn).chunks == []


@role_param
@pytest.mark.parametrize("n", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_payload_length_forms(role: Role, n: int) -> None:
    conn = open_conn(role)
    payload = bytes(i % 251 for i in range(n))
    conn.receive_data(peer_frame(role, 0x2, payload))
    events = data_events(conn)
    assert b"".join(e.data for e in events) == payload
    assert events[-1].is_final and events[0].is_first


@role_param
@pytest.mark.parametrize("form", [16, 64])
@pytest.mark.parametrize("opcode", [0x1, 0x2, 0x9, 0xA])
def test_non_minimal_length_accepted(role: Role, form: int, opcode: int) -> None:
    conn = open_conn(role)
    conn.receive_data(peer_frame(role, opcode, b"hello", length_form=form))
    (ev,) = conn.events()
    assert getattr(ev, "data", getattr(ev, "payload", None)) == b"hello"
    if form == 16:  # a non-minimal close is fine too
        conn.receive_data(peer_frame(role, 0x8, struct.pack("!H", 1000), length_form=form))
        assert isinstance(conn.events()[0], CloseReceived)


@role_param
def test_fragmented_message_partial_delivery(role: Role) -> None:
    conn = open_conn(role)
    data = (
        peer_frame(role, 0x1, b"abc", fin=False)
        + peer_frame(role, 0x9, b"p")
        + peer_frame(role, 0x0, b"", fin=False)  # empty middle fragment: no event
        + peer_frame(role, 0x0, b"defg", fin=False)
        + peer_frame(role, 0x0, b"hi")
    )
    conn.receive_data(data)  # several frames in one call: all handled
    events = conn.events()
    assert events == [
        DataReceived(b"abc", False, True, False, 0, False),
        Ping(b"p"),
        DataReceived(b"defg", False, False, False, 0, False),
        DataReceived(b"hi", False, False, True, 0, True),
    ]
    pongs = [f for f in take(conn).frames if f.opcode == 0xA]
    assert [p.payload for p in pongs] == [b"p"]


@role_param
def test_half_a_frame_is_delivered_at_once(role: Role) -> None:
    conn = open_conn(role)
    payload = bytes(range(200)) * 5  # 1000 bytes, 16-bit length
    frame = peer_frame(role, 0x2, payload)
    header_len = len(frame) - len(payload)
    conn.receive_data(frame[: header_len + 400])
    assert conn.events() == [DataReceived(payload[:400], True, True, False, 600, True)]
    conn.receive_data(frame[header_len + 400 : header_len + 401])
    assert conn.events() == [DataReceived(payload[400:401], True, False, False, 599, True)]
    conn.receive_data(frame[header_len + 401 :] + peer_frame(role, 0x2, b"next"))
    assert conn.events() == [
        DataReceived(payload[401:], True, False, True, 0, True),
        DataReceived(b"next", True, True, True, 0, True),
    ]


@role_param
def test_payload_pieces_from_views_unmasked_straight(role: Role) -> None:
    # Payload of the frame in progress skips the receive buffer (receive_data's fast
    # path): odd piece sizes rotate the mask, a memoryview of a reused buffer is copied
    # out, a UTF-8 character split across pieces is still checked, and what follows
    # the payload in the same piece is parsed as frames.
    conn = open_conn(role)
    payload = "€uro ".encode() * 20000  # 140000 bytes, 64-bit length
    frame = peer_frame(role, 0x1, payload)
    hlen = len(frame) - len(payload)
    assert conn.payload_remaining == 0
    conn.receive_data(frame[: hlen + 1])
    assert conn.payload_remaining == len(payload) - 1
    scratch = bytearray(70001)
    got = [e.data for e in data_events(conn)]
    pos = hlen + 1
    for size in (7, 1, 70001, 3):
        scratch[:size] = frame[pos : pos + size]
        conn.receive_data(memoryview(scratch)[:size])
        scratch[:size] = b"\xff" * size  # the core kept no view of the buffer
        got += [e.data for e in data_events(conn)]
        pos += size
    assert conn.payload_remaining == len(frame) - pos
    conn.receive_data(frame[pos:] + peer_frame(role, 0x2, b"next") + peer_frame(role, 0x9, b""))
    events = conn.events()
    assert conn.payload_remaining == 0
    assert events[-2:] == [DataReceived(b"next", True, True, True, 0, True), Ping(b"")]
    got += [e.data for e in events[:-2] if isinstance(e, DataReceived)]
    assert b"".join(got) == payload
    assert isinstance(events[-3], DataReceived) and events[-3].is_final


@role_param
def test_bad_utf8_in_payload_piece_fails_1007(role: Role) -> None:
    conn = open_conn(role)
    payload = b"a" * 70000 + b"\xff" + b"a" * 100
    frame = peer_frame(role, 0x1, payload)
    hlen = len(frame) - len(payload)
    conn.receive_data(frame[: hlen + 10])
    assert conn.payload_remaining
    conn.receive_data(frame[hlen + 10 :])
    assert_failed(conn, 1007)


@role_param
def test_header_only_gives_nothing_and_bytewise_reassembles(role: Role) -> None:
    conn = open_conn(role)
    payload = b"The quick brown fox " * 10
    frame = peer_frame(role, 0x1, payload, fin=False) + peer_frame(role, 0x0, b"!")
    pieces: list[DataReceived] = []
    for i in range(len(frame)):
        conn.receive_data(frame[i : i + 1])
        pieces += data_events(conn)
    assert b"".join(p.data for p in pieces) == payload + b"!"
    assert pieces[0].is_first and not any(p.is_first for p in pieces[1:])
    assert pieces[-1].is_final and not any(p.is_final for p in pieces[:-1])
    assert [p.remaining for p in pieces[: len(payload)]] == list(range(len(payload) - 1, -1, -1))
    assert all(not p.is_binary for p in pieces)


@role_param
def test_empty_first_fragment(role: Role) -> None:
    conn = open_conn(role)
    conn.receive_data(peer_frame(role, 0x2, b"", fin=False) + peer_frame(role, 0x0, b"x"))
    assert conn.events() == [
        DataReceived(b"", True, True, False, 0, False),
        DataReceived(b"x", True, False, True, 0, True),
    ]


# --------------------------------------------------------------------------- control frames


@role_param
@pytest.mark.parametrize("payload", [b"", b"ping!", bytes(range(125))])
def test_ping_gets_pong_with_same_payload(role: Role, payload: bytes) -> None:
    conn = open_conn(role)
    conn.receive_data(peer_frame(role, 0x9, payload))
    assert conn.events() == [Ping(payload)]
    out = take(conn)
    check_frames_masking(role, out)
    (pong,) = out.frames
    assert (pong.opcode, pong.fin, pong.payload) == (0xA, True, payload)


@role_param
def test_auto_pong_off(role: Role) -> None:
    conn = open_conn(role, auto_pong=False)
    conn.receive_data(peer_frame(role, 0x9, b"x"))
    assert conn.events() == [Ping(b"x")]
    assert take(conn).chunks == []
    conn.send_pong(b"x")
    (pong,) = take(conn).frames
    assert (pong.opcode, pong.payload) == (0xA, b"x")


@role_param
def test_pong_event(role: Role) -> None:
    conn = open_conn(role)
    conn.receive_data(peer_frame(role, 0xA, b"unsolicited"))
    assert conn.events() == [Pong(b"unsolicited")]
    assert take(conn).chunks == []


@role_param
def test_control_frame_split_is_held_until_whole(role: Role) -> None:
    conn = open_conn(role)
    frame = peer_frame(role, 0x9, b"0123456789")
    conn.receive_data(frame[:-3])
    assert conn.events() == [] and take(conn).chunks == []
    conn.receive_data(frame[-3:])
    assert conn.events() == [Ping(b"0123456789")]


# --------------------------------------------------------------------------- protocol errors


def reserved(op: int):  # type: ignore[no-untyped-def]
    return lambda r: peer_frame(r, op, b"x")


PROTOCOL_ERRORS = {
    "64-bit length top bit": lambda r: peer_frame(r, 0x2, b"", length_form=64, length=1 << 63)[
        : 10 + (4 if r is Role.SERVER else 0)
    ],
    "64-bit length all ones": lambda r: peer_frame(
        r, 0x2, b"", length_form=64, length=(1 << 64) - 1
    )[:14],
    "rsv1 text": lambda r: peer_frame(r, 0x1, b"x", rsv=0x40),
    "rsv2 binary": lambda r: peer_frame(r, 0x2, b"x", rsv=0x20),
    "rsv3 binary": lambda r: peer_frame(r, 0x2, b"x", rsv=0x10),
    "rsv on ping": lambda r: peer_frame(r, 0x9, b"x", rsv=0x40),
    "rsv on close": lambda r: peer_frame(r, 0x8, b"\x03\xe8", rsv=0x20),
    "rsv on continuation": lambda r: (
        peer_frame(r, 0x1, b"a", fin=False) + peer_frame(r, 0x0, b"b", rsv=0x40)
    ),
    **{f"reserved opcode {op:#x}": reserved(op) for op in [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF]},
    "ping over 125": lambda r: peer_frame(r, 0x9, b"x" * 126)[: 4 + (4 if r is Role.SERVER else 0)],
    "pong over 125": lambda r: peer_frame(r, 0xA, b"x" * 200),
    "close over 125": lambda r: peer_frame(r, 0x8, b"\x03\xe8" + b"x" * 124),
    "fragmented ping": lambda r: peer_frame(r, 0x9, b"x", fin=False),
    "fragmented close": lambda r: peer_frame(r, 0x8, b"\x03\xe8", fin=False),
    "continuation without start": lambda r: peer_frame(r, 0x0, b"x"),
    "unfinished continuation without start": lambda r: peer_frame(r, 0x0, b"x", fin=False),
    "continuation after complete message": lambda r: (
        peer_frame(r, 0x1, b"a") + peer_frame(r, 0x0, b"b")
    ),
    "text inside fragmented message": lambda r: (
        peer_frame(r, 0x1, b"a", fin=False) + peer_frame(r, 0x1, b"b")
    ),
    "binary inside fragmented message": lambda r: (
        peer_frame(r, 0x2, b"a", fin=False) + peer_frame(r, 0x2, b"b")
    ),
    "close with 1 byte": lambda r: peer_frame(r, 0x8, b"\x03"),
    "wrong masking": lambda r: (
        build_frame(0x1, b"x", mask=None) if r is Role.SERVER else build_frame(0x1, b"x")
    ),
    "wrong masking on control": lambda r: (
        build_frame(0x9, b"x", mask=None) if r is Role.SERVER else build_frame(0x9, b"x")
    ),
}


@role_param
@pytest.mark.parametrize("chunked", [False, True], ids=["whole", "bytewise"])
@pytest.mark.parametrize("make", PROTOCOL_ERRORS.values(), ids=PROTOCOL_ERRORS.keys())
def test_protocol_errors_close_1002(role: Role, chunked: bool, make) -> None:  # type: ignore[no-untyped-def]
    conn = open_conn(role)
    data = make(role)
    if chunked:
        for i in range(len(data)):
            conn.receive_data(data[i : i + 1])
            if conn.closed:
                break
    else:
        conn.receive_data(data)
    assert_failed(conn, 1002)


def test_unmasked_client_frame_and_masked_server_frame() -> None:
    server = open_server()
    server.receive_data(build_frame(0x2, b"x", mask=None))
    assert "unmasked" in assert_failed(server, 1002)[0].reason  # type: ignore[attr-defined]
    client = open_client()
    client.receive_data(build_frame(0x2, b"x"))
    assert "masked" in assert_failed(client, 1002)[0].reason  # type: ignore[attr-defined]


@role_param
@pytest.mark.parametrize(
    "code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999]
)
def test_valid_close_codes_echoed(role: Role, code: int) -> None:
    conn = open_conn(role)
    conn.receive_data(peer_frame(role, 0x8, struct.pack("!H", code) + b"bye"))
    assert conn.events() == [CloseReceived(code, "bye"), Closed(code, "bye", True)]
    out = take(conn)
    # The reply echoes the peer's code and its reason, as libwebsockets and websockets do.
    assert [f.close_code for f in out.frames] == [code]
    assert out.frames[0].close_reason == b"bye"


@role_param
@pytest.mark.parametrize(
    "reason", ["", "x", "é" * 61 + "a", "€" * 41, "x" * 123], ids=["empty", "1", "2b", "3b", "max"]
)
def test_close_reason_echoed_whole(role: Role, reason: str) -> None:
    """Any reason that fits the peer's close frame (up to 123 bytes) comes back unchanged."""
    payload = struct.pack("!H", 4321) + reason.encode()
    assert len(payload) <= 125
    conn = open_conn(role)
    conn.receive_data(peer_frame(role, 0x8, payload))
    assert conn.events() == [CloseReceived(4321, reason), Closed(4321, reason, True)]
    out = take(conn)
    check_frames_masking(role, out)
    (close,) = out.frames
    assert close.payload == payload


@role_param
@pytest.mark.parametrize(
    "code", [0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
)
def test_invalid_close_codes_fail_1002(role: Role, code: int) -> None:
    conn = open_conn(role)
    conn.receive_data(peer_frame(role, 0x8, struct.pack("!H", code)))
    events = assert_failed(conn, 1002)
    assert not of_type(events, CloseReceived)


@role_param
@pytest.mark.parametrize("reason", [b"\xff", b"ok\xc3", b"\xed\xa0\x80", b"\xc0\xaf"])
def test_close_reason_bad_utf8_fails_1007(role: Role, reason: bytes) -> None:
    conn = open_conn(role)
    conn.receive_data(peer_frame(role, 0x8, b"\x03\xe8" + reason))
    assert_failed(conn, 1007)


# --------------------------------------------------------------------------- UTF-8

BAD_UTF8 = [
    b"\xff",
    b"\xc0\xaf",  # overlong
    b"\xe0\x80\xaf",  # overlong
    b"\xed\xa0\x80",  # surrogate
    b"\xf4\x90\x80\x80",  # > U+10FFFF
    b"\xf5\x80\x80\x80",
    b"\x80",  # lone continuation
    b"\xce\x41",  # bad continuation
]


@role_param
@pytest.mark.parametrize("bad", BAD_UTF8)
def test_invalid_utf8_text_fails_1007(role: Role, bad: bytes) -> None:
    conn = open_conn(role)
    conn.receive_data(peer_frame(role, 0x1, b"ok " + bad + b" tail"))
    events = assert_failed(conn, 1007)
    assert not [e for e in events if isinstance(e, DataReceived) and e.is_final]


@role_param
@pytest.mark.parametrize("bad", BAD_UTF8)
def test_invalid_utf8_fails_fast_in_first_fragment(role: Role, bad: bytes) -> None:
    conn = open_conn(role)
    # The bad fragment arrives; the message is not over yet -> fail now.
    conn.receive_data(peer_frame(role, 0x1, b"ok" + bad, fin=False))
    assert_failed(conn, 1007)


@role_param
@pytest.mark.parametrize("bad", BAD_UTF8)
def test_invalid_utf8_fails_fast_within_a_frame(role: Role, bad: bytes) -> None:
    conn = open_conn(role)
    payload = "€".encode() + bad + b"x" * 1000
    frame = peer_frame(role, 0x1, payload)
    header = len(frame) - len(payload)
    conn.receive_data(frame[: header + 3 + len(bad)])  # only up to the bad bytes
    assert_failed(conn, 1007)


@role_param
def test_invalid_utf8_in_continuation_fails_fast(role: Role) -> None:
    conn = open_conn(role)
    conn.receive_data(peer_frame(role, 0x1, b"fine", fin=False))
    assert data_events(conn)[0].data == b"fine"
    conn.receive_data(peer_frame(role, 0x0, b"\xed\xbf", fin=False))
    assert_failed(conn, 1007)


@role_param
def test_truncated_utf8_at_message_end_fails_1007(role: Role) -> None:
    conn = open_conn(role)
    conn.receive_data(peer_frame(role, 0x1, b"abc\xe2\x82", fin=False))
    assert data_events(conn)  # fine so far: the character may continue
    conn.receive_data(peer_frame(role, 0x0, b""))
    assert_failed(conn, 1007)


@role_param
@pytest.mark.parametrize("char", ["é", "€", "𝄞", "\U0010ffff", "\ud7ff", "\ue000"])
def test_multibyte_char_split_everywhere_is_accepted(role: Role, char: str) -> None:
    enc = char.encode()
    text = b"a" + enc + b"b" + enc
    for cut in range(1, len(text)):
        conn = open_conn(role)
        # split across fragments ...
        conn.receive_data(peer_frame(role, 0x1, text[:cut], fin=False))
        conn.receive_data(peer_frame(role, 0x0, text[cut:]))
        pieces = data_events(conn)
        assert b"".join(p.data for p in pieces) == text and pieces[-1].is_final
        assert not conn.closed
        # ... and across receive_data chunks inside one frame
        frame = peer_frame(role, 0x1, text)
        for i in range(len(frame)):
            conn.receive_data(frame[i : i + 1])
        pieces = data_events(conn)
        assert b"".join(p.data for p in pieces) == text
        assert not conn.closed and take(conn).chunks == []


@role_param
def test_binary_is_not_utf8_checked(role: Role) -> None:
    conn = open_conn(role)
    conn.receive_data(peer_frame(role, 0x2, b"\xff\xfe\xed\xa0\x80"))
    assert data_events(conn)[0].data == b"\xff\xfe\xed\xa0\x80"


# --------------------------------------------------------------------------- size limits


@role_param
def test_default_message_limit_1mib_checked_at_header(role: Role) -> None:
    conn = open_conn(role)
    assert conn.max_message_size == 1 << 20
    frame = peer_frame(role, 0x2, b"", length=(1 << 20) + 1)  # header only, no payload
    conn.receive_data(frame)
    events = assert_failed(conn, 1009)
    assert not of_type(events, DataReceived)


@role_param
def test_message_at_limit_ok(role: Role) -> None:
    conn = open_conn(role, max_message_size=1000)
    conn.receive_data(peer_frame(role, 0x2, b"x" * 1000))
    assert b"".join(e.data for e in data_events(conn)) == b"x" * 1000


@role_param
def test_message_limit_across_fragments(role: Role) -> None:
    conn = open_conn(role, max_message_size=100)
    conn.receive_data(peer_frame(role, 0x1, b"a" * 60, fin=False))
    assert data_events(conn)
    conn.receive_data(peer_frame(role, 0x0, b"", fin=False, length=41))  # header only
    assert_failed(conn, 1009)


@role_param
def test_message_limit_zero_is_unlimited(role: Role) -> None:
    conn = open_conn(role, max_message_size=0)
    conn.receive_data(peer_frame(role, 0x2, b"", length=5 << 20))
    assert not conn.closed and take(conn).chunks == []
    conn2 = open_conn(role, max_message_size=0)
    big = b"y" * (2 << 20)
    conn2.receive_data(peer_frame(role, 0x2, big))
    assert b"".join(e.data for e in data_events(conn2)) == big


@role_param
def test_max_frame_size(role: Role) -> None:
    conn = open_conn(role, max_frame_size=10)
    conn.receive_data(peer_frame(role, 0x2, b"x" * 10, fin=False))
    assert data_events(conn)
    conn.receive_data(peer_frame(role, 0x0, b"", length=11))
    assert_failed(conn, 1009)


# --------------------------------------------------------------------------- sending


@role_param
@pytest.mark.parametrize(("n", "len_byte"), [(0, 0), (125, 125), (126, 126), (65536, 127)])
def test_send_data_minimal_encoding(role: Role, n: int, len_byte: int) -> None:
    conn = open_conn(role)
    conn.send_data(b"z" * n)
    conn.send_data("t" * n)
    out = take(conn)
    check_frames_masking(role, out)
    b = out.frames
    assert [(f.opcode, f.fin, f.payload) for f in b] == [(2, True, b"z" * n), (1, True, b"t" * n)]
    assert out.data[1] & 0x7F == len_byte


@role_param
def test_send_fragments_and_types(role: Role) -> None:
    conn = open_conn(role)
    conn.send_data("é", final=False)
    conn.send_data(b"x", final=False)
    conn.send_data("z")
    conn.send_data("as binary", binary=True)
    conn.send_data(bytearray(b"as text"), binary=False)
    conn.send_ping(b"p")
    conn.send_pong()
    out = take(conn)
    check_frames_masking(role, out)
    assert [(f.opcode, f.fin, f.payload) for f in out.frames] == [
        (1, False, "é".encode()),
        (0, False, b"x"),
        (0, True, b"z"),
        (2, True, b"as binary"),
        (1, True, b"as text"),
        (9, True, b"p"),
        (10, True, b""),
    ]


def test_client_mask_key_source() -> None:
    conn = open_client(mask_key_source=lambda n: b"\x01\x02\x03\x04"[:n])
    conn.send_data(b"abcd")
    data = b"".join(conn.data_to_send())
    assert data[2:6] == b"\x01\x02\x03\x04"
    assert data[6:] == bytes(a ^ b for a, b in zip(b"abcd", b"\x01\x02\x03\x04", strict=True))


# --------------------------------------------------------------------------- misuse


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.send_data(b"x"),
        lambda c: c.send_data("x"),
        lambda c: c.send_ping(),
        lambda c: c.send_pong(),
        lambda c: c.send_close(),
    ],
)
def test_send_before_open_raises(call) -> None:  # type: ignore[no-untyped-def]
    conns = [WSConnection(Role.SERVER), WSConnection(Role.CLIENT)]
    pending = WSConnection(Role.SERVER)
    pending.receive_data(upgrade_request())
    handshaking = WSConnection(Role.CLIENT)
    handshaking.initiate("h")
    for conn in [*conns, pending, handshaking]:
        state = conn.state
        conn.data_to_send()
        with pytest.raises(LocalProtocolError):
            call(conn)
        assert conn.state is state and conn.data_to_send() == []


@role_param
def test_send_after_close_raises(role: Role) -> None:
    conn = open_conn(role)
    conn.send_close(1000)
    assert conn.state is State.LOCAL_CLOSING
    take(conn)
    for call in (
        lambda: conn.send_data(b"x"),
        lambda: conn.send_data("x"),
        lambda: conn.send_ping(),
        lambda: conn.send_close(),
    ):
        with pytest.raises(LocalProtocolError):
            call()
    assert take(conn).chunks == []
    conn.receive_data(peer_frame(role, 0x8, b"\x03\xe8"))
    assert conn.state is State.CLOSED
    with pytest.raises(LocalProtocolError):
        conn.send_data(b"x")
    with pytest.raises(LocalProtocolError):
        conn.send_close()


@role_param
def test_bad_arguments_raise(role: Role) -> None:
    conn = open_conn(role)
    with pytest.raises(LocalProtocolError):
        conn.send_ping(b"x" * 126)
    with pytest.raises(LocalProtocolError):
        conn.send_pong(b"x" * 126)
    for code in (999, 1004, 1005, 1006, 1015, 2000, 5000):
        with pytest.raises(LocalProtocolError):
            conn.send_close(code)
    with pytest.raises(LocalProtocolError):
        conn.send_close(None, "reason without code")
    with pytest.raises(LocalProtocolError):
        conn.send_close(1000, "x" * 124)
    assert conn.state is State.OPEN and take(conn).chunks == []
    conn.send_ping(b"x" * 125)
    conn.send_close(4000, "é" * 61)
    frames = take(conn).frames
    assert frames[1].close_code == 4000 and frames[1].close_reason == ("é" * 61).encode()


# --------------------------------------------------------------------------- closing


@role_param
def test_initiating_close(role: Role) -> None:
    conn = open_conn(role)
    conn.send_close(1001, "going away")
    assert conn.state is State.LOCAL_CLOSING
    out = take(conn)
    check_frames_masking(role, out)
    (close,) = out.frames
    assert (close.close_code, close.close_reason) == (1001, b"going away")
    assert not out.eof
    # Data still arrives until the peer's close (and is delivered); pings are not answered.
    conn.receive_data(peer_frame(role, 0x1, b"late") + peer_frame(role, 0x9, b"p"))
    assert conn.events() == [DataReceived(b"late", False, True, True, 0, True), Ping(b"p")]
    assert take(conn).chunks == []
    conn.receive_data(peer_frame(role, 0x8, b"\x03\xe8ok") + peer_frame(role, 0x1, b"ignored"))
    assert conn.events() == [CloseReceived(1000, "ok"), Closed(1000, "ok", True)]
    assert conn.state is State.CLOSED
    out = take(conn)
    assert out.frames == []  # no second close frame
    assert out.chunks == ([b""] if role is Role.SERVER else [])  # the server closes TCP


@role_param
def test_answering_close(role: Role) -> None:
    conn = open_conn(role)
    conn.receive_data(
        peer_frame(role, 0x8, b"\x0f\xa0done") + peer_frame(role, 0x1, b"after") + b"\xff\xff"
    )
    assert conn.events() == [CloseReceived(4000, "done"), Closed(4000, "done", True)]
    out = take(conn)
    check_frames_masking(role, out)
    assert [(f.close_code, f.close_reason) for f in out.frames] == [(4000, b"done")]
    assert out.ends_with_eof is (role is Role.SERVER)
    assert conn.state is State.CLOSED
    conn.receive_data(peer_frame(role, 0x1, b"more"))
    conn.receive_eof()
    assert conn.events() == [] and take(conn).chunks == []


@role_param
def test_empty_close_answered_with_empty_close(role: Role) -> None:
    conn = open_conn(role)
    conn.receive_data(peer_frame(role, 0x8))
    assert conn.events() == [CloseReceived(1005, ""), Closed(1005, "", True)]
    out = take(conn)
    (close,) = out.frames
    assert close.opcode == 8 and close.payload == b""


@role_param
def test_close_in_the_middle_of_a_fragmented_message(role: Role) -> None:
    conn = open_conn(role)
    conn.receive_data(peer_frame(role, 0x2, b"part", fin=False) + peer_frame(role, 0x8))
    events = conn.events()
    assert isinstance(events[0], DataReceived) and isinstance(events[1], CloseReceived)
    assert events[-1] == Closed(1005, "", True)


@role_param
def test_send_close_without_code(role: Role) -> None:
    conn = open_conn(role)
    conn.send_close(None)
    (close,) = take(conn).frames
    assert close.payload == b""


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("where", ["open", "closing"])
def test_receive_eof(role: Role, where: str) -> None:
    conn = open_conn(role)
    if where == "closing":
        conn.send_close()
        take(conn)
    conn.receive_data(peer_frame(role, 0x1, b"half", fin=False)[:-2])
    conn.events()
    conn.receive_eof()
    assert conn.events() == [Closed(1006, "connection closed without a close frame", False)]
    assert conn.state is State.CLOSED and take(conn).chunks == []
    conn.receive_eof()
    conn.abort()
    assert conn.events() == []


@role_param
def test_abort(role: Role) -> None:
    conn = open_conn(role)
    conn.abort("timeout")
    assert take(conn).chunks == [b""]
    assert conn.events() == [Closed(1006, "timeout", False)]
    conn.receive_data(peer_frame(role, 0x1, b"x"))
    conn.abort()
    assert conn.events() == [] and take(conn).chunks == []


@role_param
def test_fail_while_closing_sends_no_second_close(role: Role) -> None:
    conn = open_conn(role)
    conn.send_close(1000)
    take(conn)
    conn.receive_data(peer_frame(role, 0x0, b"x"))  # continuation without a message
    out = take(conn)
    assert out.chunks == [b""]
    events = conn.events()
    assert events == [
        ConnectionFailed(1002, "continuation frame without a message"),
        Closed(1002, "continuation frame without a message", False),
    ]


@role_param
def test_events_before_error_are_kept(role: Role) -> None:
    conn = open_conn(role)
    conn.receive_data(
        peer_frame(role, 0x1, b"good") + peer_frame(role, 0x9, b"p") + peer_frame(role, 0x3)
    )
    out = take(conn)
    assert [f.opcode for f in out.frames] == [0xA, 0x8]  # the pong went out before failing
    assert out.frames[1].close_code == 1002 and out.ends_with_eof
    events = conn.events()
    assert events[:2] == [DataReceived(b"good", False, True, True, 0, True), Ping(b"p")]
    assert isinstance(events[2], ConnectionFailed) and isinstance(events[3], Closed)


def test_garbage_after_handshake_never_raises() -> None:
    for role in ROLES:
        for junk in [b"\x00" * 10, b"\xff" * 20, bytes(range(256)), b"GET / HTTP/1.1\r\n\r\n"]:
            conn = open_conn(role)
            conn.receive_data(junk)
            out = take(conn)
            if conn.closed:
                assert out.ends_with_eof
                assert of_type(conn.events(), Closed)


def test_pending_and_properties() -> None:
    conn = open_server()
    assert conn.pending() is False
    assert conn.request_headers is not None
    assert conn.request_headers.get("host") == b"server.example.com"
    assert conn.role is Role.SERVER and not conn.closed


@pytest.mark.parametrize(
    ("first", "needle"),
    [(b"\x16\x03\x01\x02\x00", "TLS handshake on a plain"), (b"\x00\x01garbage", "not an HTTP")],
)
def test_server_rejects_non_http_at_the_first_byte(first: bytes, needle: str) -> None:
    # No need to wait for a blank line or the timeout: the request line cannot start so.
    conn = WSConnection(Role.SERVER)
    conn.receive_data(first)
    out = b"".join(conn.data_to_send())
    assert out.startswith(b"HTTP/1.1 400 ")
    assert needle in out.decode("latin-1")
    assert conn.state is State.CLOSED


def test_server_allows_leading_empty_lines_before_the_request_line() -> None:
    conn = WSConnection(Role.SERVER)
    conn.receive_data(b"\r\nGE")
    assert conn.state is State.HTTP_HEAD
    assert conn.data_to_send() == []


@pytest.mark.parametrize("first", [b"SSH-2.0-OpenSSH\r\n", b"\x15\x03\x03", b"HTTX"])
def test_client_fails_at_once_on_a_non_http_response(first: bytes) -> None:
    conn = WSConnection(Role.CLIENT)
    conn.initiate("example.com", "/")
    conn.data_to_send()
    conn.receive_data(first)
    assert conn.state is State.CLOSED
    assert any(type(e).__name__ == "HandshakeFailed" for e in conn.events())


def test_client_waits_on_a_partial_status_line() -> None:
    conn = WSConnection(Role.CLIENT)
    conn.initiate("example.com", "/")
    conn.data_to_send()
    conn.receive_data(b"HTT")
    assert conn.state is State.HTTP_HEAD


def test_in_message_out_follows_the_fragments_we_send() -> None:
    conn = open_server()
    assert not conn.in_message_out
    conn.send_data(b"a", final=False)
    assert conn.in_message_out
    conn.send_data(b"b", final=True)
    assert not conn.in_message_out


def test_limits_set_after_construction_apply() -> None:
    conn = open_server()
    conn.max_message_size = 3
    conn.max_frame_size = 2
    assert (conn.max_message_size, conn.max_frame_size) == (3, 2)
    conn.receive_data(build_frame(2, b"xyz"))
    events = conn.events()
    assert any(isinstance(e, ConnectionFailed) and e.code == 1009 for e in events)


def test_control_frame_with_a_64_bit_length_is_read_with_what_follows() -> None:
    """A pong whose empty length is spelled in 64 bits, then a text frame, in one read
    (found by the frames_client fuzz target): both are delivered, nothing raises."""
    from helpers import open_client

    conn = open_client()
    conn.receive_data(b"\x8a\x7f" + bytes(8) + b"\x81\x02hi")
    events = conn.events()
    assert [type(e) for e in events] == [Pong, DataReceived]
    assert events[1].data == b"hi"
