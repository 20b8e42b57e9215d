"""FrameReader on its own: bytes in, DataReceived pieces and control frames out.

Fed whole, byte by byte, and with trailing bytes of a following frame; the reader
must consume exactly what it parsed and leave the rest in the buffer.
"""

from __future__ import annotations

import pytest
from helpers import MASK, build_frame

from lwsbridge.core import DataReceived, Event, Opcode, RemoteProtocolError
from lwsbridge.core.extensions import Extension
from lwsbridge.core.frames import FrameReader


def read_all(reader: FrameReader, data: bytes, bytewise: bool) -> tuple[list[object], bytes]:
    """Feed ``data`` (whole or one byte at a time); collect events and control frames."""
    buf = bytearray()
    out: list[object] = []
    pieces = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
    for piece in pieces:
        buf += piece
        while True:
            events: list[Event] = []
            control = reader.read(buf, events)
            out.extend(events)
            if control is None:
                break
            out.append(control)
    return out, bytes(buf)


def joined(items: list[object]) -> tuple[bytes, bool]:
    """The message's payload, and whether its last piece said is_final."""
    data = [e for e in items if isinstance(e, DataReceived)]
    return b"".join(e.data for e in data), data[-1].is_final


@pytest.mark.parametrize("bytewise", [False, True])
@pytest.mark.parametrize("size", [0, 5, 125, 126, 4000, 70000])
def test_one_frame_message(bytewise: bool, size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    reader = FrameReader(client=False, max_message_size=0)
    items, rest = read_all(reader, build_frame(Opcode.BINARY, payload), bytewise)
    assert rest == b""
    assert joined(items) == (payload, True)
    first = items[0]
    assert isinstance(first, DataReceived) and first.is_first and first.is_binary
    assert reader.remaining == 0


def test_whole_frame_is_one_event_and_trailing_bytes_wait() -> None:
    reader = FrameReader(client=False)
    frame = build_frame(Opcode.TEXT, "héllo".encode())
    nxt = build_frame(Opcode.BINARY, b"next")
    buf = bytearray(frame + nxt[:3])
    events: list[Event] = []
    assert reader.read(buf, events) is None
    assert events == [DataReceived("héllo".encode(), False, True, True, 0, True)]
    assert bytes(buf) == nxt[:3]  # the start of the next header stays
    buf += nxt[3:]
    assert reader.read(buf, events) is None
    assert events[-1] == DataReceived(b"next", True, True, True, 0, True)
    assert buf == b""


def test_partial_payload_is_delivered_as_it_arrives() -> None:
    reader = FrameReader(client=False)
    frame = build_frame(Opcode.BINARY, b"abcdefgh")
    buf = bytearray(frame[:-3])  # header + 5 payload bytes
    events: list[Event] = []
    reader.read(buf, events)
    assert events == [DataReceived(b"abcde", True, True, False, 3, True)]
    assert reader.remaining == 3 and buf == b""
    buf += frame[-3:]
    reader.read(buf, events)
    assert events[-1] == DataReceived(b"fgh", True, False, True, 0, True)


@pytest.mark.parametrize("bytewise", [False, True])
def test_control_frame_returned_whole_between_fragments(bytewise: bool) -> None:
    reader = FrameReader(client=False)
    data = (
        build_frame(Opcode.TEXT, b"frag", fin=False)
        + build_frame(Opcode.PING, b"are you there")
        + build_frame(Opcode.CONTINUATION, b"ment")
        + build_frame(Opcode.CLOSE, b"\x03\xe8")
    )
    items, rest = read_all(reader, data, bytewise)
    assert rest == b""
    controls = [i for i in items if isinstance(i, tuple)]
    assert controls == [(Opcode.PING, b"are you there"), (Opcode.CLOSE, b"\x03\xe8")]
    # the ping comes out between the two fragments' pieces, in order
    ping_at = items.index((Opcode.PING, b"are you there"))
    assert all(isinstance(i, DataReceived) and not i.is_final for i in items[:ping_at])
    text, final = joined(items)
    assert (text, final) == (b"fragment", True)


def test_control_frame_stops_the_read_and_leaves_the_rest() -> None:
    reader = FrameReader(client=False)
    after = build_frame(Opcode.BINARY, b"after")
    buf = bytearray(build_frame(Opcode.PONG, b"p") + after)
    events: list[Event] = []
    assert reader.read(buf, events) == (Opcode.PONG, b"p")
    assert events == [] and bytes(buf) == after


def test_client_reads_unmasked_frames() -> None:
    reader = FrameReader(client=True)
    buf = bytearray(build_frame(Opcode.BINARY, b"from server", mask=None))
    events: list[Event] = []
    reader.read(buf, events)
    assert events == [DataReceived(b"from server", True, True, True, 0, True)]


BAD = {
    "unmasked from a client": (build_frame(Opcode.BINARY, b"x", mask=None), 1002),
    "reserved data opcode": (build_frame(3, b"x"), 1002),
    "reserved control opcode": (build_frame(0xB, b""), 1002),
    "fragmented control": (build_frame(Opcode.PING, b"", fin=False), 1002),
    "long control": (build_frame(Opcode.PING, b"x" * 126), 1002),
    "rsv on control": (build_frame(Opcode.PONG, b"", rsv=0x40), 1002),
    "rsv without extension": (build_frame(Opcode.TEXT, b"x", rsv=0x40), 1002),
    "lone continuation": (build_frame(Opcode.CONTINUATION, b"x"), 1002),
    "data inside a message": (
        build_frame(Opcode.TEXT, b"a", fin=False) + build_frame(Opcode.TEXT, b"b"),
        1002,
    ),
    "invalid utf-8 whole": (build_frame(Opcode.TEXT, b"\xff"), 1007),
    "invalid utf-8 fragment": (build_frame(Opcode.TEXT, b"ok\xc0", fin=False), 1007),
    "length top bit": (build_frame(Opcode.BINARY, b"", length_form=64, length=1 << 63), 1002),
}


@pytest.mark.parametrize("name", list(BAD))
@pytest.mark.parametrize("bytewise", [False, True])
def test_protocol_errors_carry_the_close_code(name: str, bytewise: bool) -> None:
    data, code = BAD[name]
    reader = FrameReader(client=False)
    with pytest.raises(RemoteProtocolError) as info:
        read_all(reader, data, bytewise)
    assert info.value.code == code


def test_masked_frame_from_a_server_fails() -> None:
    reader = FrameReader(client=True)
    with pytest.raises(RemoteProtocolError) as info:
        reader.read(bytearray(build_frame(Opcode.BINARY, b"x", mask=MASK)), [])
    assert info.value.code == 1002


@pytest.mark.parametrize(
    ("limits", "frames"),
    [
        ({"max_message_size": 10}, [build_frame(Opcode.BINARY, b"x" * 11)]),
        ({"max_frame_size": 4}, [build_frame(Opcode.BINARY, b"x" * 5, fin=False)]),
        (
            {"max_message_size": 10},
            [
                build_frame(Opcode.BINARY, b"x" * 6, fin=False),
                build_frame(Opcode.CONTINUATION, b"x" * 6),
            ],
        ),
    ],
)
def test_limits_fail_with_1009_before_the_payload(
    limits: dict[str, int], frames: list[bytes]
) -> None:
    reader = FrameReader(client=False, **limits)
    data = b"".join(frames)
    # only the last header is needed: the payload is refused before it arrives
    cut = len(data) - 1
    with pytest.raises(RemoteProtocolError) as info:
        read_all(reader, data[:cut], bytewise=False)
    assert info.value.code == 1009


def test_limits_may_change_between_reads() -> None:
    reader = FrameReader(client=False, max_message_size=100)
    reader.read(bytearray(build_frame(Opcode.BINARY, b"x" * 50)), [])
    reader.max_message_size = 10
    with pytest.raises(RemoteProtocolError):
        reader.read(bytearray(build_frame(Opcode.BINARY, b"x" * 50)), [])


class Reverser(Extension):
    """Claims RSV1 and reverses each piece, giving out one byte per call (holds the rest)."""

    rsv_mask = 0x40

    def __init__(self) -> None:
        self.hold = b""

    def decode(self, data: bytes, rsv: int, message_final: bool, max_size: int | None) -> bytes:
        out = self.hold + data[::-1]
        self.hold = out[1:]
        return out[:1]

    def pending(self) -> bool:
        return bool(self.hold)


def test_extension_output_held_back_stops_parsing_until_resumed() -> None:
    reader = FrameReader(client=False, extension=Reverser())
    second = build_frame(Opcode.BINARY, b"two")
    buf = bytearray(build_frame(Opcode.BINARY, b"abc", rsv=0x40) + second)
    events: list[Event] = []
    assert reader.read(buf, events) is None
    assert reader.held
    assert events == [DataReceived(b"c", True, True, False, 0, True)]
    assert bytes(buf) == second  # input waits while output is held
    reader.resume(events)
    assert reader.held  # one byte per call
    reader.resume(events)
    assert not reader.held
    assert [e.data for e in events] == [b"c", b"b", b"a"]  # type: ignore[attr-defined]
    assert events[-1] == DataReceived(b"a", True, False, True, 0, True)
    assert reader.read(buf, events) is None
    assert events[-1] == DataReceived(b"two", True, True, True, 0, True)
