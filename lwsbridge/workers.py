"""Several worker processes on one port (SO_REUSEPORT), and the small supervisor over them.

``run(build_context, n, loop=None)`` serves with ``n`` processes.  Each worker calls
``build_context()`` itself, after the fork, so each has its own context, sockets and
loop (``loop`` names an adapter of :mod:`lwsbridge.adapters`; None is the built-in
``Context.service`` loop).  ``build_context`` must pass ``reuse_port=True`` to
:class:`~lwsbridge.context.Context`: every worker binds the same port and the kernel
spreads new connections over their sockets (Linux; elsewhere run() raises ValueError).

The calling process becomes the supervisor; it serves nothing.

- A worker that dies is started again, after a backoff that doubles on every death
  within ``BACKOFF_RESET`` seconds of its start (from ``BACKOFF_MIN`` up to
  ``BACKOFF_MAX``), so a worker that crashes at once does not spin.
- SIGTERM or SIGINT: every worker drains (:meth:`Context.drain`: the listener closes,
  every WebSocket gets close 1001 "going away" after what is queued for it, pending
  writes finish) and exits when its connections are gone or after ``drain_timeout``
  seconds; a worker still there ``KILL_GRACE`` seconds later is killed.  Then run()
  returns 0.
- SIGHUP: a rolling restart, one worker at a time: the new process is started and
  listening before the old one drains, so the port never stops accepting.

Workers ignore SIGINT and SIGHUP (a terminal's Ctrl-C or hangup reaches the whole
process group; the supervisor decides) and take SIGTERM as "drain"; a second SIGTERM
ends the drain at once.  A worker whose supervisor vanished drains and exits.
Every log line of worker ``i`` is tagged ``[wi]`` (:func:`lwsbridge.log.set_log_tag`).

Connections waiting in the accept queue of a worker's listener when it closes are
moved to another worker only with ``net.ipv4.tcp_migrate_req = 1`` (Linux 5.14+);
otherwise the kernel resets them.  The supervisor logs a notice when it is 0.

``n == 1`` is one plain process: no fork and no supervisor; SIGTERM/SIGINT drain it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING

from lwsbridge.listener import reuse_port_supported
from lwsbridge.log import NOTICE, logger, set_log_tag

if TYPE_CHECKING:
    from lwsbridge.context import Context

__all__ = [
    "BACKOFF_MAX",
    "BACKOFF_MIN",
    "BACKOFF_RESET",
    "KILL_GRACE",
    "START_TIMEOUT",
    "WorkerStartError",
    "run",
    "serve_and_drain",
]

BACKOFF_MIN = 0.1  # seconds before restarting a worker that died
BACKOFF_MAX = 5.0
BACKOFF_RESET = 10.0  # a worker that lived this long restarts after BACKOFF_MIN again
KILL_GRACE = 2.0  # seconds past drain_timeout before a draining worker is killed
START_TIMEOUT = 15.0  # a new worker must be listening within this

_MIGRATE_SYSCTL = "/proc/sys/net/ipv4/tcp_migrate_req"
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)

BuildContext = Callable[[], "Context"]


class WorkerStartError(RuntimeError):
    """The workers could not start (the first worker's reason: port in use, bad cert...)."""


class _Until(threading.Event):
    """A stop event for :func:`lwsbridge.adapters.run` that is set once ``until()`` holds."""

    def __init__(self, until: Callable[[], bool]) -> None:
        super().__init__()
        self._until = until

    def is_set(self) -> bool:
        return super().is_set() or self._until()


def _serve(ctx: Context, loop: str | None, until: Callable[[], bool]) -> None:
    if loop is None:
        while not until():
            ctx.service(100)
    else:
        from lwsbridge.adapters import run as run_on

        run_on(ctx, loop, _Until(until))


def serve_and_drain(
    ctx: Context,
    loop: str | None,
    stop: Callable[[], int],
    drain_timeout: float,
) -> None:
    """Serve ``ctx`` until ``stop()`` is non-zero, drain it, then serve until drained.

    ``stop()`` counts stop requests: the drain ends early when it reaches 2, or after
    ``drain_timeout`` seconds.  The caller destroys the context.
    """
    _serve(ctx, loop, lambda: stop() > 0)
    if stop() > 1:
        return
    ctx.drain()
    deadline = time.monotonic() + drain_timeout
    _serve(ctx, loop, lambda: ctx.drained or stop() > 1 or time.monotonic() >= deadline)
    if not ctx.drained:
        logger.warning("drain timeout: %d connections left", ctx.connection_count)


def run(
    build_context: BuildContext,
    n: int = 1,
    loop: str | None = None,
    *,
    drain_timeout: float = 10.0,
) -> int:
    """Serve ``build_context()`` with ``n`` processes until SIGTERM/SIGINT; returns 0.

    Raises ValueError for ``n < 1``, a negative or non-finite ``drain_timeout``, or
    (``n > 1``) without SO_REUSEPORT balancing, and :class:`WorkerStartError` when the
    first workers cannot start.
    """
    if n < 1:
        raise ValueError(f"the number of workers must be at least 1, not {n}")
    if not (drain_timeout >= 0 and math.isfinite(drain_timeout)):
        raise ValueError(f"drain_timeout must be 0 or more seconds, not {drain_timeout!r}")
    if n == 1:
        return _run_single(build_context, loop, drain_timeout)
    if not reuse_port_supported():
        raise ValueError(
            f"--workers needs SO_REUSEPORT load balancing, which only Linux has "
            f"(this is {sys.platform}); run one worker"
        )
    return _Supervisor(build_context, n, loop, drain_timeout).run()


def _run_single(build_context: BuildContext, loop: str | None, drain_timeout: float) -> int:
    stops = [0]
    holder: list[Context] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stops[0] += 1
        if holder:
            holder[0].cancel_service()

    old = {s: signal.signal(s, on_signal) for s in _STOP_SIGNALS}
    try:
        ctx = build_context()
        holder.append(ctx)
        try:
            serve_and_drain(ctx, loop, lambda: stops[0], drain_timeout)
        finally:
            ctx.destroy()
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    return 0


# ----------------------------------------------------------------------------- the worker


def _worker_main(
    index: int, build_context: BuildContext, loop: str | None, drain_timeout: float, ready: int
) -> int:
    """Body of worker ``index`` (in the forked child); its exit status."""
    set_log_tag(f"w{index}")
    parent = os.getppid()
    stops = [0]
    holder: list[Context] = []

    def on_term(signum: int, frame: FrameType | None) -> None:
        stops[0] += 1
        if holder:
            holder[0].cancel_service()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _HANDLED)

    def stop() -> int:
        if stops[0] == 0 and os.getppid() != parent:
            logger.warning("the supervisor (pid %d) is gone: draining", parent)
            stops[0] = 1
        return stops[0]

    try:
        ctx = build_context()
    except Exception as exc:
        logger.error("worker %d cannot start: %s", index, exc)
        with contextlib.suppress(OSError):
            os.write(ready, b"F" + str(exc).encode("utf-8", "replace"))
        return 1
    holder.append(ctx)
    where = f" ({loop} loop)" if loop else ""
    logger.log(
        NOTICE, "worker %d (pid %d) serving on port %s%s", index, os.getpid(), ctx.port, where
    )
    with contextlib.suppress(OSError):
        os.write(ready, b"R%d" % (ctx.port if ctx.port is not None else -1))
    os.close(ready)
    try:
        serve_and_drain(ctx, loop, stop, drain_timeout)
    finally:
        ctx.destroy()
    logger.log(NOTICE, "worker %d (pid %d) done", index, os.getpid())
    return 0


# ------------------------------------------------------------------------- the supervisor


@dataclass
class _Proc:
    index: int
    pid: int
    ready_fd: int | None  # read end of the worker's start-up pipe
    started: float
    ready: bool = False
    port: int = -1  # the port it listens on, from its start-up message
    failure: str = ""
    kill_at: float | None = None  # set when it is told to drain


@dataclass
class _Slot:
    pid: int | None = None  # the worker serving this slot
    backoff: float = BACKOFF_MIN
    restart_at: float | None = None


class _Supervisor:
    def __init__(
        self, build_context: BuildContext, n: int, loop: str | None, drain_timeout: float
    ) -> None:
        self._build = build_context
        self._loop = loop
        self._drain_timeout = drain_timeout
        self._slots = {i: _Slot() for i in range(1, n + 1)}
        self._procs: dict[int, _Proc] = {}
        self._stop = 0
        self._hup = False
        self._start_failure = ""  # the last reason a worker gave for not starting
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)

    # signals only set flags; the wakeup fd ends the select() at once
    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum in _STOP_SIGNALS:
            self._stop += 1
        elif signum == signal.SIGHUP:
            self._hup = True

    def run(self) -> int:
        old = {s: signal.signal(s, self._on_signal) for s in _HANDLED}
        old_wakeup = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        try:
            return self._run()
        finally:
            self._shutdown()
            signal.set_wakeup_fd(old_wakeup)
            for s, handler in old.items():
                signal.signal(s, handler)
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _run(self) -> int:
        n = len(self._slots)
        logger.log(NOTICE, "supervisor (pid %d): starting %d workers", os.getpid(), n)
        self._check_migrate()
        for index in self._slots:
            self._slots[index].pid = self._spawn(index).pid
        deadline = time.monotonic() + START_TIMEOUT
        while not self._stop:
            if self._start_failure:
                raise WorkerStartError(self._start_failure)
            if len(self._procs) == n and all(p.ready for p in self._procs.values()):
                ports = sorted({p.port for p in self._procs.values()})
                if len(ports) > 1:
                    # port 0, or a build_context that does not bind one fixed port
                    raise WorkerStartError(
                        f"the workers listen on different ports {ports}: give them one "
                        "fixed port (not 0)"
                    )
                break
            if time.monotonic() >= deadline:
                raise WorkerStartError(f"the workers did not start within {START_TIMEOUT:g} s")
            self._pump(deadline)
        logger.log(NOTICE, "supervisor: %d workers up", n)
        while not self._stop:
            if self._hup:
                self._hup = False
                self._rolling_restart()
                continue
            self._pump(None)
        logger.log(NOTICE, "supervisor: stopping, the workers drain")
        return 0

    @staticmethod
    def _check_migrate() -> None:
        try:
            with open(_MIGRATE_SYSCTL) as f:
                value = f.read().strip()
        except OSError:
            return
        if value == "0":
            logger.log(
                NOTICE,
                "net.ipv4.tcp_migrate_req is 0: connections waiting in a draining "
                "worker's accept queue are reset, not moved (set it to 1)",
            )

    def _spawn(self, index: int) -> _Proc:
        r, w = os.pipe()
        # Signals stay blocked across fork so the child never runs our handlers.
        signal.pthread_sigmask(signal.SIG_BLOCK, _HANDLED)
        try:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            pid = os.fork()
            if pid == 0:
                self._child(index, r, w)  # never returns
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _HANDLED)
        os.close(w)
        proc = _Proc(index, pid, r, time.monotonic())
        self._procs[pid] = proc
        return proc

    def _child(self, index: int, r: int, w: int) -> None:
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            os.close(r)
            os.close(self._wake_r)
            os.close(self._wake_w)
            for p in self._procs.values():
                if p.ready_fd is not None:
                    os.close(p.ready_fd)
            code = _worker_main(index, self._build, self._loop, self._drain_timeout, w)
        except BaseException:
            logger.exception("worker %d failed", index)
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os._exit(code)

    def _pump(self, until: float | None) -> None:
        """Wait for one event (a signal, a start-up message, a timer) and act on it."""
        now = time.monotonic()
        timers = [t for t in (until, *self._timers()) if t is not None]
        timeout = max(0.0, min(timers) - now) if timers else None
        fds = [self._wake_r, *(p.ready_fd for p in self._procs.values() if p.ready_fd is not None)]
        try:
            readable, _, _ = select.select(fds, [], [], timeout)
        except InterruptedError:
            readable = []
        for fd in readable:
            if fd == self._wake_r:
                with contextlib.suppress(BlockingIOError):
                    while os.read(fd, 512):
                        pass
            else:
                self._read_ready(fd)
        self._reap()
        self._act_on_timers()

    def _timers(self) -> list[float | None]:
        return [
            *(s.restart_at for s in self._slots.values()),
            *(p.kill_at for p in self._procs.values()),
        ]

    def _read_ready(self, fd: int) -> None:
        proc = next(p for p in self._procs.values() if p.ready_fd == fd)
        try:
            data = os.read(fd, 4096)
        except OSError:
            data = b""
        if data[:1] == b"R":
            proc.ready = True
            proc.port = int(data[1:] or b"-1")
        elif data[:1] == b"F":
            proc.failure = self._start_failure = data[1:].decode("utf-8", "replace")
        if not data or data[:1] == b"F" or proc.ready:
            os.close(fd)
            proc.ready_fd = None  # EOF without a word: _reap says how it ended

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            proc = self._procs.pop(pid, None)
            if proc is None:
                continue
            if proc.ready_fd is not None:
                os.close(proc.ready_fd)
                proc.ready_fd = None
            if not proc.ready and not proc.failure:
                proc.failure = f"worker {proc.index} {_describe(status)} before it was listening"
                self._start_failure = proc.failure
            self._exited(proc, status)

    def _exited(self, proc: _Proc, status: int) -> None:
        how = _describe(status)
        slot = self._slots[proc.index]
        if slot.pid != proc.pid:
            # drained (SIGTERM, rolling restart) or a replacement that never came up
            level = NOTICE if proc.kill_at is not None else logging.WARNING
            logger.log(level, "worker %d (pid %d) %s", proc.index, proc.pid, how)
            return
        slot.pid = None
        if self._stop:
            return
        lived = time.monotonic() - proc.started
        if lived >= BACKOFF_RESET:
            slot.backoff = BACKOFF_MIN
        delay = slot.backoff
        slot.backoff = min(slot.backoff * 2, BACKOFF_MAX)
        slot.restart_at = time.monotonic() + delay
        logger.warning(
            "worker %d (pid %d) %s; restarting it in %.1f s", proc.index, proc.pid, how, delay
        )

    def _act_on_timers(self) -> None:
        now = time.monotonic()
        for proc in list(self._procs.values()):
            if proc.kill_at is not None and now >= proc.kill_at:
                logger.warning(
                    "worker %d (pid %d) did not drain in time: killed", proc.index, proc.pid
                )
                proc.kill_at = None
                _signal(proc.pid, signal.SIGKILL)
        if self._stop:
            return
        for index, slot in self._slots.items():
            if slot.restart_at is not None and now >= slot.restart_at:
                slot.restart_at = None
                slot.pid = self._spawn(index).pid

    def _drain(self, proc: _Proc) -> None:
        proc.kill_at = time.monotonic() + self._drain_timeout + KILL_GRACE
        _signal(proc.pid, signal.SIGTERM)

    def _rolling_restart(self) -> None:
        logger.log(NOTICE, "supervisor: SIGHUP, restarting the workers one by one")
        for index, slot in self._slots.items():
            new = self._spawn(index)
            deadline = time.monotonic() + START_TIMEOUT
            while not (new.ready or new.failure or self._stop) and time.monotonic() < deadline:
                self._pump(deadline)
            if self._stop:
                return
            if not new.ready:
                logger.error(
                    "rolling restart stopped: the new worker %d did not start (%s)",
                    index,
                    new.failure or "timeout",
                )
                if new.pid in self._procs:
                    self._drain(new)
                return
            old = self._procs.get(slot.pid) if slot.pid is not None else None
            slot.pid = new.pid
            slot.restart_at = None
            if old is None:
                continue
            self._drain(old)
            while old.pid in self._procs and not self._stop:
                self._pump(None)
        logger.log(NOTICE, "supervisor: rolling restart done")

    def _shutdown(self) -> None:
        """Drain every worker; kill those still there after the bound; reap them all."""
        for slot in self._slots.values():
            slot.restart_at = None
            slot.pid = None
        self._stop = max(self._stop, 1)
        for proc in self._procs.values():
            if proc.kill_at is None:
                self._drain(proc)
        while self._procs:
            self._pump(None)
        for p in self._procs.values():
            if p.ready_fd is not None:
                os.close(p.ready_fd)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"was killed by {name}"
    code = os.waitstatus_to_exitcode(status)
    return "exited" if code == 0 else f"exited with status {code}"
