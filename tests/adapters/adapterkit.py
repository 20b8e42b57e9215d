"""Drivers that run a context on one loop library for a bounded time, and a raw client.

A driver runs the context in the calling thread (the context's) until ``until()`` is
true, failing after ``timeout`` seconds; the test's clients run in helper threads.
Before detaching it records the adapter's view of the poll set (``last_events``) so
tests can compare it with the context's.
"""

from __future__ import annotations

import base64
import importlib.util
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from support.procs import free_port, wait_accepting

from lwsbridge.context import Context

HOST = "127.0.0.1"
TEXT, BINARY, CLOSE = 0x1, 0x2, 0x8

Hook = Callable[[Any], None]


class Driver:
    name = "?"

    def __init__(self) -> None:
        self.last_events: dict[int, int] | None = None
        self.adapter: Any = None

    def run(
        self,
        ctx: Context,
        until: Callable[[], Any],
        timeout: float = 10.0,
        what: str = "the condition",
        *,
        poll_ms: int = 20,
        on_attach: Hook | None = None,
    ) -> float:
        """Serve ``ctx`` until ``until()``; returns the seconds it took."""
        start = time.monotonic()
        deadline = start + timeout
        ok = self._run(ctx, until, deadline, poll_ms, on_attach)
        if not ok:
            pytest.fail(f"[{self.name}] timed out after {timeout} s waiting for {what}")
        return time.monotonic() - start

    def _run(
        self,
        ctx: Context,
        until: Callable[[], Any],
        deadline: float,
        poll_ms: int,
        on_attach: Hook | None,
    ) -> bool:
        raise NotImplementedError

    def _attached(self, adapter: Any, on_attach: Hook | None) -> None:
        self.adapter = adapter
        if on_attach is not None:
            on_attach(adapter)

    def _detaching(self, adapter: Any) -> None:
        self.last_events = dict(adapter.seen)


def recording(cls: type) -> Any:
    """``cls`` with a log of the sink calls it gets, checked as they come.

    Adapters keep no interest table: every call carries the old mask.  The
    subclass keeps the table the calls describe (``seen``) and fails when an
    ADD, CHANGE or DEL disagrees with it, so the old masks the context sends are
    tested on every loop; tests compare ``seen`` with ``ctx.fds`` at the end.
    ``adapter_cls`` is the adapter itself, for calls that must skip the checks.
    """

    class Recording(cls):  # type: ignore[misc, valid-type]
        adapter_cls = cls

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.seen: dict[int, int] = {}  # before attach: it replays the ADDs
            super().__init__(*args, **kwargs)

        def add_fd(self, fd: int, events: int) -> None:
            assert fd not in self.seen, f"ADD for fd {fd}, already watched"
            super().add_fd(fd, events)
            self.seen[fd] = events

        def del_fd(self, fd: int, events: int) -> None:
            assert self.seen.get(fd) == events, (fd, self.seen.get(fd), events)
            super().del_fd(fd, events)
            del self.seen[fd]

        def change_fd(self, fd: int, old: int, new: int) -> None:
            assert self.seen.get(fd) == old, (fd, self.seen.get(fd), old)
            super().change_fd(fd, old, new)
            self.seen[fd] = new

    Recording.__name__ = Recording.__qualname__ = f"Recording{cls.__name__}"
    return Recording


class ArrayDriver(Driver):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def cls(self) -> Any:
        if self.name == "select":
            from lwsbridge.adapters.select_loop import SelectLoop

            return SelectLoop
        if self.name == "poll":
            from lwsbridge.adapters.poll_loop import PollLoop

            return PollLoop
        from lwsbridge.adapters.epoll_loop import EpollLoop

        return EpollLoop

    def _run(self, ctx, until, deadline, poll_ms, on_attach) -> bool:
        loop = recording(self.cls())(ctx)
        try:
            self._attached(loop, on_attach)
            while not until():
                if time.monotonic() > deadline:
                    return False
                loop.run_once(poll_ms)
            return True
        finally:
            self._detaching(loop)
            loop.close()


class ZmqDriver(Driver):
    name = "zmq"

    def _run(self, ctx, until, deadline, poll_ms, on_attach) -> bool:
        import zmq

        from lwsbridge.adapters.zmq_poller import ZmqPollerAdapter

        poller = zmq.Poller()
        ad = recording(ZmqPollerAdapter)(ctx, poller)
        try:
            self._attached(ad, on_attach)
            while not until():
                if time.monotonic() > deadline:
                    return False
                rest = ad.handle(dict(poller.poll(ad.timeout(poll_ms))))
                assert not rest, rest
            return True
        finally:
            self._detaching(ad)
            ad.close()


class GeventDriver(Driver):
    name = "gevent"

    def _run(self, ctx, until, deadline, poll_ms, on_attach) -> bool:
        import gevent

        from lwsbridge.adapters.gevent_loop import GeventAdapter

        ad = recording(GeventAdapter)(ctx)
        try:
            self._attached(ad, on_attach)
            while not until():
                if time.monotonic() > deadline:
                    return False
                gevent.sleep(0.005)  # the hub runs the watchers meanwhile
            return True
        finally:
            self._detaching(ad)
            ad.close()


class TrioDriver(Driver):
    name = "trio"

    def _run(self, ctx, until, deadline, poll_ms, on_attach) -> bool:
        import trio

        from lwsbridge.adapters.trio_loop import TrioAdapter

        result = {"ok": False}

        async def main() -> None:
            async with trio.open_nursery() as nursery:
                ad = recording(TrioAdapter)(ctx, nursery)
                try:
                    self._attached(ad, on_attach)
                    while not until():
                        if time.monotonic() > deadline:
                            return
                        await trio.sleep(0.005)
                    result["ok"] = True
                finally:
                    self._detaching(ad)
                    ad.close()

        trio.run(main)
        return result["ok"]


class AsyncioDriver(Driver):
    def __init__(self, name: str = "asyncio") -> None:
        super().__init__()
        self.name = name

    def new_loop(self) -> Any:
        import asyncio

        if self.name == "uvloop":
            import uvloop

            return uvloop.new_event_loop()
        return asyncio.new_event_loop()

    def _run(self, ctx, until, deadline, poll_ms, on_attach) -> bool:
        import asyncio

        from lwsbridge.adapters.asyncio_loop import AsyncioAdapter

        async def main() -> bool:
            ad = recording(AsyncioAdapter)(ctx)
            try:
                self._attached(ad, on_attach)
                while not until():
                    if time.monotonic() > deadline:
                        return False
                    await asyncio.sleep(0.005)
                return True
            finally:
                self._detaching(ad)
                ad.close()

        loop = self.new_loop()
        try:
            return bool(loop.run_until_complete(main()))
        finally:
            loop.close()


def have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


DRIVERS: dict[str, tuple[Callable[[], Driver], str | None]] = {
    "select": (lambda: ArrayDriver("select"), None),
    "poll": (lambda: ArrayDriver("poll"), None),
    "epoll": (lambda: ArrayDriver("epoll"), None),
    "zmq": (ZmqDriver, "zmq"),
    "gevent": (GeventDriver, "gevent"),
    "trio": (TrioDriver, "trio"),
    "asyncio": (AsyncioDriver, None),
    "uvloop": (lambda: AsyncioDriver("uvloop"), "uvloop"),
}


# ---------------------------------------------------------------------------- raw client


class RawWS:
    """A blocking WebSocket client on a plain socket (for RST and slow-reader tests)."""

    def __init__(self, port: int, protocol: str | None = None, rcvbuf: int | None = None):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(10)
        s.connect((HOST, port))
        self.sock = s
        self.buf = bytearray()
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            "GET / HTTP/1.1",
            f"Host: {HOST}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if protocol:
            lines.append(f"Sec-WebSocket-Protocol: {protocol}")
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        end = self.buf.index(b"\r\n\r\n")
        head = bytes(self.buf[:end])
        del self.buf[: end + 4]
        assert head.startswith(b"HTTP/1.1 101"), head

    def _fill(self) -> None:
        data = self.sock.recv(1 << 20)
        if not data:
            raise EOFError("server closed")
        self.buf += data

    def send(self, opcode: int, payload: bytes) -> None:
        head = bytearray([0x80 | opcode])
        n = len(payload)
        if n < 126:
            head.append(0x80 | n)
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        head += b"\0\0\0\0"  # a zero mask key: the payload goes as is
        self.sock.sendall(bytes(head) + payload)

    def recv(self) -> tuple[int, bytes]:
        while True:
            buf = self.buf
            if len(buf) >= 2:
                n = buf[1] & 0x7F
                pos = 2
                if n == 126 and len(buf) >= 4:
                    n, pos = struct.unpack("!H", buf[2:4])[0], 4
                elif n == 127 and len(buf) >= 10:
                    n, pos = struct.unpack("!Q", buf[2:10])[0], 10
                if (n < 126 or pos > 2) and len(buf) >= pos + n:
                    frame = (buf[0] & 0x0F, bytes(buf[pos : pos + n]))
                    del buf[: pos + n]
                    return frame
            self._fill()

    def abort(self) -> None:
        """Close with RST (SO_LINGER 0)."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        self.sock.close()


# ---------------------------------------------------------------------------- app processes

#: the Python module each loop needs (None: the standard library)
LOOP_MODULES: dict[str, str | None] = {
    "select": None,
    "poll": None,
    "epoll": None,
    "zmq": "zmq",
    "gevent": "gevent",
    "trio": "trio",
    "asyncio": None,
}


def need_loop(loop: str) -> None:
    module = LOOP_MODULES[loop]
    if module is not None and not have(module):
        pytest.skip(f"{module} is not installed")


class AppProcesses:
    """``lwsbridge.apps.*`` subprocesses (``sys.executable -m``), stopped by PID at the end."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self._out: dict[int, bytearray] = {}

    def start(self, app: str, *args: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", f"lwsbridge.apps.{app}", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        os.set_blocking(proc.stdout.fileno(), False)  # type: ignore[union-attr]
        self.procs.append(proc)
        self._out[proc.pid] = bytearray()
        return proc

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        buf = self._out[proc.pid]
        assert proc.stdout is not None
        try:
            while chunk := proc.stdout.read(65536):
                buf += chunk
        except (BlockingIOError, ValueError):
            pass
        return buf.decode(errors="replace")

    def wait_output(self, proc: subprocess.Popen[bytes], needle: bytes, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle.decode() in self.output(proc):
                return True
            if proc.poll() is not None:
                return needle.decode() in self.output(proc)
            time.sleep(0.02)
        return False

    def start_server(self, app: str, *args: str, timeout: float = 15.0) -> int:
        """Start ``app -p PORT -i 127.0.0.1 *args`` on a free port; return once it accepts."""
        for _attempt in range(3):
            port = free_port()
            proc = self.start(app, "-p", str(port), "-i", HOST, *args)
            if wait_accepting(proc, port, time.monotonic() + timeout):
                return port
            self.stop(proc)
        pytest.fail(f"{app} {' '.join(args)} did not start:\n{self.output(proc)[-3000:]}")

    def signal_last(self, sig: int, timeout: float = 10.0) -> float:
        """Send ``sig`` to the newest process; assert exit 0, no traceback; seconds taken."""
        proc = self.procs[-1]
        start = time.monotonic()
        proc.send_signal(sig)
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop(proc)
            pytest.fail(f"signal {sig} did not end the process:\n{self.output(proc)[-3000:]}")
        took = time.monotonic() - start
        out = self.output(proc)
        assert rc == 0, f"exit status {rc} after signal {sig}:\n{out[-3000:]}"
        assert "Traceback" not in out, out[-3000:]
        return took

    def assert_alive(self) -> None:
        for proc in self.procs:
            assert proc.poll() is None, f"exited with {proc.returncode}:\n{self.output(proc)}"
            assert "Traceback" not in self.output(proc)

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(3)
        if proc.stdout is not None:
            self.output(proc)
            proc.stdout.close()

    def stop_all(self) -> None:
        for proc in self.procs:
            self.stop(proc)
