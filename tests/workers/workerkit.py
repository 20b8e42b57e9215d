"""A ``--workers`` app under test: its log, its workers' pids, and which worker holds a socket.

The supervisor runs as a subprocess writing to a log file and is stopped by PID.  A
client's connection is traced to the worker process that accepted it through
``/proc/net/tcp`` (the server side's socket inode) and ``/proc/PID/fd``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from support.procs import HOST, free_port, stop_process
from websockets.sync.client import ClientConnection, connect

WAIT = 20.0  # seconds any one thing may take on a loaded 2-core machine

_SERVING = re.compile(r"\[w(\d+)\] worker \d+ \(pid (\d+)\) serving on port")


class WorkerApp:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.proc = proc
        self.port = port
        self.log_path = log_path
        self.url = f"ws://{HOST}:{port}/"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, what: Callable[[str], bool], desc: str, *, gone_ok: bool = False) -> str:
        """Wait until ``what(log)``; give up when the supervisor exits unless ``gone_ok``."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            text = self.log()
            if what(text):
                return text
            if self.proc.poll() is not None and not gone_ok:
                break
            time.sleep(0.05)
        pytest.fail(f"{desc}: not seen; supervisor rc={self.proc.poll()}; log:\n{self.log()}")

    def started(self) -> list[tuple[int, int]]:
        """(index, pid) of every worker that reported serving, in order."""
        return [(int(i), int(p)) for i, p in _SERVING.findall(self.log())]

    def current(self) -> dict[int, int]:
        """index -> pid of the latest worker started for each index."""
        return dict(self.started())

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def wait_exit(self) -> int:
        try:
            return self.proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the supervisor did not exit; log:\n{self.log()}")


@contextlib.contextmanager
def worker_app(
    tmp_path: Path, *extra: str, app: str = "echo_server", prefix: Sequence[str] = ()
) -> Iterator[WorkerApp]:
    """``app --workers 2`` on a free loopback port (``prefix``: e.g. ``ip netns exec NS``,
    which execs, so the PID is still the supervisor's)."""
    port = free_port()
    log_path = tmp_path / f"{app}-{port}.log"
    cmd = [*prefix, sys.executable, "-m", f"lwsbridge.apps.{app}", "-p", str(port), "-i", HOST]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*cmd, "--workers", "2", "--drain-timeout", "5", *extra],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    wa = WorkerApp(proc, port, log_path)
    try:
        wa.wait_log(lambda t: "supervisor: 2 workers up" in t, "two workers up")
        yield wa
    finally:
        pids = [pid for _i, pid in wa.started()]
        stop_process(proc, grace=WAIT)
        for pid in pids:  # a worker left behind by a failed test: only ours, by PID
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"lwsbridge.apps" in f.read()
    except OSError:
        return False


def children(pid: int) -> set[int]:
    """The PIDs of ``pid``'s child processes now (``/proc/PID/task/*/children``)."""
    kids: set[int] = set()
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
                kids.update(int(x) for x in f.read().split())
    return kids


def alive(pid: int) -> bool:
    """Whether worker ``pid`` still exists (not reaped; zombies count as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _server_inode(port: int, client_port: int, pid: int) -> int | None:
    """The inode of the loopback server socket ``port`` <- ``client_port``, as seen in
    ``pid``'s network namespace (``/proc/PID/net``: the workers may run in another one)."""
    want_local = f"0100007F:{port:04X}"
    want_remote = f"0100007F:{client_port:04X}"
    with contextlib.suppress(OSError), open(f"/proc/{pid}/net/tcp") as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            if cols[1] == want_local and cols[2] == want_remote:
                return int(cols[9])
    return None


def owner_pid(ws: ClientConnection, port: int, pids: list[int]) -> int | None:
    """Which of ``pids`` holds the server side of ``ws``'s TCP connection."""
    inode = next(
        (i for pid in pids if (i := _server_inode(port, ws.local_address[1], pid)) is not None),
        None,
    )
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                        return pid
    return None


def open_ws(url: str) -> ClientConnection:
    return connect(url, open_timeout=WAIT, close_timeout=2)


def echo(ws: ClientConnection, msg: str) -> None:
    ws.send(msg)
    assert ws.recv(timeout=WAIT) == msg
