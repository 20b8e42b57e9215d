"""The real ``lwsbridge-zmq-proxy`` command on free loopback ports (or on an address in
a network namespace), stopped by PID."""

from __future__ import annotations

import contextlib
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from support.netns import exec_in, socket_in
from support.procs import HOST, stop_process, wait_accepting

__all__ = ["ZmqProxy", "free_port_pair", "proxy_command", "zmq_proxy"]


def proxy_command() -> list[str]:
    """The console script from this interpreter's env, else ``python -m``."""
    exe = Path(sys.executable).parent / "lwsbridge-zmq-proxy"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "lwsbridge.apps.zmq_proxy"]


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port_pair(attempts: int = 200, host: str = HOST, netns: str | None = None) -> int:
    """A port P such that P and P+1 on ``host`` were both free a moment ago, looked up
    inside namespace ``netns`` when given (where the proxy will run).

    Taken below the ephemeral range: in it, P+1 is often held by the TIME_WAIT of an
    earlier client connection (thousands after a benchmark), which a bind refuses."""

    def new_socket() -> socket.socket:
        return socket.socket() if netns is None else socket_in(netns)

    low = _ephemeral_low()
    rng = random.Random()
    for _ in range(attempts):
        port = rng.randrange(max(1024, low - 12_000), low - 1)
        try:
            for p in (port, port + 1):
                with new_socket() as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as ZeroMQ binds
                    s.bind((host, p))
        except OSError:
            continue
        return port
    raise RuntimeError("no two consecutive free loopback ports")


class ZmqProxy:
    def __init__(
        self, proc: subprocess.Popen[bytes], port: int, log_path: Path, host: str = HOST
    ) -> None:
        self.proc = proc
        self.port = port
        self.log_path = log_path
        self.host = host

    @property
    def url(self) -> str:
        return f"zmq://{self.host}:{self.port}"

    def freeze(self) -> None:
        """SIGSTOP it: its connections stay open and the kernel still completes new
        TCP handshakes, but nothing answers -- a hung proxy, or its host gone."""
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after :meth:`freeze`."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


@contextlib.contextmanager
def zmq_proxy(
    workdir: Path, attempts: int = 3, host: str = HOST, netns: str | None = None
) -> Iterator[ZmqProxy]:
    """Start the proxy on a free port pair (on ``host`` inside namespace ``netns`` when
    given), wait until both accept; stop it by PID."""
    prefix = exec_in(netns) if netns is not None else []
    last = ""
    for _ in range(attempts):
        port = free_port_pair(host=host, netns=netns)
        log_path = workdir / f"zmq-proxy-{port}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [*prefix, *proxy_command(), "--bind", f"{host}:{port}"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + 10.0
            if wait_accepting(proc, port, deadline, host, netns) and wait_accepting(
                proc, port + 1, deadline, host, netns
            ):
                yield ZmqProxy(proc, port, log_path, host)
                return
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)  # a frozen proxy would not act on SIGTERM
            stop_process(proc)
        last = log_path.read_text(errors="replace")
    raise RuntimeError(f"lwsbridge-zmq-proxy did not start; its log:\n{last[-2000:]}")
