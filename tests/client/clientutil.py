"""Helpers for the client-side tests: callback recorders, raw servers, processes.

Everything talks to 127.0.0.1 only.  Every wait is bounded (``pump`` fails the test
after its timeout), raw servers run on a helper thread with socket timeouts, and every
process started here is stopped by PID.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from support.procs import STOP_GRACE

from lwsbridge.context import Connection, Reason

HOST = "127.0.0.1"
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# Reasons a client connection may see (the context-wide ones come with conn None).
CONN_REASONS = {
    Reason.CLIENT_CONNECTION_ERROR,
    Reason.CLIENT_FILTER_PRE_ESTABLISH,
    Reason.CLIENT_ESTABLISHED,
    Reason.CLOSED,
    Reason.CLIENT_RECEIVE,
    Reason.CLIENT_RECEIVE_PONG,
    Reason.CLIENT_WRITEABLE,
    Reason.CLIENT_APPEND_HANDSHAKE_HEADER,
    Reason.WS_PEER_INITIATED_CLOSE,
    Reason.TIMER,
    Reason.WSI_CREATE,
    Reason.WSI_DESTROY,
}


# ---------------------------------------------------------------------------- recorder


@dataclass
class Recorder:
    """A protocol callback that records every call as (conn, reason, payload).

    ``hooks[reason]`` may return the callback's result (or None for 0).
    """

    hooks: dict[Reason, Callable[[Connection | None, Any], Any]] = field(default_factory=dict)
    calls: list[tuple[Connection | None, Reason, Any]] = field(default_factory=list)

    def callback(self, conn: Connection | None, reason: Reason, user: Any, payload: Any) -> int:
        if isinstance(payload, memoryview):
            payload = bytes(payload)
        self.calls.append((conn, reason, payload))
        hook = self.hooks.get(reason)
        if hook is not None:
            r = hook(conn, payload)
            return int(r or 0)
        return 0

    @classmethod
    def writer(cls, writeable: Callable[[Connection | None, Any], Any]) -> Recorder:
        """A recorder that asks for CLIENT_WRITEABLE once established and lets
        ``writeable(conn, payload)`` answer each one."""
        return cls(
            hooks={
                Reason.CLIENT_ESTABLISHED: lambda c, p: c.callback_on_writable(),
                Reason.CLIENT_WRITEABLE: writeable,
            }
        )

    def of(self, conn: Connection) -> list[tuple[Reason, Any]]:
        """Every (reason, payload) delivered for ``conn``, in order."""
        return [(r, p) for c, r, p in self.calls if c is conn]

    def reasons(self, conn: Connection) -> list[Reason]:
        return [r for r, _p in self.of(conn)]

    def count(self, conn: Connection, reason: Reason) -> int:
        return sum(1 for c, r, _p in self.calls if c is conn and r is reason)

    def first(self, conn: Connection, reason: Reason) -> Any:
        for c, r, p in self.calls:
            if c is conn and r is reason:
                return p
        raise AssertionError(f"no {reason.name} for {conn!r}: {self.reasons(conn)}")

    def received(self, conn: Connection) -> list[bytes]:
        return [p for r, p in self.of(conn) if r is Reason.CLIENT_RECEIVE]

    def has(self, conn: Connection, reason: Reason) -> bool:
        return self.count(conn, reason) > 0

    def ended(self, conn: Connection) -> bool:
        return self.has(conn, Reason.CLOSED) or self.has(conn, Reason.CLIENT_CONNECTION_ERROR)


def assert_only_connection_error(rec: Recorder, conn: Connection) -> str:
    """``conn`` got exactly one CLIENT_CONNECTION_ERROR and no other connection-level
    callback except CLIENT_APPEND_HANDSHAKE_HEADER / CLIENT_FILTER_PRE_ESTABLISH (which
    are part of connecting).  Returns the reason text."""
    got = rec.reasons(conn)
    assert got.count(Reason.CLIENT_CONNECTION_ERROR) == 1, got
    allowed = {
        Reason.CLIENT_CONNECTION_ERROR,
        Reason.CLIENT_APPEND_HANDSHAKE_HEADER,
        Reason.CLIENT_FILTER_PRE_ESTABLISH,
    }
    assert set(got) <= allowed, got
    assert got[-1] is Reason.CLIENT_CONNECTION_ERROR, got
    why = rec.first(conn, Reason.CLIENT_CONNECTION_ERROR)
    assert isinstance(why, str) and why.strip(), repr(why)
    return why


# ---------------------------------------------------------------------------- frames


@dataclass
class WireFrame:
    fin: bool
    opcode: int
    masked: bool
    key: bytes
    payload: bytes  # unmasked

    @property
    def close_code(self) -> int | None:
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None


def parse_frames(buf: bytearray) -> list[WireFrame]:
    """Take every complete frame off the front of ``buf`` (client or server frames)."""
    out: list[WireFrame] = []
    while len(buf) >= 2:
        b0, b1 = buf[0], buf[1]
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            if len(buf) < 4:
                break
            n = struct.unpack("!H", buf[2:4])[0]
            pos = 4
        elif n == 127:
            if len(buf) < 10:
                break
            n = struct.unpack("!Q", buf[2:10])[0]
            pos = 10
        masked = bool(b1 & 0x80)
        key = b""
        if masked:
            if len(buf) < pos + 4:
                break
            key = bytes(buf[pos : pos + 4])
            pos += 4
        if len(buf) < pos + n:
            break
        data = bytes(buf[pos : pos + n])
        if masked:
            data = bytes(b ^ key[i & 3] for i, b in enumerate(data))
        out.append(WireFrame(bool(b0 & 0x80), b0 & 0x0F, masked, key, data))
        del buf[: pos + n]
    return out


def server_frame(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    """An unmasked (server) frame."""
    head = bytearray([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head.append(n)
    elif n < 65536:
        head.append(126)
        head += struct.pack("!H", n)
    else:
        head.append(127)
        head += struct.pack("!Q", n)
    return bytes(head) + payload


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def parse_request(head: bytes) -> tuple[str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return lines[0], headers


def upgrade_response(headers: dict[str, str], *, protocol: str | None = None) -> bytes:
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(headers['sec-websocket-key'])}",
    ]
    if protocol:
        lines.append(f"Sec-WebSocket-Protocol: {protocol}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# ---------------------------------------------------------------------------- raw servers


class RawServer:
    """A loopback listener whose connections a helper thread handles with ``handler``.

    ``handler(sock, server)`` runs on the helper thread for each accepted connection
    (sockets have a timeout, so it cannot hang forever); what it records goes to
    ``server.requests`` / ``server.wire`` / ``server.notes``.  ``accept=False`` leaves
    connections in the backlog, unaccepted.
    """

    def __init__(
        self, handler: Callable[[socket.socket, RawServer], None] | None, accept: bool = True
    ) -> None:
        self.handler = handler
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port: int = self.sock.getsockname()[1]
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.wire = bytearray()
        self.notes: list[Any] = []
        self.errors: list[BaseException] = []
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if accept:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        end = time.monotonic() + 30  # hard cap on the helper's life
        while not self._stop.is_set() and time.monotonic() < end:
            try:
                s, _peer = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            s.settimeout(5.0)
            self.accepted.append(s)
            if self.handler is None:
                continue  # accept and never answer
            try:
                self.handler(s, self)
            except Exception as exc:
                self.errors.append(exc)

    def read_request(self, s: socket.socket) -> tuple[str, dict[str, str]]:
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                raise ConnectionError("client closed before the request was complete")
            buf += chunk
        head, rest = buf.split(b"\r\n\r\n", 1)
        self.wire += rest
        req = parse_request(head)
        self.requests.append(req)
        return req

    def read_frames(self, s: socket.socket, until: Callable[[list[WireFrame]], bool]) -> None:
        """Read client frames into ``notes`` until ``until(notes)`` or EOF/timeout."""
        buf = bytearray(self.wire)
        while True:
            self.notes.extend(parse_frames(buf))
            if until(self.notes):
                return
            try:
                chunk = s.recv(65536)
            except (TimeoutError, OSError):
                return
            if not chunk:
                return
            self.wire += chunk
            buf += chunk

    def close(self) -> None:
        self._stop.set()
        for s in self.accepted:  # wakes a handler blocked in recv
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=2)
        for s in self.accepted:
            with contextlib.suppress(OSError):
                s.close()
        self.sock.close()


@contextlib.contextmanager
def raw_server(
    handler: Callable[[socket.socket, RawServer], None] | None, accept: bool = True
) -> Iterator[RawServer]:
    srv = RawServer(handler, accept)
    try:
        yield srv
    finally:
        srv.close()


def closed_port() -> int:
    """A loopback port with nothing listening (bound then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------- processes
# (server subprocesses, free ports and peers are in tests/support: procs.py, peers.py)


def run_bounded(cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` to completion, killing it by PID if it outlives ``timeout``."""
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=STOP_GRACE)
        pytest.fail(f"{cmd[0]} did not finish within {timeout} s; stderr:\n{err[-4000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
