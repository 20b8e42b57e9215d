"""Raw-socket WebSocket client helpers for the scale benchmarks (bench_fanout.py, scale_100k.py).

No library client: plain non-blocking sockets on one epoll, the upgrade request and the
frames preformatted, so that the client side costs as little CPU as Python allows and
the server is what is measured.  Client frames are masked with the all-zero key (valid
per RFC 6455: the payload goes out unchanged, nothing to XOR).
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import resource
import select
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

HOST = "127.0.0.1"
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 section 1.3's example pair
ZERO_MASK = b"\x00\x00\x00\x00"
CLK_TCK = os.sysconf("SC_CLK_TCK")
# IP_BIND_ADDRESS_NO_PORT (Linux 4.2+): bind() before connect() picks the port at
# connect() time, from the whole 4-tuple space, instead of reserving one per address.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


class OpenError(Exception):
    pass


def request(port: int, path: str = "/", protocol: str | None = None) -> bytes:
    proto = f"Sec-WebSocket-Protocol: {protocol}\r\n" if protocol else ""
    return (
        f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY.decode()}\r\n"
        f"Sec-WebSocket-Version: 13\r\n{proto}\r\n"
    ).encode()


def client_frame(payload: bytes, opcode: int = 0x2) -> bytes:
    """One masked (all-zero key) final frame; payloads up to 65,535 bytes."""
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    else:
        head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    return head + ZERO_MASK + payload


def server_frame_len(payload_len: int) -> int:
    """Bytes of one unmasked, uncompressed server frame with this payload."""
    return payload_len + (2 if payload_len < 126 else 4)


def source_addresses(count: int, third: int = 1) -> list[str]:
    """``count`` loopback source addresses 127.0.THIRD.1, .2, ... (all of 127/8 is lo)."""
    return [f"127.0.{third + i // 250}.{1 + i % 250}" for i in range(count)]


def open_many(
    port: int,
    n: int,
    req: bytes,
    sources: Sequence[str] = (),
    in_flight: int = 256,
    timeout: float = 600.0,
    host: str = HOST,
) -> list[socket.socket]:
    """``n`` upgraded, non-blocking client sockets, at most ``in_flight`` handshakes at a
    time (so the server's listen backlog never overflows); the source addresses are used
    in turn (bound before connect, so ports are per address).  Raises OpenError."""
    ep = select.epoll()
    pending: dict[int, list[object]] = {}
    opened: list[socket.socket] = []
    started = 0
    deadline = time.monotonic() + timeout
    try:
        while len(opened) < n:
            while len(pending) < in_flight and started < n:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                if sources:
                    s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                    s.bind((sources[started % len(sources)], 0))
                err = s.connect_ex((host, port))
                if err not in (0, errno.EINPROGRESS):
                    s.close()
                    raise OpenError(f"connect #{started}: {os.strerror(err)}")
                pending[s.fileno()] = [s, b"", False]
                ep.register(s.fileno(), select.EPOLLOUT)
                started += 1
            if time.monotonic() > deadline:
                raise OpenError(f"only {len(opened)} of {n} upgraded in {timeout} s")
            for fd, _ev in ep.poll(1.0):
                c = pending[fd]
                sk = c[0]
                assert isinstance(sk, socket.socket)
                s = sk
                if not c[2]:
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise OpenError(f"connect ({len(opened)} open): {os.strerror(err)}")
                    s.send(req)
                    c[2] = True
                    ep.modify(fd, select.EPOLLIN)
                    continue
                try:
                    data = s.recv(4096)
                except ConnectionError as exc:
                    raise OpenError(f"{exc} during the upgrade ({len(opened)} open)") from None
                if not data:
                    raise OpenError(f"EOF during the upgrade ({len(opened)} open)")
                head = c[1] + data  # type: ignore[operator]
                c[1] = head
                end = head.find(b"\r\n\r\n")
                if end >= 0:
                    if not head.startswith(b"HTTP/1.1 101") or ACCEPT not in head[:end]:
                        raise OpenError(f"bad upgrade answer {head[:120]!r}")
                    if len(head) > end + 4:
                        raise OpenError("data after the 101 before anything was sent")
                    ep.unregister(fd)
                    del pending[fd]
                    opened.append(s)
    except BaseException:
        for s in opened:
            s.close()
        raise
    finally:
        for c in pending.values():
            c[0].close()  # type: ignore[attr-defined]
        ep.close()
    return opened


# -- processes ----------------------------------------------------------------------------


def raise_nofile(want: int) -> tuple[int, int]:
    """Raise RLIMIT_NOFILE (soft and, as root, hard) to at least ``want``: children started
    afterwards (the servers) inherit it.  Returns (soft, hard); soft < want if refused."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft, hard
    if hard != resource.RLIM_INFINITY and hard < want:
        try:
            nr_open = int(Path("/proc/sys/fs/nr_open").read_text())
        except (OSError, ValueError):
            nr_open = want
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, nr_open),) * 2)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def has_cap_sys_resource() -> bool:
    """Whether this process may raise a hard rlimit (CAP_SYS_RESOURCE, bit 24)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> 24 & 1)
    except (OSError, ValueError):
        pass
    return os.geteuid() == 0


def proc_cpu(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_cpu_split(pid: int) -> tuple[float, float]:
    """(utime, stime) of ``pid`` in seconds ((0, 0) when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (/proc/PID/task/*/children)."""
    out: list[int] = []
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                out += [
                    int(x) for x in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
                ]
    return sorted(out)


def server_pids(proc: subprocess.Popen[bytes], workers: int, timeout: float = 20.0) -> list[int]:
    """The processes that serve: the process itself, or its ``workers`` children."""
    if workers <= 1:
        return [proc.pid]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        kids = children(proc.pid)
        if len(kids) >= workers:
            return kids[:workers]
        time.sleep(0.05)
    raise RuntimeError(f"the supervisor has {len(children(proc.pid))} of {workers} workers")


def wait_port(proc: subprocess.Popen[bytes], port: int, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} within {timeout} s")


def stop(proc: subprocess.Popen[bytes], grace: float = 15.0) -> str:
    """SIGTERM by PID, SIGKILL after ``grace`` s; how it ended."""
    if proc.poll() is not None:
        return f"had already exited ({proc.returncode})"
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
        return f"SIGTERM, exit {proc.returncode}"
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
        return f"did not stop within {grace:g} s of SIGTERM: SIGKILL"


def free_port(host: str = HOST) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_port_pair() -> int:
    """A port P with P and P+1 free a moment ago (the zmq proxy's XSUB and XPUB), below
    the ephemeral range: there, TIME_WAIT sockets of earlier client connections often
    hold P+1 (and ZeroMQ's bind would fail as this probe does)."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20_000, 32_000)
        try:
            for p in (port, port + 1):
                with socket.socket() as b:
                    b.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    b.bind((HOST, p))
        except OSError:
            continue
        return port
    raise RuntimeError("no two consecutive free loopback ports")


def pct(sorted_vals: Sequence[float], p: float) -> float:
    if not sorted_vals:
        return float("nan")
    k = min(len(sorted_vals) - 1, max(0, round(p / 100.0 * len(sorted_vals) + 0.5) - 1))
    return sorted_vals[k]


def read_sys(path: str) -> str:
    try:
        return Path(path).read_text().strip().replace("\t", " ")
    except OSError:
        return "?"
