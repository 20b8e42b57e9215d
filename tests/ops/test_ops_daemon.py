"""``lwsbridge-test-server --daemonize``: background start, lock file, refusals, clean-up."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.procs import free_port

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")


def start(lock: str | Path, port: int, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "lwsbridge.apps.demo_server", "--daemonize"]
    cmd += ["--lock", str(lock), "-p", str(port), "-i", "127.0.0.1", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def lock_pid(lock: Path) -> int | None:
    try:
        return int(lock.read_text().strip())
    except (OSError, ValueError):
        return None


@pytest.fixture
def daemons() -> Iterator[list[Path]]:
    """Lock files of daemons started by a test; each is killed by the pid it holds."""
    locks: list[Path] = []
    yield locks
    for lock in locks:
        pid = lock_pid(lock)
        if pid is not None and pid != os.getpid():
            kill(pid)


def get(port: int, path: str = "/") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_daemon_starts_serves_and_holds_lock(tmp_path: Path, daemons: list[Path]) -> None:
    lock, port = tmp_path / "lock", free_port()
    daemons.append(lock)
    t0 = time.monotonic()
    out = start(lock, port)
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - t0 < 10
    assert out.stdout == "" and out.stderr == ""
    pid = lock_pid(lock)
    assert pid is not None and pid != os.getpid() and alive(pid)
    # ready was reported only after binding: it serves at once
    status, body = get(port)
    assert status == 200 and b"<html" in body.lower()
    # headless: its own session, cwd /, umask 027, stdio on /dev/null (Linux /proc)
    proc = Path(f"/proc/{pid}")
    if proc.exists():
        sid = os.getsid(pid)
        assert sid != os.getsid(0) and sid != pid  # new session, not its leader (double fork)
        assert os.readlink(proc / "cwd") == "/"
        for fd in (0, 1, 2):
            assert os.readlink(proc / "fd" / str(fd)) == os.devnull
        status_text = (proc / "status").read_text()
        umask = [ln for ln in status_text.splitlines() if ln.startswith("Umask:")]
        if umask:
            assert umask[0].split()[1] == "0027"
    kill(pid)
    assert not alive(pid)


def test_second_start_refused(tmp_path: Path, daemons: list[Path]) -> None:
    lock, port = tmp_path / "lock", free_port()
    daemons.append(lock)
    assert start(lock, port).returncode == 0
    pid = lock_pid(lock)
    out = start(lock, free_port())
    assert out.returncode != 0
    assert "lock" in out.stderr and str(lock) in out.stderr and str(pid) in out.stderr
    assert "Traceback" not in out.stderr
    assert lock_pid(lock) == pid and pid is not None and alive(pid)
    assert get(port)[0] == 200


def test_stale_lock_taken_over(tmp_path: Path, daemons: list[Path]) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock, port = tmp_path / "lock", free_port()
    lock.write_text(f"{dead.pid}\n")
    daemons.append(lock)
    out = start(lock, port)
    assert out.returncode == 0, out.stderr
    pid = lock_pid(lock)
    assert pid is not None and pid != dead.pid and alive(pid)
    assert get(port)[0] == 200


def test_lock_left_by_killed_daemon_is_taken_over(tmp_path: Path, daemons: list[Path]) -> None:
    lock = tmp_path / "lock"
    daemons.append(lock)
    assert start(lock, free_port()).returncode == 0
    first = lock_pid(lock)
    assert first is not None
    kill(first)
    port = free_port()
    assert start(lock, port).returncode == 0
    second = lock_pid(lock)
    assert second is not None and second != first and alive(second)
    assert get(port)[0] == 200


@pytest.mark.parametrize("where", ["/proc/forbidden/lock", "missing-dir/lock", "is-a-dir"])
def test_unusable_lock_path(tmp_path: Path, daemons: list[Path], where: str) -> None:
    lock = Path(where) if where.startswith("/") else tmp_path / where
    if where == "is-a-dir":
        lock.mkdir()
    out = start(lock, free_port())
    assert out.returncode != 0
    assert "lock" in out.stderr and str(lock) in out.stderr
    assert "Traceback" not in out.stderr


def test_port_in_use_reported_to_starter(tmp_path: Path, daemons: list[Path]) -> None:
    lock = tmp_path / "lock"
    daemons.append(lock)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        out = start(lock, busy.getsockname()[1])
    assert out.returncode != 0
    assert "cannot start" in out.stderr and "Traceback" not in out.stderr
    pid = lock_pid(lock)
    if pid is not None:  # the failed daemon exited
        deadline = time.monotonic() + 5
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(pid)


def test_relative_lock_path_is_the_callers(tmp_path: Path, daemons: list[Path]) -> None:
    """A relative --lock names a file in the starter's cwd, not in the daemon's "/"."""
    port = free_port()
    name = f"rel-{os.getpid()}-{port}.lock"  # unique: a stray one in "/" is surely ours
    lock, stray = tmp_path / name, Path("/") / name
    daemons += [lock, stray]  # the old code put it in "/": kill that daemon too
    cmd = [sys.executable, "-m", "lwsbridge.apps.demo_server", "--daemonize"]
    cmd += ["--lock", name, "-p", str(port), "-i", "127.0.0.1"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert not stray.exists()
        pid = lock_pid(lock)
        assert pid is not None and alive(pid)
        assert get(port)[0] == 200
    finally:
        if stray.exists():  # ours (unique name): the daemon is killed by the fixture
            daemons.remove(stray)
            pid = lock_pid(stray)
            if pid is not None:
                kill(pid)
            stray.unlink()
