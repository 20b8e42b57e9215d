"""A real redis-server on a free loopback port for the backplane tests, stopped by PID.

``redis-server`` is the Debian package (``.ci/run`` installs it); without it the test
skips, or fails with ``LWSBRIDGE_REQUIRE_PEERS=1``.  Nothing is persisted (``--save ''
--appendonly no``), so a restart is an empty server, as after a crash.  With ``netns``
it runs inside that network namespace, bound to ``host`` there (a "host" of its own).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from support.netns import exec_in
from support.peers import require_executable
from support.procs import HOST, free_port, stop_process, wait_accepting

__all__ = ["RedisServer", "redis_server"]


class RedisServer:
    """One redis-server process; :meth:`stop` and :meth:`start` again on the same port."""

    def __init__(
        self, exe: str, workdir: Path, port: int, host: str = HOST, netns: str | None = None
    ) -> None:
        self.exe = exe
        self.workdir = workdir
        self.port = port
        self.host = host
        self.netns = netns
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"redis-{port}.log"

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> bool:
        """Start it; whether it accepts within ``timeout`` seconds."""
        cmd = [
            *(exec_in(self.netns) if self.netns is not None else []),
            self.exe,
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            "--daemonize",
            "no",
        ]
        if self.netns is not None:
            # Clients come from other namespaces (hosts) through a veth; without a
            # password Redis accepts only loopback unless protected mode is off.  The
            # namespace is private to the test, so nobody else can reach it.
            cmd += ["--protected-mode", "no"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        return wait_accepting(self.proc, self.port, deadline, self.host, self.netns)

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
def redis_server(
    workdir: Path, attempts: int = 3, host: str = HOST, netns: str | None = None
) -> Iterator[RedisServer]:
    """A redis-server on a free port (another port if one was taken meanwhile), on
    loopback, or on ``host`` inside namespace ``netns``."""
    exe = require_executable("redis-server", "apt-get install redis-server")
    server = None
    for _ in range(attempts):
        server = RedisServer(exe, workdir, free_port(host, netns), host, netns)
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
