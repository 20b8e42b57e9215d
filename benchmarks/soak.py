"""Soak: N cycles of connect -> upgrade -> echo -> close against one lwsbridge server.

    python benchmarks/soak.py                          # 1,000,000 cycles, built-in loop
    python benchmarks/soak.py --cycles 10000 --loop zmq
    python benchmarks/soak.py --cycles 50000 --json    # what tests/ops/test_ops_soak.py runs

The server is this script with ``--serve`` in a subprocess: the echo protocol, plus a
count of ESTABLISHED and CLOSED per connection (a CLOSED without an ESTABLISHED, or a
second one, is counted as ``unmatched``), printed as one JSON line when it is stopped
(SIGTERM).  The client is a single-threaded epoll state machine on raw sockets that keeps
``--concurrency`` cycles in flight; each cycle connects, upgrades (and checks the 101
and its accept key), sends one masked text message, checks the echo byte for byte,
sends close 1000, checks the server's close frame and waits for the server's TCP close.

The checks (exit status 1 when one fails; ``--json`` prints the figures as one line):

- RSS: the server's VmRSS at the end is at most ``--rss-mb`` (5) MB above its value
  after the warm-up (the first tenth of the cycles);
- fds: the server's open fds at the end equal those after one warm-up cycle;
- callbacks: ESTABLISHED == CLOSED == cycles, nothing unmatched, no connection left;
- CPU: server CPU seconds per cycle in the last tenth is at most ``--cpu-ratio`` (1.5)
  times the first tenth's (``--cpu-ratio 0`` reports it without checking).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from typing import Any

HOST = "127.0.0.1"
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 section 1.3's example pair
MASK = b"\x37\xfa\x21\x3d"
PAYLOAD = b"soak message 0123456789"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def request(port: int) -> bytes:
    return (
        b"GET /soak HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
        % (port, KEY)
    )


def masked(opcode: int, payload: bytes) -> bytes:
    body = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + MASK + body


MSG = masked(0x1, PAYLOAD)
ECHO = bytes([0x81, len(PAYLOAD)]) + PAYLOAD
CLOSE = masked(0x8, b"\x03\xe8")
SERVER_CLOSE = b"\x88\x02\x03\xe8"


# -- the server (--serve) ---------------------------------------------------------------


def serve(port: int, loop: str | None, handshake_timeout: float = 5.0) -> int:
    from lwsbridge.apps.common import serve as serve_on
    from lwsbridge.apps.echo_protocol import EchoSession, echo_callback
    from lwsbridge.context import Context, Protocol, Reason

    class Session(EchoSession):
        __slots__ = ("stage",)

        def __init__(self) -> None:
            super().__init__()
            self.stage = 0  # 1: ESTABLISHED seen, 2: CLOSED seen

    counts = {"established": 0, "closed": 0, "unmatched": 0}
    established, closed = Reason.ESTABLISHED, Reason.CLOSED

    def callback(conn: Any, reason: Reason, user: Any, payload: Any) -> int:
        if reason is established:
            counts["established"] += 1
            user.stage = 1
        elif reason is closed:
            if user is None or user.stage != 1:
                counts["unmatched"] += 1  # CLOSED twice, or without ESTABLISHED
            else:
                user.stage = 2
                counts["closed"] += 1
        return echo_callback(conn, reason, user, payload)

    ctx = Context(
        [Protocol("soak", callback, Session, deflate=False)],
        port=port,
        interface=HOST,
        any_subprotocol=True,
        handshake_timeout=handshake_timeout,
    )
    print(json.dumps({"ready": ctx.port}), flush=True)
    try:
        serve_on(ctx, loop, poll_ms=100)
        counts["live"] = ctx.connection_count
    finally:
        ctx.destroy()
    print(json.dumps(counts), flush=True)
    return 0


class Server:
    """The ``--serve`` subprocess: its fds, RSS and CPU from /proc, its counts at stop."""

    def __init__(self, loop: str | None, handshake_timeout: float = 5.0) -> None:
        cmd = [sys.executable, os.path.abspath(__file__), "--serve", "--port", "0"]
        cmd += ["--handshake-timeout", str(handshake_timeout)]
        if loop:
            cmd += ["--loop", loop]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"server did not start (exit {self.proc.wait()})")
        self.port = int(json.loads(line)["ready"])
        self.pid = self.proc.pid

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def rss_kb(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def cpu(self) -> float:
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime

    def stop(self) -> dict[str, int]:
        """SIGTERM by PID; the counts it prints on the way out."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        return dict(json.loads(out.strip().splitlines()[-1]))


# -- the client -------------------------------------------------------------------------


class CycleError(Exception):
    pass


class Cycles:
    """``concurrency`` connect/upgrade/echo/close cycles in flight on one epoll."""

    def __init__(self, port: int, concurrency: int) -> None:
        self.port = port
        self.req = request(port)
        self.concurrency = concurrency
        self.ep = select.epoll()
        # fd -> [socket, stage, buffer]; stages: 0 connecting, 1 head, 2 echo, 3 close
        self.conns: dict[int, list[Any]] = {}
        self.done = 0
        self.errors = 0

    def _start(self) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = s.connect_ex((HOST, self.port))
        if err not in (0, errno.EINPROGRESS):
            s.close()
            raise CycleError(f"connect: {os.strerror(err)}")
        self.conns[s.fileno()] = [s, 0, b""]
        self.ep.register(s.fileno(), select.EPOLLOUT)

    def _finish(self, fd: int, ok: bool) -> None:
        s = self.conns.pop(fd)[0]
        self.ep.unregister(fd)
        s.close()
        if ok:
            self.done += 1
        else:
            self.errors += 1

    def _step(self, fd: int) -> None:
        c = self.conns[fd]
        s = c[0]
        if c[1] == 0:
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise CycleError(f"connect: {os.strerror(err)}")
            s.send(self.req)
            c[1] = 1
            self.ep.modify(fd, select.EPOLLIN)
            return
        data = s.recv(4096)
        buf = c[2] + data
        if c[1] == 1:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if not data:
                    raise CycleError("EOF before the 101")
                c[2] = buf
                return
            head = buf[:end]
            if not head.startswith(b"HTTP/1.1 101") or ACCEPT not in head:
                raise CycleError(f"bad upgrade answer: {head[:80]!r}")
            s.send(MSG)
            c[1], buf = 2, buf[end + 4 :]
        if c[1] == 2:
            if len(buf) < len(ECHO):
                if not data:
                    raise CycleError("EOF before the echo")
                c[2] = buf
                return
            if buf[: len(ECHO)] != ECHO:
                raise CycleError(f"bad echo {buf[: len(ECHO)]!r}")
            s.send(CLOSE)
            c[1], buf = 3, buf[len(ECHO) :]
        if c[1] == 3:
            if data:
                c[2] = buf
                if len(buf) > len(SERVER_CLOSE) or not SERVER_CLOSE.startswith(buf):
                    raise CycleError(f"bad close frame {buf!r}")
                return
            if buf != SERVER_CLOSE:
                raise CycleError(f"EOF before the close frame ({buf!r})")
            self._finish(fd, True)  # the server closed TCP first, as it should

    def run(self, count: int, timeout: float = 60.0) -> None:
        """``count`` more cycles (at most ``timeout`` s without progress)."""
        target = self.done + count
        last, stall = self.done, time.monotonic()
        while self.done < target:
            while len(self.conns) < self.concurrency and self.done + len(self.conns) < target:
                self._start()
            for fd, _ev in self.ep.poll(1.0):
                try:
                    self._step(fd)
                except (CycleError, OSError) as exc:
                    print(f"cycle failed: {exc}", file=sys.stderr)
                    self._finish(fd, False)
                    if self.errors > 10:
                        raise CycleError(f"{self.errors} cycles failed") from exc
            if self.done != last:
                last, stall = self.done, time.monotonic()
            elif time.monotonic() - stall > timeout:
                raise CycleError(f"no progress for {timeout} s ({len(self.conns)} in flight)")

    def close(self) -> None:
        for fd in list(self.conns):
            self._finish(fd, False)
        self.ep.close()


def raise_nofile(want: int) -> int:
    """Raise RLIMIT_NOFILE to ``want`` (the hard limit too, when allowed); the soft limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    if hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
        except (ValueError, OSError):
            want = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


# -- the soak ---------------------------------------------------------------------------


def soak(cycles: int, loop: str | None, concurrency: int, progress: bool = False) -> dict[str, Any]:
    server = Server(loop)
    client = Cycles(server.port, concurrency)
    tenth = max(1, cycles // 10)
    try:
        # One cycle before the baseline: a loop library may open an fd of its own on
        # its first wait (zmq does), which is not a connection's.
        client.run(1)
        client.done = 0
        time.sleep(0.2)
        fds0 = server.fds()
        t0 = time.monotonic()
        samples = []  # (cycles done, wall, server cpu, rss kB) after each tenth
        cpu_prev, wall_prev = server.cpu(), t0
        for i in range(10):
            n = tenth if i < 9 else cycles - 9 * tenth
            client.run(n)
            cpu, wall = server.cpu(), time.monotonic()
            samples.append(
                {
                    "cycles": client.done,
                    "cycles_per_s": n / max(wall - wall_prev, 1e-9),
                    "cpu_us_per_cycle": (cpu - cpu_prev) / n * 1e6,
                    "rss_kb": server.rss_kb(),
                }
            )
            cpu_prev, wall_prev = cpu, wall
            if progress:
                print(f"soak [{loop or 'builtin'}] {json.dumps(samples[-1])}", file=sys.stderr)
        elapsed = time.monotonic() - t0
        # the last connections' fds are closed by the time their EOF reached us
        deadline = time.monotonic() + 5.0
        while server.fds() != fds0 and time.monotonic() < deadline:
            time.sleep(0.05)
        fds1 = server.fds()
    finally:
        client.close()
        counts = server.stop()
    first, last = samples[0]["cpu_us_per_cycle"], samples[-1]["cpu_us_per_cycle"]
    return {
        "loop": loop or "builtin",
        "cycles": cycles,
        "done": client.done,
        "errors": client.errors,
        "seconds": elapsed,
        "cycles_per_s": client.done / elapsed,
        "fds_before": fds0,
        "fds_after": fds1,
        "rss_warm_kb": samples[0]["rss_kb"],
        "rss_end_kb": samples[-1]["rss_kb"],
        "rss_growth_kb": samples[-1]["rss_kb"] - samples[0]["rss_kb"],
        "cpu_us_first": first,
        "cpu_us_last": last,
        "cpu_ratio": last / first if first else 0.0,
        "tenths": samples,
        **counts,
    }


def check(r: dict[str, Any], rss_mb: float, cpu_ratio: float) -> list[str]:
    """The failed checks of one soak result, as messages (empty: all held)."""
    bad = []
    if r["done"] != r["cycles"] or r["errors"]:
        bad.append(f"{r['done']} of {r['cycles']} cycles done, {r['errors']} failed")
    if r["rss_growth_kb"] > rss_mb * 1024:
        bad.append(f"RSS grew {r['rss_growth_kb']} kB after warm-up (limit {rss_mb} MB)")
    if r["fds_after"] != r["fds_before"]:
        bad.append(f"server fds {r['fds_before']} before, {r['fds_after']} after")
    want = r["done"] + 1  # and the warm-up cycle
    if not r["established"] == r["closed"] == want or r["unmatched"] or r["live"]:
        bad.append(
            f"callbacks: {r['established']} ESTABLISHED, {r['closed']} CLOSED, "
            f"{r['unmatched']} unmatched, {r['live']} still live, for {want} cycles"
        )
    if cpu_ratio and r["cpu_ratio"] > cpu_ratio:
        bad.append(f"CPU per cycle last/first tenth {r['cpu_ratio']:.2f} > {cpu_ratio}")
    return bad


def table(results: list[dict[str, Any]]) -> str:
    rows = [
        "| loop | cycles | s | cycles/s | RSS warm MB | RSS growth kB | fds before/after "
        "| ESTABLISHED / CLOSED / unmatched | CPU µs/cycle first/last tenth |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in results:
        rows.append(
            f"| {r['loop']} | {r['done']:,} | {r['seconds']:.0f} | {r['cycles_per_s']:,.0f} "
            f"| {r['rss_warm_kb'] / 1024:.1f} | {r['rss_growth_kb']:+,} "
            f"| {r['fds_before']}/{r['fds_after']} "
            f"| {r['established']:,} / {r['closed']:,} / {r['unmatched']} "
            f"| {r['cpu_us_first']:.0f} / {r['cpu_us_last']:.0f} ({r['cpu_ratio']:.2f}) |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cycles", type=int, default=1_000_000)
    p.add_argument("--loop", action="append", help="adapter name (repeatable; default built-in)")
    p.add_argument("--concurrency", type=int, default=8, help="cycles in flight (default 8)")
    p.add_argument("--rss-mb", type=float, default=5.0)
    p.add_argument("--cpu-ratio", type=float, default=1.5, help="0: report only")
    p.add_argument("--json", action="store_true", help="print each result as a JSON line")
    p.add_argument("--progress", action="store_true", help="a line on stderr per tenth")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--handshake-timeout", type=float, default=5.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        return serve(args.port, args.loop[0] if args.loop else None, args.handshake_timeout)
    results, failed = [], False
    for loop in args.loop or [None]:
        r = soak(args.cycles, loop, args.concurrency, args.progress)
        bad = check(r, args.rss_mb, args.cpu_ratio)
        r["failed"] = bad
        failed = failed or bool(bad)
        results.append(r)
        if args.json:
            print(json.dumps(r), flush=True)
        for msg in bad:
            print(f"FAIL [{r['loop']}]: {msg}", file=sys.stderr)
    if not args.json:
        print(table(results))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
