"""lws_daemonize: become a headless background process guarded by a lock file.

``daemonize(lock_path)`` double-forks. The starting process waits on a pipe until the
daemon reports; it then exits 0 (the daemon runs and holds the lock) or prints why the
daemon could not start and exits 1. ``daemonize`` returns only in the daemon, which is in
a new session, has umask 027, cwd ``/`` and stdin/stdout/stderr on ``/dev/null``, and
holds an exclusive ``flock`` on ``lock_path``, a file holding its pid. A relative
``lock_path`` is taken relative to the caller's working directory (it is resolved before
the daemon changes to ``/``).

The lock, not the pid in the file, decides: a lock file left by a dead process is not
locked and is taken over; a locked one means another daemon runs. The file is left in
place at exit (unlinking a lock file races with a starter that just opened it).

With ``wait_ready=True`` the starting process keeps waiting until the daemon calls
``ready()`` (or ``fail(msg)``) on the returned handle, so that, say, a port that cannot be
bound is reported on the terminal and not only in syslog.

Not for use from a process with threads (``fork`` copies only the calling thread).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sys
from typing import NoReturn

__all__ = ["DaemonError", "DaemonHandle", "daemonize"]

_OK = b"\x00"
_FAIL = b"\x01"

_lock_fd: int | None = None  # held open for the daemon's lifetime: the lock lives with it


class DaemonError(Exception):
    """The daemon could not start (lock held, lock file unusable, ...)."""


class DaemonHandle:
    """The daemon's side of the start-up pipe."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    def ready(self) -> None:
        """Tell the starting process we are up: it exits 0."""
        self._send(_OK)

    def fail(self, message: str) -> None:
        """Tell the starting process why we could not start: it prints it and exits 1."""
        self._send(_FAIL + message.encode("utf-8", "replace"))

    def _send(self, data: bytes) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.write(fd, data)
        os.close(fd)


def _take_lock(path: str) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise DaemonError(f"cannot open lock file {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        try:
            owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
        except OSError:
            owner = "?"
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise DaemonError(f"lock file {path} is held by pid {owner}: already running") from None
        raise DaemonError(f"cannot lock {path}: {exc.strerror}") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as exc:
        os.close(fd)
        raise DaemonError(f"cannot write lock file {path}: {exc.strerror}") from None
    return fd


def _parent(r: int, child: int, name: str) -> NoReturn:
    chunks = []
    while True:
        try:
            data = os.read(r, 4096)
        except InterruptedError:
            continue
        if not data:
            break
        chunks.append(data)
    os.close(r)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(child, 0)
    msg = b"".join(chunks)
    if msg[:1] == _OK:
        os._exit(0)
    text = msg[1:].decode("utf-8", "replace") if msg else "daemon exited before it was ready"
    os.write(2, f"{name}: {text}\n".encode())
    os._exit(1)


def daemonize(lock_path: str, *, name: str | None = None, wait_ready: bool = False) -> DaemonHandle:
    """Fork into the background; return in the daemon, ``os._exit`` in the caller.

    ``name`` prefixes the starting process's error message (default: ``sys.argv[0]``'s
    basename). With ``wait_ready`` the caller waits for ``handle.ready()``/``fail()``;
    otherwise it is released as soon as the lock is held.
    """
    global _lock_fd
    # The daemon changes to "/" before it takes the lock: a relative path must mean the
    # caller's directory, not the root's, so resolve it while the caller's cwd still holds.
    lock_path = os.path.abspath(lock_path)
    name = name or os.path.basename(sys.argv[0] or "lwsbridge")
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    r, w = os.pipe()
    pid = os.fork()
    if pid > 0:
        os.close(w)
        _parent(r, pid, name)  # never returns
    # first child: new session, then fork again so we can never regain a terminal
    os.close(r)
    handle = DaemonHandle(w)
    try:
        os.setsid()
        if os.fork() > 0:
            os._exit(0)
        os.umask(0o027)
        os.chdir("/")
        _lock_fd = _take_lock(lock_path)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        if null > 2:
            os.close(null)
    except DaemonError as exc:
        handle.fail(str(exc))
        os._exit(1)
    except OSError as exc:
        handle.fail(f"cannot daemonize: {exc}")
        os._exit(1)
    if not wait_ready:
        handle.ready()
    return handle
