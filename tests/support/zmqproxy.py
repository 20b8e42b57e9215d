"""The real ``lwsbridge-zmq-proxy`` command on free loopback ports, stopped by PID."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from support.procs import HOST, stop_process, wait_accepting

__all__ = ["ZmqProxy", "free_port_pair", "proxy_command", "zmq_proxy"]


def proxy_command() -> list[str]:
    """The console script from this interpreter's env, else ``python -m``."""
    exe = Path(sys.executable).parent / "lwsbridge-zmq-proxy"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "lwsbridge.apps.zmq_proxy"]


def free_port_pair(attempts: int = 50) -> int:
    """A loopback port P such that P and P+1 were both free a moment ago."""
    for _ in range(attempts):
        with socket.socket() as a:
            a.bind((HOST, 0))
            port = int(a.getsockname()[1])
            if port >= 65535:
                continue
            with socket.socket() as b:
                try:
                    b.bind((HOST, port + 1))
                except OSError:
                    continue
                return port
    raise RuntimeError("no two consecutive free loopback ports")


class ZmqProxy:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.proc = proc
        self.port = port
        self.log_path = log_path

    @property
    def url(self) -> str:
        return f"zmq://{HOST}:{self.port}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


@contextlib.contextmanager
def zmq_proxy(workdir: Path, attempts: int = 3) -> Iterator[ZmqProxy]:
    """Start the proxy on a free port pair, wait until both accept; stop it by PID."""
    last = ""
    for _ in range(attempts):
        port = free_port_pair()
        log_path = workdir / f"zmq-proxy-{port}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [*proxy_command(), "--bind", f"{HOST}:{port}"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + 10.0
            if wait_accepting(proc, port, deadline) and wait_accepting(proc, port + 1, deadline):
                yield ZmqProxy(proc, port, log_path)
                return
        finally:
            stop_process(proc)
        last = log_path.read_text(errors="replace")
    raise RuntimeError(f"lwsbridge-zmq-proxy did not start; its log:\n{last[-2000:]}")
