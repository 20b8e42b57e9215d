"""Process helpers for the interop tests: free ports, server subprocesses, stop by PID."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

STOP_GRACE = 3.0  # seconds between SIGTERM and SIGKILL


def console_script(name: str) -> list[str]:
    """Command running one of lwsbridge's console scripts from this interpreter's env."""
    exe = Path(sys.executable).parent / name
    if exe.exists():
        return [str(exe)]
    module = {
        "lwsbridge-test-server": "lwsbridge.apps.test_server",
        "lwsbridge-test-echo": "lwsbridge.apps.test_echo",
    }[name]
    return [sys.executable, "-m", module]


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (bind port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
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


class Server:
    """A running lwsbridge app: ``port``, ``url``, ``proc`` and its log file."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.proc = proc
        self.port = port
        self.log_path = log_path

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

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


def _wait_accepting(proc: subprocess.Popen[bytes], port: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


@contextlib.contextmanager
def run_server(
    name: str, log_dir: Path, *extra: str, start_timeout: float = 10.0, attempts: int = 5
) -> Iterator[Server]:
    """Start console script ``name`` on a free loopback port; stop it by PID on exit."""
    cmd = console_script(name)
    last_log = ""
    for attempt in range(attempts):
        port = free_port()
        log_path = log_dir / f"{name}-{port}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [*cmd, "-p", str(port), "-i", "127.0.0.1", *extra],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            if _wait_accepting(proc, port, time.monotonic() + start_timeout):
                yield Server(proc, port, log_path)
                return
        finally:
            stop_process(proc)
        last_log = log_path.read_text(errors="replace")
        if attempt == attempts - 1:
            break
    pytest.fail(f"{name} did not start accepting on loopback; last log:\n{last_log[-4000:]}")
