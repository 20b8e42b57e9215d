"""A raw-socket WebSocket/HTTP client for the context tests, and waits built on it.

The client never blocks the thread that services the context: reads are non-blocking
(``pull``), writes are small enough for the kernel to take at once.  Its handshake
and frame code is hand-written and independent of lwsbridge's own parser.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import select
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from support.servicing import DEADLINE, pump, stepper

from lwsbridge.context import Context, PollFd, Reason

HOST = "127.0.0.1"
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


# ---------------------------------------------------------------------------- frames


def encode_frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, mask: bool = True
) -> bytes:
    """One client frame (masked unless ``mask`` is False)."""
    head = bytearray([(0x80 if fin else 0) | opcode])
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head.append(mbit | n)
    elif n < 65536:
        head.append(mbit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(mbit | 127)
        head += struct.pack("!Q", n)
    if not mask:
        return bytes(head) + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i & 3] for i, b in enumerate(payload))
    return bytes(head) + key + masked


def text(msg: str | bytes) -> bytes:
    return encode_frame(TEXT, msg.encode() if isinstance(msg, str) else msg)


def close_frame(code: int | None = 1000, reason: str = "") -> bytes:
    payload = b"" if code is None else struct.pack("!H", code) + reason.encode()
    return encode_frame(CLOSE, payload)


@dataclass
class Frame:
    fin: bool
    opcode: int
    payload: bytes

    @property
    def close_code(self) -> int | None:
        assert self.opcode == CLOSE
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    @property
    def close_reason(self) -> str:
        return self.payload[2:].decode()


@dataclass
class HTTPResponse:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class RawClient:
    """A TCP client on 127.0.0.1 that the test drives by hand."""

    port: int
    rcvbuf: int | None = None
    sock: socket.socket = field(init=False)
    buf: bytearray = field(init=False, default_factory=bytearray)
    eof: bool = field(init=False, default=False)
    reset: bool = field(init=False, default=False)
    key: bytes = field(init=False, default=b"")

    def __post_init__(self) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self.rcvbuf is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        s.settimeout(DEADLINE)
        s.connect((HOST, self.port))
        s.setblocking(False)
        self.sock = s

    # -- raw I/O -------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.sock.settimeout(DEADLINE)
        try:
            self.sock.sendall(data)
        finally:
            self.sock.setblocking(False)

    def pull(self, limit: int = 1 << 22) -> int:
        """Read what the kernel has, without blocking; note EOF/RST."""
        got = 0
        while got < limit and not self.eof:
            try:
                data = self.sock.recv(min(65536, limit - got))
            except BlockingIOError:
                break
            except ConnectionResetError:
                self.eof = self.reset = True
                break
            if not data:
                self.eof = True
                break
            self.buf += data
            got += len(data)
        return got

    def shutdown_write(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def abort(self) -> None:
        """Close with RST (SO_LINGER 0)."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        self.sock.close()

    # -- HTTP ----------------------------------------------------------------------------

    def send_upgrade(
        self,
        path: str = "/",
        protocols: tuple[str, ...] = (),
        extra: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.key = base64.b64encode(os.urandom(16))
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {HOST}:{self.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {self.key.decode()}",
            "Sec-WebSocket-Version: 13",
        ]
        if protocols:
            lines.append("Sec-WebSocket-Protocol: " + ", ".join(protocols))
        lines += [f"{k}: {v}" for k, v in extra]
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode())

    def send_get(self, path: str, *, close: bool = False) -> None:
        conn = "Connection: close\r\n" if close else ""
        self.send(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n{conn}\r\n".encode())

    def take_response(self) -> HTTPResponse | None:
        """A whole HTTP response from the buffer (body by Content-Length or EOF)."""
        self.pull()
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        _version, status, *reason = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        start = end + 4
        if status == "101":
            length = 0
        elif "content-length" in headers:
            length = int(headers["content-length"])
        elif self.eof:
            length = len(self.buf) - start
        else:
            return None
        if len(self.buf) - start < length:
            return None
        body = bytes(self.buf[start : start + length])
        del self.buf[: start + length]
        return HTTPResponse(int(status), reason[0] if reason else "", headers, body)

    def check_accept(self, resp: HTTPResponse) -> None:
        assert resp.status == 101, resp
        expected = base64.b64encode(hashlib.sha1(self.key + GUID).digest()).decode()
        assert resp.headers["sec-websocket-accept"] == expected

    # -- frames --------------------------------------------------------------------------

    def take_frame(self) -> Frame | None:
        """One whole server frame from the buffer (servers never mask)."""
        self.pull()
        buf = self.buf
        if len(buf) < 2:
            return None
        b0, b1 = buf[0], buf[1]
        assert not b1 & 0x80, "server frames must not be masked"
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            if len(buf) < 4:
                return None
            n = struct.unpack("!H", buf[2:4])[0]
            pos = 4
        elif n == 127:
            if len(buf) < 10:
                return None
            n = struct.unpack("!Q", buf[2:10])[0]
            pos = 10
        if len(buf) < pos + n:
            return None
        frame = Frame(bool(b0 & 0x80), b0 & 0x0F, bytes(buf[pos : pos + n]))
        del buf[: pos + n]
        return frame


# ---------------------------------------------------------------------------- waits


def handshake(ctx: Context, client: RawClient, path: str = "/", **kw: Any) -> HTTPResponse:
    """Send the upgrade, service until the 101 arrives, check it."""
    client.send_upgrade(path, **kw)
    resp = pump(stepper(ctx), client.take_response, "the 101 response")
    client.check_accept(resp)
    return resp


def wait_frame(ctx: Context | Callable[[], Any], client: RawClient, what: str = "a frame") -> Frame:
    step = stepper(ctx) if isinstance(ctx, Context) else ctx
    return pump(step, client.take_frame, what)


def wait_eof(ctx: Context | Callable[[], Any], client: RawClient, what: str = "EOF") -> None:
    step = stepper(ctx) if isinstance(ctx, Context) else ctx

    def done() -> bool:
        client.pull()
        return client.eof

    pump(step, done, what)


# ---------------------------------------------------------------------------- external loop


POLL_REASONS = (
    Reason.ADD_POLL_FD,
    Reason.DEL_POLL_FD,
    Reason.SET_MODE_POLL_FD,
    Reason.CLEAR_MODE_POLL_FD,
)


class ExternalLoop:
    """A host loop on ``select.poll()`` fed only by protocol 0's poll callbacks.

    ``on_p0(reason, payload)`` must be called from protocol 0's callback for every
    context-wide reason.  Foreign fds (the host's own) can be watched alongside.
    """

    def __init__(self) -> None:
        self.poll = select.poll()
        self.events: dict[int, int] = {}  # what the context wants, per fd
        self.log: list[tuple[Reason, int, int, int]] = []  # poll events only
        self.raw: list[tuple[Reason, Any]] = []  # every context-wide reason, in order
        self.fstat_at_del: dict[int, bool] = {}
        self.foreign: dict[int, list[int]] = {}  # fd -> revents seen
        self.ctx: Context | None = None

    def on_p0(self, reason: Reason, payload: Any) -> None:
        self.raw.append((reason, payload))
        if reason not in POLL_REASONS:
            return
        a = payload
        self.log.append((reason, a.fd, a.events, a.prev_events))
        if reason is Reason.ADD_POLL_FD:
            assert a.fd not in self.events, f"ADD for fd {a.fd} already watched"
            assert a.prev_events == 0
            self.events[a.fd] = a.events
            self.poll.register(a.fd, a.events)
        elif reason is Reason.DEL_POLL_FD:
            assert self.events.pop(a.fd) == a.prev_events
            try:
                os.fstat(a.fd)
                self.fstat_at_del[a.fd] = True
            except OSError as exc:
                assert exc.errno == errno.EBADF
                self.fstat_at_del[a.fd] = False
            self.poll.unregister(a.fd)
        else:
            assert self.events[a.fd] == a.prev_events, "SET/CLEAR prev_events mismatch"
            if reason is Reason.SET_MODE_POLL_FD:
                assert a.events & ~a.prev_events and not a.prev_events & ~a.events
            else:
                assert a.prev_events & ~a.events and not a.events & ~a.prev_events
            self.events[a.fd] = a.events
            self.poll.modify(a.fd, a.events)

    def watch_foreign(self, fd: int, events: int) -> None:
        self.foreign[fd] = []
        self.poll.register(fd, events)

    def unwatch_foreign(self, fd: int) -> None:
        self.poll.unregister(fd)

    def run_once(self, timeout_ms: int = 10) -> None:
        ctx = self.ctx
        assert ctx is not None
        nt = ctx.next_timeout()
        wait = timeout_ms if nt is None else min(nt, timeout_ms)
        for fd, rev in self.poll.poll(wait):
            if fd in self.foreign:
                pfd = PollFd(fd, 0, rev)
                assert ctx.service_fd(pfd) is False
                assert pfd.revents == rev, "a foreign fd's revents must be left alone"
                self.foreign[fd].append(rev)
                continue
            pfd = PollFd(fd, self.events.get(fd, 0), rev)
            ctx.service_fd(pfd)
            assert pfd.revents == 0, "the context must zero revents of its own fds"
        ctx.service_pending()


# ---------------------------------------------------------------------------- protocols


class Echo:
    """An echo protocol that records every callback: (reason, conn, payload)."""

    def __init__(self, name: str = "echo", hook: Callable[[Reason, Any], None] | None = None):
        self.calls: list[tuple[Reason, Any, Any]] = []
        self.hook = hook  # gets context-wide reasons (conn None), e.g. ExternalLoop.on_p0
        self.queue: dict[Any, list[bytes]] = {}
        self.received: list[bytes] = []

    def count(self, reason: Reason, conn: Any = None) -> int:
        return sum(1 for r, c, _ in self.calls if r is reason and (conn is None or c is conn))

    def conns(self, reason: Reason = Reason.ESTABLISHED) -> list[Any]:
        return [c for r, c, _ in self.calls if r is reason]

    def callback(self, conn: Any, reason: Reason, user: Any, payload: Any) -> int:
        if conn is None:
            if self.hook is not None:
                self.hook(reason, payload)
            if reason not in (Reason.LOCK_POLL, Reason.UNLOCK_POLL, *POLL_REASONS):
                self.calls.append((reason, None, payload))
            return 0
        self.calls.append((reason, conn, payload))
        if reason is Reason.RECEIVE:
            self.received.append(bytes(payload))
            self.queue.setdefault(conn, []).append(bytes(payload))
            conn.callback_on_writable()
        elif reason is Reason.SERVER_WRITEABLE:
            q = self.queue.get(conn)
            if q:
                conn.write(q.pop(0))
                if q:
                    conn.callback_on_writable()
        return 0
