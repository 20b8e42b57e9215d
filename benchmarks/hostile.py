"""What a hostile peer costs an lwsbridge server: the figures behind docs/security.md.

Runs an echo server (permessage-deflate on, default limits and timeouts, the built-in
loop) in a subprocess on 127.0.0.1 and attacks it from this process, bounded in count
and time, measuring the server's RSS (/proc/PID/status) and what each attack gets:

1. idle connections: RSS per open, upgraded, idle WebSocket;
2. slowloris: connections that send one header byte every 0.5 s: when they are closed;
   and a normal client's round trip meanwhile;
3. an oversized request head (64 KiB): the answer and how fast;
4. a decompression bomb: 64 MiB of zeros deflated into one message (about 64 KiB on
   the wire) against the 1 MiB message limit: the close code and the RSS it cost;
5. a frame flood: 100,000 small frames in one write: all echoed, and the RSS after;
6. a connection flood above max_connections (1,000): how many got 503, RSS after.

    python benchmarks/hostile.py            # about 30 s; prints a markdown table
"""

from __future__ import annotations

import base64
import contextlib
import os
import resource
import socket
import struct
import subprocess
import sys
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
LIMIT = 1000


def serve(port: int) -> None:
    from lwsbridge.context import Context, Protocol, Reason, WriteKind

    class S:
        def __init__(self) -> None:
            self.parts: list[bytes] = []
            self.out: list[tuple[bytes, bool]] = []

    def echo(conn, reason, user, payload):  # type: ignore[no-untyped-def]
        if reason is Reason.RECEIVE:
            user.parts.append(payload)
            if conn.is_final_fragment():
                user.out.append((b"".join(user.parts), conn.frame_is_binary()))
                user.parts.clear()
                conn.callback_on_writable()
        elif reason is Reason.SERVER_WRITEABLE and user.out:
            data, binary = user.out.pop(0)
            conn.write(data, WriteKind.BINARY if binary else WriteKind.TEXT)
            if user.out:
                conn.callback_on_writable()
        return 0

    ctx = Context(
        [Protocol("echo", echo, S, deflate=True)],
        port=port,
        interface="127.0.0.1",
        max_connections=LIMIT,
    )
    print("READY", flush=True)
    while True:
        ctx.service(1000)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def upgrade(port: int, deflate: bool = False) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    ext = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else ""
    s.sendall(
        f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head[:80]
    if deflate:
        assert b"permessage-deflate" in head, head
    return s


def frame(payload: bytes, opcode: int = 2, rsv1: bool = False) -> bytes:
    mask = os.urandom(4)
    b0 = 0x80 | opcode | (0x40 if rsv1 else 0)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", b0, 0x80 | 127, n)
    return head + mask + _mask(payload, mask)


def _mask(data: bytes, mask: bytes) -> bytes:
    n = len(data)
    m = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(data, "big") ^ m).to_bytes(n, "big")


def read_exactly(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def read_frame(s: socket.socket) -> tuple[int, bytes]:
    b0, b1 = read_exactly(s, 2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", read_exactly(s, 2))
    elif n == 127:
        (n,) = struct.unpack("!Q", read_exactly(s, 8))
    return b0 & 0x0F, read_exactly(s, n)


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]))
        return 0
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    port = free_port()
    srv = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    rows: list[tuple[str, str]] = []
    try:
        assert srv.stdout is not None and srv.stdout.readline().strip() == "READY"
        time.sleep(0.3)
        base = rss_kib(srv.pid)

        # 1. idle connections
        idle = [upgrade(port) for _ in range(500)]
        time.sleep(0.5)
        per = (rss_kib(srv.pid) - base) / len(idle)
        rows.append(("idle WebSocket (500 open)", f"{per:.1f} KiB server RSS each"))
        for s in idle:
            s.close()
        time.sleep(0.5)

        # 2. slowloris
        slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(200)]
        t0 = time.monotonic()
        line = b"GET / HTTP/1.1\r\nX-Slow: " + b"a" * 100
        closed_at: dict[int, float] = {}
        probe_rtts: list[float] = []
        i = 0
        while len(closed_at) < len(slow) and time.monotonic() - t0 < 15:
            for k, s in enumerate(slow):
                if k in closed_at:
                    continue
                try:
                    s.send(line[i % len(line) : i % len(line) + 1])
                except OSError:
                    closed_at[k] = time.monotonic() - t0
            i += 1
            c = upgrade(port)
            p0 = time.monotonic()
            c.sendall(frame(b"ping?"))
            read_frame(c)
            probe_rtts.append((time.monotonic() - p0) * 1000)
            c.close()
            time.sleep(0.5)
        for s in slow:
            s.close()
        rows.append(
            (
                "slowloris (200 conns, 1 byte / 0.5 s)",
                f"all closed by {max(closed_at.values()) if closed_at else float('nan'):.1f} s "
                f"(handshake_timeout 5 s); a normal client's echo meanwhile: "
                f"max {max(probe_rtts):.1f} ms",
            )
        )

        # 3. oversized head
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        t0 = time.monotonic()
        with contextlib.suppress(OSError):  # the server may answer and close first
            s.sendall(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 65536 + b"\r\n\r\n")
        answer = s.recv(200).split(b"\r\n", 1)[0]
        ms = (time.monotonic() - t0) * 1000
        rows.append(("request head of 64 KiB", f"{answer.decode()} in {ms:.1f} ms"))
        s.close()

        # 4. decompression bomb
        before = rss_kib(srv.pid)
        c = upgrade(port, deflate=True)
        comp = zlib.compressobj(9, zlib.DEFLATED, -15)
        bomb = comp.compress(b"\0" * (64 << 20)) + comp.flush(zlib.Z_SYNC_FLUSH)
        bomb = bomb[:-4]  # RFC 7692: without the trailing 00 00 ff ff
        c.sendall(frame(bomb, 2, rsv1=True))
        op, payload = read_frame(c)
        code = struct.unpack("!H", payload[:2])[0] if op == 8 and len(payload) >= 2 else None
        peak = rss_kib(srv.pid)
        c.close()
        rows.append(
            (
                f"deflate bomb ({len(bomb) // 1024} KiB inflating to 64 MiB)",
                f"closed with {code}; server RSS +{(peak - before) / 1024:.1f} MiB",
            )
        )

        # 5. frame flood
        before = rss_kib(srv.pid)
        c = upgrade(port)
        one = frame(b"x" * 16)
        t0 = time.monotonic()
        c.sendall(one * 100_000)
        want = 100_000 * (2 + 16)  # the echoes: unmasked, 2-byte headers
        got = 0
        while got < want:
            chunk = c.recv(1 << 20)
            if not chunk:
                raise ConnectionError("closed during the flood")
            got += len(chunk)
        took = time.monotonic() - t0
        rows.append(
            (
                "100,000 frames of 16 B in one write",
                f"all echoed in {took:.2f} s; "
                f"server RSS +{(rss_kib(srv.pid) - before) / 1024:.1f} MiB",
            )
        )
        c.close()

        # 6. connection flood above the limit
        time.sleep(0.5)
        before = rss_kib(srv.pid)
        held: list[socket.socket] = []
        refused = 0
        for _ in range(LIMIT + 500):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.setblocking(False)
            held.append(s)
        time.sleep(1.0)
        for s in held:
            try:
                if s.recv(64).startswith(b"HTTP/1.1 503"):
                    refused += 1
            except BlockingIOError:
                pass
            except OSError:
                pass
        rows.append(
            (
                f"{LIMIT + 500} connections, max_connections {LIMIT}",
                f"{refused} answered 503 at once; "
                f"server RSS +{(rss_kib(srv.pid) - before) / 1024:.1f} MiB",
            )
        )
        for s in held:
            s.close()
    finally:
        srv.terminate()
        try:
            srv.wait(5)
        except subprocess.TimeoutExpired:
            srv.kill()
    print("| attack | result |\n|---|---|")
    for a, r in rows:
        print(f"| {a} | {r} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
