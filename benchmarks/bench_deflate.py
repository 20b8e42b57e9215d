"""permessage-deflate benchmark: compressed 4 KiB text echo, websockets 17 vs lwsbridge.

Run from the repository root::

    python benchmarks/bench_deflate.py                        # 3 rounds x 3 s, ~30 s
    python benchmarks/bench_deflate.py --rounds 1 --duration 1  # quick look
    python benchmarks/bench_deflate.py --memory               # KiB per idle connection
    python benchmarks/bench_deflate.py --profile              # + cProfile of lwsbridge

Servers (each pinned to cpu 0 with ``taskset``):

* ``websockets``: ``shared/bench/servers/ws_websockets.py`` under ``--ws-python``
  (default ``/tmp/wsbench/venv/bin/python``, websockets 17.4): library defaults, i.e.
  ``compression="deflate"`` (server_max_window_bits=12, client_max_window_bits=12,
  memLevel 5), max_size 16 MiB;
* ``lwsbridge``: ``lwsbridge-test-echo`` (``Protocol(deflate=True)``: the
  ``PerMessageDeflateFactory`` defaults) under this interpreter.

The client is the same for both: this script, pinned to cpu 1, one process, plain
sockets and stdlib ``zlib`` (no WebSocket library), ``--conns`` connections (default 50)
each keeping ``--window`` messages (default 8) in flight.  It offers
``permessage-deflate; client_max_window_bits``, keeps both compression contexts
(context takeover, as browsers do), compresses with the window the server granted at
level 1 (cheap for the client; the server's inflate cost does not depend on it) and
checks every echo byte for byte after inflating it.  Messages are 4096 bytes of ASCII
prose (random words and numbers), 512 different ones, each connection cycling through
them from its own offset, so consecutive messages differ and repeats are far outside
any deflate window.  The rate is echoes per second over ``--duration`` seconds after
``--warmup``; the server's CPU time in that window comes from /proc/PID/stat.
Everything talks to 127.0.0.1 only; every server is stopped by PID.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import platform
import random
import selectors
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import time
import zlib
from collections import deque
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
HOST = "127.0.0.1"
TAIL = b"\x00\x00\xff\xff"
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
    "incididunt",
    "ut",
    "labore",
    "et",
    "dolore",
    "magna",
    "aliqua",
    "enim",
    "ad",
    "minim",
    "veniam",
    "quis",
    "nostrud",
    '{"id":',
    '"name":',
    '"value":',
    "true,",
    "false,",
    "null,",
    "[1,",
    "2,",
    "3],",
    '"user":',
    '"time":',
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def messages(count: int, size: int) -> list[bytes]:
    rnd = random.Random(1234)
    out = []
    for _ in range(count):
        words: list[str] = []
        n = 0
        while n < size:
            w = rnd.choice(WORDS) if rnd.random() < 0.85 else str(rnd.randrange(10**6))
            words.append(w)
            n += len(w) + 1
        out.append(" ".join(words)[:size].encode())
    return out


def proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def vm_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# ---------------------------------------------------------------------------- servers


def server_cmd(name: str, port: int, ws_python: str, profile: str | None = None) -> list[str]:
    if profile:
        return [
            sys.executable,
            "-m",
            "cProfile",
            "-o",
            profile,
            "-m",
            "lwsbridge.apps.echo_server",
            "-p",
            str(port),
            "-i",
            HOST,
            "-d",
            "3",
        ]
    if name == "websockets":
        script = REPO.parent / "shared" / "bench" / "servers" / "ws_websockets.py"
        return [ws_python, str(script), str(port)]
    exe = Path(sys.executable).parent / "lwsbridge-test-echo"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "lwsbridge.apps.echo_server"]
    return [*cmd, "-p", str(port), "-i", HOST, "-d", "3"]


@contextlib.contextmanager
def running(name: str, ws_python: str, profile: str | None = None) -> Any:
    port = free_port()
    cmd = server_cmd(name, port, ws_python, profile)
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        cmd = ["taskset", "-c", "0", *cmd]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((HOST, port), 0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise RuntimeError(f"{name} did not start: {err}") from None
                time.sleep(0.05)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(3)


# ---------------------------------------------------------------------------- client


class Conn:
    __slots__ = ("buf", "comp", "decomp", "expect", "i", "parts", "sock")

    def __init__(self, port: int, offset: int, deflate: bool = True) -> None:
        s = socket.create_connection((HOST, port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        ext = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        s.sendall(
            (
                f"GET / HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\n{ext if deflate else ''}\r\n"
            ).encode()
        )
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = s.recv(4096)
            if not data:
                raise RuntimeError("server closed during the handshake")
            buf += data
        head, _, rest = buf.partition(b"\r\n\r\n")
        text = head.decode("latin-1")
        if not text.startswith("HTTP/1.1 101"):
            raise RuntimeError(f"handshake refused: {text.splitlines()[0]}")
        neg = ""
        for line in text.split("\r\n")[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == "sec-websocket-extensions":
                neg = v.strip()
        if deflate and not neg.startswith("permessage-deflate"):
            raise RuntimeError(f"permessage-deflate not negotiated: {neg!r}")
        bits = 15
        for p in neg.split(";"):
            k, _, v = p.strip().partition("=")
            if k == "client_max_window_bits" and v:
                bits = int(v)
        self.sock = s
        self.buf = bytearray(rest)
        self.comp = zlib.compressobj(1, zlib.DEFLATED, -max(bits, 9), 8)
        self.decomp = zlib.decompressobj(-15)
        self.expect: deque[bytes] = deque()
        self.parts: list[bytes] = []
        self.i = offset

    def frame(self, msg: bytes) -> bytes:
        c = self.comp
        z = c.compress(msg) + c.flush(zlib.Z_SYNC_FLUSH)
        z = z[:-4]
        n = len(z)
        # masked with a random key, masking by big-int XOR (fast in CPython)
        key = os.urandom(4)
        k = (key * (n // 4 + 1))[:n]
        body = (int.from_bytes(z, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")
        if n < 126:
            head = struct.pack("!BB", 0xC1, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0xC1, 0xFE, n)
        else:
            head = struct.pack("!BBQ", 0xC1, 0xFF, n)
        return head + key + body


def run_client(
    port: int, conns: int, window: int, duration: float, warmup: float, pid: int
) -> dict[str, Any]:
    pool = messages(512, 4096)
    cs = [Conn(port, i * 37) for i in range(conns)]
    sel = selectors.DefaultSelector()
    for c in cs:
        c.sock.setblocking(False)
        sel.register(c.sock, selectors.EVENT_READ, c)
        out = []
        for _ in range(window):
            m = pool[c.i % 512]
            c.i += 1
            c.expect.append(m)
            out.append(c.frame(m))
        c.sock.sendall(b"".join(out))  # small: the kernel takes it at once
    count = 0
    wire = 0  # compressed payload bytes of the echoes
    t0 = time.monotonic()
    t_start = t0 + warmup
    t_end = t_start + duration
    started = False
    c_start = w_start = 0
    cpu0 = s_cpu0 = 0.0
    while True:
        now = time.monotonic()
        if not started and now >= t_start:
            started, c_start, w_start = True, count, wire
            cpu0, s_cpu0 = time.process_time(), proc_cpu(pid)
        if now >= t_end:
            break
        for key, _ev in sel.select(0.5):
            c = key.data
            try:
                data = c.sock.recv(1 << 18)
            except BlockingIOError:
                continue
            if not data:
                raise RuntimeError("server closed a connection")
            buf = c.buf
            buf += data
            out = []
            while len(buf) >= 2:
                b0, b1 = buf[0], buf[1]
                n = b1 & 0x7F
                h = 2
                if n == 126:
                    if len(buf) < 4:
                        break
                    n = (buf[2] << 8) | buf[3]
                    h = 4
                elif n == 127:
                    if len(buf) < 10:
                        break
                    n = int.from_bytes(buf[2:10], "big")
                    h = 10
                if len(buf) < h + n:
                    break
                payload = bytes(buf[h : h + n])
                del buf[: h + n]
                op = b0 & 0x0F
                if op in (0x9, 0xA):
                    continue
                if op == 0x8:
                    raise RuntimeError(f"server sent close: {payload[:2].hex()}")
                if not b0 & 0x80:
                    c.parts.append(payload)
                    continue
                if c.parts:
                    c.parts.append(payload)
                    payload = b"".join(c.parts)
                    c.parts.clear()
                if not (b0 & 0x40 or c.parts):
                    raise RuntimeError("echo not compressed")
                wire += len(payload)
                msg = c.decomp.decompress(payload + TAIL)
                if msg != c.expect.popleft():
                    raise RuntimeError("echo mismatch")
                count += 1
                m = pool[c.i % 512]
                c.i += 1
                c.expect.append(m)
                out.append(c.frame(m))
            if out:
                c.sock.setblocking(True)
                c.sock.sendall(b"".join(out))
                c.sock.setblocking(False)
    elapsed = time.monotonic() - t_start
    n = count - c_start
    s_cpu = proc_cpu(pid) - s_cpu0
    cl_cpu = time.process_time() - cpu0
    for c in cs:
        c.sock.close()
    sel.close()
    return {
        "rate": n / elapsed,
        "server_cpu": s_cpu / elapsed,
        "client_cpu": cl_cpu / elapsed,
        "per_cpu_s": n / s_cpu if s_cpu else float("nan"),
        "wire": (wire - w_start) / n if n else float("nan"),
    }


# ---------------------------------------------------------------------------- memory


def idle_memory(name: str, ws_python: str, n: int, deflate: bool, one_message: bool) -> float:
    """(server VmRSS with n idle connections - before) / n, in KiB."""
    msg = messages(1, 4096)[0]
    with running(name, ws_python) as (proc, port):
        warm = Conn(port, 0, deflate)
        warm.sock.sendall(warm.frame(msg) if deflate else b"")
        time.sleep(0.3)
        before = vm_rss(proc.pid)
        cs = [Conn(port, 0, deflate) for _ in range(n)]
        if one_message:
            for c in cs:
                c.sock.sendall(c.frame(msg))
            for c in cs:  # the echo back: the server's compressor exists too
                got = b""
                while len(got) < 4:
                    got += c.sock.recv(65536)
        time.sleep(0.5)
        after = vm_rss(proc.pid)
        for c in [*cs, warm]:
            c.sock.close()
        return (after - before) / n


# ---------------------------------------------------------------------------- driver


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument("--ws-python", default="/tmp/wsbench/venv/bin/python")
    ap.add_argument("--servers", default="websockets,lwsbridge")
    ap.add_argument("--memory", action="store_true", help="KiB per idle connection instead")
    ap.add_argument("--idle", type=int, default=1000, help="connections for --memory")
    ap.add_argument("--profile", action="store_true", help="run lwsbridge under cProfile")
    args = ap.parse_args()
    servers = args.servers.split(",")
    if (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {1})
    print(f"# permessage-deflate benchmark, {time.strftime('%Y-%m-%d %H:%M')}")
    print(
        f"- Python {platform.python_version()}, {os.cpu_count()} CPUs, zlib "
        f"{zlib.ZLIB_RUNTIME_VERSION}; servers on cpu 0, this client on cpu 1\n"
    )
    if args.memory:
        print(f"KiB per connection, {args.idle} connections (server VmRSS delta / N)\n")
        print(
            "| server | idle, no deflate | idle, deflate negotiated "
            "| deflate, after one 4 KiB message each |"
        )
        print("|---|--:|--:|--:|")
        for name in servers:
            row = [
                idle_memory(name, args.ws_python, args.idle, False, False),
                idle_memory(name, args.ws_python, args.idle, True, False),
                idle_memory(name, args.ws_python, args.idle, True, True),
            ]
            print(f"| {name} | " + " | ".join(f"{x:.1f}" for x in row) + " |")
        return 0
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in servers}
    ratios: list[float] = []
    for r in range(args.rounds):
        order = servers if r % 2 == 0 else servers[::-1]
        this: dict[str, float] = {}
        for name in order:
            prof = None
            if args.profile and name == "lwsbridge":
                prof = f"/tmp/bench_deflate_lwsbridge_r{r + 1}.prof"
            with running(name, args.ws_python, prof) as (proc, port):
                res = run_client(
                    port, args.conns, args.window, args.duration, args.warmup, proc.pid
                )
            results[name].append(res)
            if prof:
                print(f"profile: {prof}", file=sys.stderr)
            this[name] = res["rate"]
            print(
                f"round {r + 1} {name}: {res['rate']:,.0f} msg/s "
                f"(server {100 * res['server_cpu']:.0f}% cpu, "
                f"client {100 * res['client_cpu']:.0f}%)",
                file=sys.stderr,
            )
        if "websockets" in this and "lwsbridge" in this:
            ratios.append(this["lwsbridge"] / this["websockets"])
    print(
        f"{args.conns} conns x {args.window} in flight, 4096 B text messages, "
        f"{args.rounds} rounds x {args.duration} s (+{args.warmup} s warmup); medians\n"
    )
    print(
        "| server | msg/s | msg/server-CPU-s | server CPU % | client CPU % | echo B on the wire |"
    )
    print("|---|--:|--:|--:|--:|--:|")
    for name in servers:
        rs = results[name]
        med = {k: statistics.median(x[k] for x in rs) for k in rs[0]}
        print(
            f"| {name} | {med['rate']:,.0f} | {med['per_cpu_s']:,.0f} | "
            f"{100 * med['server_cpu']:.0f} | {100 * med['client_cpu']:.0f} | "
            f"{med['wire']:,.0f} |"
        )
    if ratios:
        print(
            "\nlwsbridge / websockets msg/s per round: "
            + ", ".join(f"{x:.2f}" for x in ratios)
            + f"; median {statistics.median(ratios):.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
