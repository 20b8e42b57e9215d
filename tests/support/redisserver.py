"""A real redis-server on a free loopback port for the backplane tests, stopped by PID.

``redis-server`` is the Debian package (``.ci/run`` installs it); without it the test
skips, or fails with ``LWSBRIDGE_REQUIRE_PEERS=1``.  Nothing is persisted (``--save ''
--appendonly no``), so a restart is an empty server, as after a crash.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from support.peers import require_executable
from support.procs import HOST, free_port, stop_process, wait_accepting

__all__ = ["RedisServer", "redis_server"]


class RedisServer:
    """One redis-server process; :meth:`stop` and :meth:`start` again on the same port."""

    def __init__(self, exe: str, workdir: Path, port: int) -> None:
        self.exe = exe
        self.workdir = workdir
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"redis-{port}.log"

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}"

    def start(self, timeout: float = 10.0) -> bool:
        """Start it; whether it accepts within ``timeout`` seconds."""
        cmd = [
            self.exe,
            "--port",
            str(self.port),
            "--bind",
            HOST,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            "--daemonize",
            "no",
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        return wait_accepting(self.proc, self.port, time.monotonic() + timeout)

    def freeze(self) -> None:
        """SIGSTOP it: its connections stay open and the kernel still completes new
        TCP handshakes, but nothing answers -- a hung or unreachable server."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after :meth:`freeze`."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Stop it by PID (SIGTERM, then SIGKILL)."""
        if self.proc is not None:
            self.thaw()  # a frozen server would not act on SIGTERM
            stop_process(self.proc)
            self.proc = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


@contextlib.contextmanager
def redis_server(workdir: Path, attempts: int = 3) -> Iterator[RedisServer]:
    """A redis-server on a free loopback port (another port if one was taken meanwhile)."""
    exe = require_executable("redis-server", "apt-get install redis-server")
    server = None
    for _ in range(attempts):
        server = RedisServer(exe, workdir, free_port())
        if server.start():
            break
        server.stop()
    else:
        assert server is not None
        raise RuntimeError(f"redis-server did not start; its log:\n{server.log()[-2000:]}")
    try:
        yield server
    finally:
        server.stop()
