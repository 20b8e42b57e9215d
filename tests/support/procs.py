"""Subprocess helpers for the tests: free ports, lwsbridge apps as servers, stop by PID.

Every server runs as a subprocess on a free loopback port and is always stopped by PID
(SIGTERM, then SIGKILL after ``STOP_GRACE`` seconds).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HOST = "127.0.0.1"
STOP_GRACE = 3.0  # seconds between SIGTERM and SIGKILL

_APP_MODULES = {
    "lwsbridge-test-server": "lwsbridge.apps.demo_server",
    "lwsbridge-test-echo": "lwsbridge.apps.echo_server",
    "lwsbridge-test-client": "lwsbridge.apps.demo_client",
}


def console_script(name: str) -> list[str]:
    """Command running one of lwsbridge's console scripts from this interpreter's env."""
    exe = Path(sys.executable).parent / name
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", _APP_MODULES[name]]


def free_port(host: str = HOST, netns: str | None = None) -> int:
    """A TCP port on ``host`` that was free a moment ago (bind port 0), inside namespace
    ``netns`` when given."""
    if netns is None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    else:
        from support.netns import socket_in

        sock = socket_in(netns)
    with sock as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes], grace: float = STOP_GRACE) -> None:
    """Terminate ``proc`` by PID; kill it if it is still there after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=grace)


def stop_group(proc: subprocess.Popen[str], grace: float = STOP_GRACE) -> None:
    """Terminate the process group led by ``proc`` (started with ``start_new_session``)
    by the leader's PID; kill the group if the leader is still there after ``grace``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace)


def wait_accepting(
    proc: subprocess.Popen[bytes],
    port: int,
    deadline: float,
    host: str = HOST,
    netns: str | None = None,
) -> bool:
    """Whether ``proc`` accepts on ``host``:``port`` (from namespace ``netns`` when given)
    before ``deadline`` (monotonic); False as soon as it exits.  The probe sends no bytes."""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if netns is None:
                probe = socket.create_connection((host, port), timeout=0.5)
            else:
                from support.netns import connect_in

                probe = connect_in(netns, (host, port), timeout=0.5)
            with probe:
                return True
        except OSError:
            time.sleep(0.05)
    return False


class Server:
    """A running server subprocess: ``port``, ``url``, ``proc`` and its log file."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.proc = proc
        self.port = port
        self.log_path = log_path

    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}/"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def assert_alive(self) -> None:
        """The server is still running and has logged no Python traceback."""
        rc = self.proc.poll()
        log = self.log()
        assert rc is None, f"server exited with {rc}; its log:\n{log[-4000:]}"
        assert "Traceback" not in log, f"server logged a traceback:\n{log[-4000:]}"


@contextlib.contextmanager
def serve_on_free_port(
    cmd_for_port: Callable[[int], list[str]],
    log_dir: Path,
    name: str,
    start_timeout: float = 10.0,
    attempts: int = 3,
) -> Iterator[Server]:
    """Start ``cmd_for_port(port)`` on a free loopback port (output to a log file in
    ``log_dir``), wait until it accepts, and stop it by PID on exit.  Retries on another
    port up to ``attempts`` times, then fails the test with the last log."""
    last_log = ""
    for _attempt in range(attempts):
        port = free_port()
        log_path = log_dir / f"{name}-{port}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                cmd_for_port(port),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            if wait_accepting(proc, port, time.monotonic() + start_timeout):
                yield Server(proc, port, log_path)
                return
        finally:
            stop_process(proc)
        last_log = log_path.read_text(errors="replace")
    pytest.fail(f"{name} did not start accepting on loopback; last log:\n{last_log[-4000:]}")


@contextlib.contextmanager
def run_server(
    name: str, log_dir: Path, *extra: str, start_timeout: float = 10.0, attempts: int = 5
) -> Iterator[Server]:
    """Start console script ``name`` on a free loopback port; stop it by PID on exit."""
    cmd = console_script(name)
    with serve_on_free_port(
        lambda port: [*cmd, "-p", str(port), "-i", HOST, *extra],
        log_dir,
        name,
        start_timeout=start_timeout,
        attempts=attempts,
    ) as srv:
        yield srv
