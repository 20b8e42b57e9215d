"""Large data frames gathered whole in a FramePool buffer (the context's whole_frame_size).

A frame within the pool's bounds reaches the application as one DataReceived however
it was split on the way in; the pool lends a buffer to one frame at a time, gets it
back on every path (delivered, failed, aborted), and when all buffers are lent the
frame is delivered in pieces as before.
"""

from __future__ import annotations

import os
import zlib

import pytest
from helpers import build_frame, open_client, open_server

from lwsbridge.core import ConnectionFailed, DataReceived, Opcode, State, WSConnection
from lwsbridge.core.buffer import FRAME_BUFFERS, FramePool
from lwsbridge.core.deflate import PerMessageDeflate

SMALL = 4096  # the pool's min_size in these tests: frames from here on are gathered


def pool(**kw: int) -> FramePool:
    kw.setdefault("min_size", SMALL)
    return FramePool(kw.pop("max_size", 1 << 17), **kw)


def masked_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    # Masked by the helpers' own per-byte loop, independent of lwsbridge.core.mask.
    return build_frame(opcode, payload, fin=fin)


def kept_for_reuse(p: FramePool, n: int) -> bool:
    """The pool kept a buffer of at least ``n`` bytes for the next frame: its own
    bytearrays do; with the C speedup each frame had its own FrameBuffer (whose bytes
    were delivered), so nothing is kept."""
    return p.idle_bytes == 0 if FRAME_BUFFERS else p.idle_bytes >= n


def data_events(conn: WSConnection) -> list[DataReceived]:
    return [e for e in conn.events() if isinstance(e, DataReceived)]


def feed_in_pieces(conn: WSConnection, data: bytes, step: int) -> list[DataReceived]:
    out: list[DataReceived] = []
    for i in range(0, len(data), step):
        conn.receive_data(data[i : i + step])
        out += data_events(conn)
    return out


@pytest.mark.parametrize("step", [1000, 4093, 65536])
def test_frame_split_over_many_reads_is_one_piece(step: int) -> None:
    p = pool()
    conn = open_server(frame_pool=p, max_message_size=0)
    payload = os.urandom(100_000)
    got = feed_in_pieces(conn, masked_frame(Opcode.BINARY, payload), step)
    assert got == [DataReceived(payload, True, True, True, 0, True)]
    assert p.lent == 0 and kept_for_reuse(p, len(payload))


def test_without_a_pool_the_same_frame_comes_in_pieces() -> None:
    conn = open_server(max_message_size=0)
    payload = os.urandom(100_000)
    got = feed_in_pieces(conn, masked_frame(Opcode.BINARY, payload), 4093)
    assert len(got) > 1 and b"".join(e.data for e in got) == payload
    assert got[-1].is_final and not got[0].is_final


def test_unmasked_frames_to_a_client_are_gathered_too() -> None:
    p = pool()
    conn = open_client(frame_pool=p, max_message_size=0)
    payload = os.urandom(50_000)
    got = feed_in_pieces(conn, build_frame(Opcode.BINARY, payload, mask=None), 3000)
    assert [e.data for e in got] == [payload]
    assert p.lent == 0


def test_direct_reads_into_the_buffer() -> None:
    """payload_buffer / payload_filled: what a transport does with recv_into."""
    p = pool()
    conn = open_server(frame_pool=p, max_message_size=0)
    payload = os.urandom(90_000)
    frame = masked_frame(Opcode.BINARY, payload)
    conn.receive_data(frame[:5000])  # the header and some payload, through receive_data
    assert data_events(conn) == []
    pos = 5000
    while pos < len(frame):
        target = conn.payload_buffer()
        assert target is not None and len(target) == len(frame) - pos
        n = min(7000, len(target))
        target[:n] = frame[pos : pos + n]  # still masked: unmasked once, at the end
        target.release()
        conn.payload_filled(n)
        pos += n
    assert conn.payload_buffer() is None
    assert [e.data for e in data_events(conn)] == [payload]
    assert p.lent == 0


def test_fragments_are_each_one_piece_and_the_message_flags_hold() -> None:
    p = pool()
    conn = open_server(frame_pool=p, max_message_size=0)
    a, b = os.urandom(20_000), os.urandom(30_000)
    data = masked_frame(Opcode.BINARY, a, fin=False) + masked_frame(Opcode.CONTINUATION, b)
    got = feed_in_pieces(conn, data, 1500)
    assert got == [
        DataReceived(a, True, True, False, 0, False),
        DataReceived(b, True, False, True, 0, True),
    ]


def test_outside_the_bounds_frames_come_in_pieces() -> None:
    p = pool(max_size=8192)
    conn = open_server(frame_pool=p, max_message_size=0)
    big = os.urandom(20_000)
    got = feed_in_pieces(conn, masked_frame(Opcode.BINARY, big), 3000)
    assert len(got) > 1 and b"".join(e.data for e in got) == big
    small = os.urandom(SMALL - 1)
    got = feed_in_pieces(conn, masked_frame(Opcode.BINARY, small), 1000)
    assert len(got) > 1 and b"".join(e.data for e in got) == small
    assert p.lent == 0 and p.idle_bytes == 0  # never taken


def test_a_lent_buffer_is_not_lent_again_and_a_full_pool_falls_back() -> None:
    p = pool(max_buffers=2)
    conns = [open_server(frame_pool=p, max_message_size=0) for _ in range(3)]
    payloads = [os.urandom(40_000) for _ in conns]
    frames = [masked_frame(Opcode.BINARY, x) for x in payloads]
    got: list[list[DataReceived]] = [[] for _ in conns]
    # Interleaved: all three frames are in progress at once.
    for i in range(0, 40_014, 2000):
        for k, conn in enumerate(conns):
            conn.receive_data(frames[k][i : i + 2000])
            got[k] += data_events(conn)
        if i == 2000:
            assert p.lent == 2
    assert [[e.data for e in g] for g in got[:2]] == [[payloads[0]], [payloads[1]]]
    assert len(got[2]) > 1 and b"".join(e.data for e in got[2]) == payloads[2]
    assert p.lent == 0 and kept_for_reuse(p, 1)


def test_pool_take_and_give() -> None:
    p = FramePool(1 << 20, max_buffers=2, min_size=1024)
    a = p.take(3000)
    b = p.take(100)
    assert a is not None and b is not None and a is not b
    assert len(a) == 4096 and len(b) == 1024  # powers of two from min_size
    assert p.take(10) is None and p.lent == 2
    p.give(b)
    with pytest.raises(ValueError, match="already back"):
        p.give(b)
    assert p.take(5000) is not None  # b was too small: replaced by one that fits
    assert p.lent == 2 and p.idle_bytes == 0
    p.give(a)
    assert p.take(4096) is a
    with pytest.raises(ValueError):
        FramePool(1 << 20, max_buffers=0)


@pytest.mark.skipif(not FRAME_BUFFERS, reason="the C speedup's FrameBuffer")
def test_pool_take_bytes_counts_against_max_buffers() -> None:
    p = FramePool(1 << 20, max_buffers=2, min_size=1024)
    a, b = p.take_bytes(3000), p.take_bytes(100)
    assert a is not None and b is not None
    assert (len(a), len(b)) == (3000, 100)  # exactly the frame: it becomes the bytes
    assert p.take_bytes(10) is None and p.take(10) is None and p.lent == 2
    p.give(a)
    assert p.lent == 1 and p.idle_bytes == 0  # not kept: its bytes went to the application
    c = p.take(5000)
    assert c is not None and p.take_bytes(10) is None


def test_invalid_utf8_in_a_gathered_text_frame_fails_with_1007() -> None:
    p = pool()
    conn = open_server(frame_pool=p, max_message_size=0)
    payload = b"a" * 10_000 + b"\xff" + b"b" * 10_000
    frame = masked_frame(Opcode.TEXT, payload)
    conn.receive_data(frame[:8000])
    assert p.lent == 1
    conn.receive_data(frame[8000:])
    events = conn.events()
    assert not [e for e in events if isinstance(e, DataReceived)]  # none of it delivered
    failed = [e for e in events if isinstance(e, ConnectionFailed)]
    assert failed and failed[0].code == 1007
    assert p.lent == 0


def test_valid_text_split_mid_character_across_reads() -> None:
    p = pool()
    conn = open_server(frame_pool=p, max_message_size=0)
    payload = "é€😀".encode() * 3000
    got = feed_in_pieces(conn, masked_frame(Opcode.TEXT, payload), 1001)
    assert got == [DataReceived(payload, False, True, True, 0, True)]


@pytest.mark.parametrize("end", ["abort", "eof"])
def test_the_buffer_comes_back_when_the_connection_ends_mid_frame(end: str) -> None:
    p = pool()
    conn = open_server(frame_pool=p, max_message_size=0)
    conn.receive_data(masked_frame(Opcode.BINARY, os.urandom(50_000))[:10_000])
    assert p.lent == 1
    if end == "abort":
        conn.abort()
    else:
        conn.receive_eof()
    assert conn.state is State.CLOSED and p.lent == 0


def test_payload_filled_past_the_frame_end_is_refused() -> None:
    """A transport bug (not the peer's): a clear error, the frame stays intact."""
    p = pool()
    conn = open_server(frame_pool=p, max_message_size=0)
    payload = os.urandom(50_000)
    frame = masked_frame(Opcode.BINARY, payload)
    conn.receive_data(frame[:10_000])
    with pytest.raises(ValueError, match="past its end"):
        conn.payload_filled(50_000)
    conn.receive_data(frame[10_000:])
    assert [e.data for e in data_events(conn)] == [payload]


def test_the_message_limit_still_closes_before_any_buffer_is_taken() -> None:
    p = pool()
    conn = open_server(frame_pool=p, max_message_size=10_000)
    conn.receive_data(masked_frame(Opcode.BINARY, os.urandom(20_000))[:100])
    failed = [e for e in conn.events() if isinstance(e, ConnectionFailed)]
    assert failed and failed[0].code == 1009 and p.lent == 0


def test_compressed_messages_are_not_gathered() -> None:
    p = pool()
    conn = open_server(frame_pool=p, max_message_size=0)
    conn.extension = PerMessageDeflate()
    raw = os.urandom(30_000)  # incompressible: the deflated frame is over min_size
    c = zlib.compressobj(wbits=-15)
    body = c.compress(raw) + c.flush(zlib.Z_SYNC_FLUSH)
    frame = build_frame(Opcode.BINARY, body[:-4], rsv=0x40)
    got = feed_in_pieces(conn, frame, 2000)
    assert b"".join(e.data for e in got) == raw and got[-1].is_final
    assert p.lent == 0 and p.idle_bytes == 0


@pytest.mark.parametrize("with_pool", [True, False])
def test_a_large_read_starting_with_a_big_frame_and_more_frames_behind_it(
    with_pool: bool,
) -> None:
    """The header-only path of receive_data: the payload is parsed from the read itself,
    and what follows the frame in the same read is parsed as usual."""
    p = pool() if with_pool else None
    conn = open_server(frame_pool=p, max_message_size=0)
    big = os.urandom(70_000)
    data = (
        masked_frame(Opcode.BINARY, big)
        + masked_frame(Opcode.TEXT, b"after")
        + build_frame(Opcode.PING, b"p")
        + masked_frame(Opcode.BINARY, b"x" * 100)[:50]
    )
    conn.receive_data(memoryview(data))
    events = conn.events()
    got = [e for e in events if isinstance(e, DataReceived)]
    first = next(i for i, e in enumerate(got) if e.is_final)
    assert b"".join(e.data for e in got[: first + 1]) == big and got[0].is_binary
    assert got[first + 1].data == b"after" and not got[first + 1].is_binary
    assert any(type(e).__name__ == "Ping" for e in events)
    conn.receive_data(masked_frame(Opcode.BINARY, b"x" * 100)[50:])
    rest = b"".join(e.data for e in got[first + 2 :]) + b"".join(e.data for e in data_events(conn))
    assert rest == b"x" * 100


@pytest.mark.parametrize(
    ("head", "code"),
    [
        (bytes([0x89, 0xFF]) + (200).to_bytes(8, "big"), 1002),  # a 200-byte ping
        (bytes([0x82, 0x7F]), 1002),  # unmasked, from a client
        (bytes([0x82, 0xFF, 0x80]) + bytes(7), 1002),  # the length's top bit set
        (bytes([0x82, 0xFF]) + (1 << 40).to_bytes(8, "big"), 1009),  # over the limit
    ],
)
def test_a_large_read_with_a_bad_big_header_fails(head: bytes, code: int) -> None:
    conn = open_server(frame_pool=pool(), max_message_size=1 << 20)
    conn.receive_data(head + bytes(20_000))
    failed = [e for e in conn.events() if isinstance(e, ConnectionFailed)]
    assert failed and failed[0].code == code
