"""Helpers for the permessage-deflate tests: a raw deflate-aware client, payloads, /proc.

``RawDeflateClient`` is written by hand (blocking socket, stdlib ``zlib``), independent
of lwsbridge's own code, so that a test controls exactly which frames go out, with
which RSV bits and how the compressed bytes are split.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import random
import socket
import struct
import zlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TAIL = b"\x00\x00\xff\xff"
TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
DEADLINE = 20.0
WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "websocket",
    "frame",
    "deflate",
    "inflate",
    "window",
    "context",
    "takeover",
    "server",
    "client",
    "message",
    "payload",
    "extension",
    "header",
    "close",
    "ping",
    "pong",
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
]


def run(coro_fn: Callable[[], Awaitable[T]], timeout: float = DEADLINE) -> T:
    """Run one asyncio conversation, bounded by ``timeout`` seconds."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro_fn(), timeout)

    return asyncio.run(bounded())


def prose(n: int, seed: int = 0) -> str:
    """``n`` bytes of compressible ASCII text (random words and numbers)."""
    rnd = random.Random(seed)
    out: list[str] = []
    size = 0
    while size < n:
        w = rnd.choice(WORDS) if rnd.random() < 0.9 else str(rnd.randrange(100000))
        out.append(w)
        size += len(w) + 1
    return " ".join(out)[:n].ljust(n, ".")


def payload(kind: str, n: int, seed: int = 0) -> str | bytes:
    """text: compressible prose; binary: compressible bytes; random: incompressible."""
    if kind == "text":
        return prose(n, seed)
    if kind == "binary":
        return bytes(b ^ 0x5A for b in prose(n, seed).encode())
    return random.Random(seed).randbytes(n)


def _mask(data: bytes, key: bytes) -> bytes:
    n = len(data)
    if not n:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def frame(opcode: int, data: bytes, *, fin: bool = True, rsv1: bool = False) -> bytes:
    """One masked client frame."""
    head = bytearray([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    n = len(data)
    if n < 126:
        head.append(0x80 | n)
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    key = os.urandom(4)
    return bytes(head) + key + _mask(data, key)


def compress(data: bytes, wbits: int = 15, level: int = 6) -> bytes:
    """A whole message compressed as one deflate stream piece, tail stripped (§7.2.1)."""
    c = zlib.compressobj(level, zlib.DEFLATED, -wbits)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(TAIL)
    return out[:-4]


class RawDeflateClient:
    """A blocking WebSocket client on 127.0.0.1 that offers ``offer`` (or nothing)."""

    def __init__(self, port: int, offer: str | None = "permessage-deflate", path: str = "/"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        self.buf = bytearray()
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if offer is not None:
            lines.append(f"Sec-WebSocket-Extensions: {offer}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        self.buf = bytearray(rest)
        status, *hdrs = head.decode("latin-1").split("\r\n")
        assert status.startswith("HTTP/1.1 101"), status
        self.headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in hdrs)}
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        assert self.headers["sec-websocket-accept"] == accept
        self.extensions = self.headers.get("sec-websocket-extensions")
        self.inflater: Any = None

    def _fill(self) -> None:
        data = self.sock.recv(1 << 20)
        if not data:
            raise EOFError("server closed the connection")
        self.buf += data

    def _need(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_frame(self) -> tuple[int, bool, bool, bytes]:
        """(opcode, fin, rsv1, payload) of the next server frame."""
        b0, b1 = self._need(2)
        assert not b1 & 0x80, "server frames are not masked"
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._need(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._need(8))[0]
        return b0 & 0x0F, bool(b0 & 0x80), bool(b0 & 0x40), self._need(n)

    def recv_message(self, server_wbits: int = 15) -> tuple[int, bytes, bool]:
        """(opcode, payload inflated, was compressed) of the next data message."""
        parts: list[bytes] = []
        opcode, fin, rsv1, data = self.recv_frame()
        while opcode in (PING, PONG):
            opcode, fin, rsv1, data = self.recv_frame()
        first_op, compressed = opcode, rsv1
        parts.append(data)
        while not fin:
            opcode, fin, rsv1, data = self.recv_frame()
            assert opcode == CONT and not rsv1
            parts.append(data)
        raw = b"".join(parts)
        if compressed:
            if self.inflater is None:
                self.inflater = zlib.decompressobj(-max(server_wbits, 9))
            raw = self.inflater.decompress(raw + TAIL)
        return first_op, raw, compressed

    def close_code(self) -> int | None:
        """Read until the close frame; its status code."""
        while True:
            opcode, _fin, _rsv1, data = self.recv_frame()
            if opcode == CLOSE:
                return struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None

    def close(self) -> None:
        self.sock.close()


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (kB) of a process, from /proc/PID/status."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out
