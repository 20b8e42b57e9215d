"""Test helpers for the sans-IO core, independent of the library's own frame parser."""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pytest

from lwsbridge.core import Event, Role, State, WSConnection

RFC_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
MASK = b"\x37\xfa\x21\x3d"


def xor(data: bytes, key: bytes) -> bytes:
    """Naive per-byte masking, deliberately independent of lwsbridge.core.mask."""
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


def accept_for(key: bytes) -> bytes:
    guid = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    return base64.b64encode(hashlib.sha1(key + guid).digest())


@dataclass
class Frame:
    fin: bool
    rsv: int
    opcode: int
    masked: bool
    payload: bytes

    @property
    def close_code(self) -> int | None:
        assert self.opcode == 8
        if len(self.payload) < 2:
            return None
        return int(struct.unpack("!H", self.payload[:2])[0])

    @property
    def close_reason(self) -> bytes:
        return self.payload[2:]


def build_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = MASK,
    length_form: int | None = None,
    length: int | None = None,
) -> bytes:
    """Hand-built frame.  ``length_form`` 7/16/64 forces the length encoding (non-minimal
    allowed); ``length`` overrides the announced length (payload is still appended)."""
    n = len(payload) if length is None else length
    if length_form is None:
        length_form = 7 if n < 126 else 16 if n < 65536 else 64
    b0 = (0x80 if fin else 0) | rsv | opcode
    mbit = 0x80 if mask is not None else 0
    if length_form == 7:
        head = bytes([b0, mbit | n])
    elif length_form == 16:
        head = bytes([b0, mbit | 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, mbit | 127]) + struct.pack("!Q", n)
    if mask is not None:
        return head + mask + xor(payload, mask)
    return head + payload


def parse_frames(data: bytes) -> tuple[list[Frame], bytes]:
    """Decode every complete frame in ``data``; returns (frames, leftover bytes)."""
    frames: list[Frame] = []
    pos = 0
    while True:
        if len(data) - pos < 2:
            break
        b0, b1 = data[pos], data[pos + 1]
        n = b1 & 0x7F
        hl = 2
        if n == 126:
            if len(data) - pos < 4:
                break
            n = struct.unpack("!H", data[pos + 2 : pos + 4])[0]
            hl = 4
        elif n == 127:
            if len(data) - pos < 10:
                break
            n = struct.unpack("!Q", data[pos + 2 : pos + 10])[0]
            hl = 10
        masked = bool(b1 & 0x80)
        key = b""
        if masked:
            key = data[pos + hl : pos + hl + 4]
            hl += 4
        if len(data) - pos < hl + n:
            break
        payload = data[pos + hl : pos + hl + n]
        if masked:
            payload = xor(payload, key)
        frames.append(Frame(bool(b0 & 0x80), b0 & 0x70, b0 & 0x0F, masked, payload))
        pos += hl + n
    return frames, data[pos:]


@dataclass
class Output:
    chunks: list[bytes]

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)

    @property
    def eof(self) -> bool:
        return b"" in self.chunks

    @property
    def ends_with_eof(self) -> bool:
        return bool(self.chunks) and self.chunks[-1] == b""

    @property
    def frames(self) -> list[Frame]:
        frames, rest = parse_frames(self.data)
        assert rest == b"", f"trailing partial frame in output: {rest!r}"
        return frames


def take(conn: WSConnection) -> Output:
    return Output(conn.data_to_send())


def only_close_code(out: Output) -> int | None:
    closes = [f for f in out.frames if f.opcode == 8]
    assert len(closes) == 1, out.frames
    return closes[0].close_code


def upgrade_request(
    key: bytes = RFC_KEY,
    *,
    target: str = "/chat",
    method: str = "GET",
    version: str = "1.1",
    extra: Iterable[str] = (),
    omit: Iterable[str] = (),
    replace: dict[str, str] | None = None,
) -> bytes:
    fields = {
        "Host": "server.example.com",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": key.decode(),
        "Sec-WebSocket-Version": "13",
    }
    fields.update(replace or {})
    lines = [f"{method} {target} HTTP/{version}"]
    lines += [f"{k}: {v}" for k, v in fields.items() if k not in set(omit)]
    lines += list(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def response_101(key: bytes, extra: Iterable[str] = (), accept: bytes | None = None) -> bytes:
    acc = (accept if accept is not None else accept_for(key)).decode()
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {acc}",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def client_key(request: bytes) -> bytes:
    for line in request.split(b"\r\n"):
        if line.lower().startswith(b"sec-websocket-key:"):
            return line.split(b":", 1)[1].strip()
    raise AssertionError("no key in request")


def open_server(**kwargs: object) -> WSConnection:
    conn = WSConnection(Role.SERVER, **kwargs)  # type: ignore[arg-type]
    conn.receive_data(upgrade_request())
    conn.accept()
    conn.data_to_send()
    conn.events()
    assert conn.state is State.OPEN
    return conn


def open_client(**kwargs: object) -> WSConnection:
    conn = WSConnection(Role.CLIENT, **kwargs)  # type: ignore[arg-type]
    conn.initiate("server.example.com", "/chat")
    key = client_key(b"".join(conn.data_to_send()))
    conn.receive_data(response_101(key))
    conn.events()
    assert conn.state is State.OPEN
    return conn


def open_conn(role: Role, **kwargs: object) -> WSConnection:
    return open_server(**kwargs) if role is Role.SERVER else open_client(**kwargs)


def peer_frame(role: Role, opcode: int, payload: bytes = b"", **kw: object) -> bytes:
    """A frame as the *peer* of ``role`` would send it (masked towards a server)."""
    if role is Role.SERVER:
        return build_frame(opcode, payload, **kw)  # type: ignore[arg-type]
    kw.setdefault("mask", None)
    return build_frame(opcode, payload, **kw)  # type: ignore[arg-type]


FEED_MODES = ("whole", "bytewise", "trailing")
TRAILING = b"TRAILING-BYTES"


def feed(conn: WSConnection, data: bytes, mode: str, trailing: bytes = TRAILING) -> None:
    """Feed ``data`` whole, byte by byte, or whole followed by ``trailing`` in one call."""
    if mode == "whole":
        conn.receive_data(data)
    elif mode == "bytewise":
        for i in range(len(data)):
            conn.receive_data(data[i : i + 1])
    elif mode == "trailing":
        conn.receive_data(data + trailing)
    else:  # pragma: no cover
        raise ValueError(mode)


def of_type(events: list[Event], cls: type) -> list[Event]:
    return [e for e in events if isinstance(e, cls)]


def speedup_path(param: str, monkeypatch: Any, module: Any, attr: str) -> str:
    """A ``path`` fixture's body: "c" runs with ``module.attr``, the C piece (skipped
    where it is not built, a failure in CI where it must be); "python" sets it to None."""
    if param == "c":
        if getattr(module, attr) is None:
            if os.environ.get("CI") and not os.environ.get("LWSBRIDGE_NO_SPEEDUPS"):
                pytest.fail("the C speedup was not built in CI")
            pytest.skip("C speedup not built or disabled")
    else:
        monkeypatch.setattr(module, attr, None)
    return param


# Lines of request heads, well formed and not, for the head parser's differential tests:
# the first four are request lines; the rest field lines, good and bad.
HEAD_LINES = [
    b"GET /chat HTTP/1.1",
    b"GET / HTTP/1.0",
    b"GET / HTTP/2.0",
    b"GET /a b HTTP/1.1",
    b"Host: example.com",
    b"Upgrade:websocket",
    b"X-Empty:",
    b"X-Pad: \t v a l \t ",
    b"X-Obs: caf\xe9",
    b"X-Colon: a:b",
    b" folded",
    b"\tfolded",
    b"Bad Name: x",
    b"X-Ctl: a\x01b",
    b"X-Del: a\x7fb",
    b"X-Cr: a\rb",
    b": no name",
    b"",
]
