"""The real ``lwsbridge-zmq-proxy`` command on free loopback ports (or on an address in
a network namespace), stopped by PID."""

from __future__ import annotations

import contextlib
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


def free_port_pair(attempts: int = 50, host: str = HOST, netns: str | None = None) -> int:
    """A port P such that P and P+1 on ``host`` were both free a moment ago, looked up
    inside namespace ``netns`` when given (where the proxy will run: the root
    namespace's loopback may be crowded by other tests, a fresh namespace is not)."""

    def new_socket() -> socket.socket:
        return socket.socket() if netns is None else socket_in(netns)

    for _ in range(attempts):
        with new_socket() as a:
            a.bind((host, 0))
            port = int(a.getsockname()[1])
            if port >= 65535:
                continue
            with new_socket() as b:
                try:
                    b.bind((host, port + 1))
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
            stop_process(proc)
        last = log_path.read_text(errors="replace")
    raise RuntimeError(f"lwsbridge-zmq-proxy did not start; its log:\n{last[-2000:]}")
