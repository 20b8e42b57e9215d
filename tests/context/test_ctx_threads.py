"""Threads: every public call but cancel_service() refuses other threads, and the wakeup
is never written after destroy() (issue 13, defects a and b)."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

from support.servicing import pump, stepper
from wsclient import handshake, wait_frame

from lwsbridge.context import ClientConnectInfo, Context, Protocol, Reason, WriteKind
from lwsbridge.core.errors import LocalProtocolError


def _in_thread(fn: Callable[[], Any]) -> BaseException | None:
    """Run ``fn`` on another thread, wait for it, and return what it raised."""
    got: list[BaseException | None] = [None]

    def body() -> None:
        try:
            fn()
        except BaseException as exc:  # handed back to the test
            got[0] = exc

    t = threading.Thread(target=body)
    t.start()
    t.join(10)
    return got[0]


def test_write_from_another_thread_inside_writeable_is_refused(make_ctx, client) -> None:
    seen: dict[str, Any] = {}

    def cb(conn, reason, user, payload):  # type: ignore[no-untyped-def]
        if reason is Reason.ESTABLISHED:
            conn.callback_on_writable()
        elif reason is Reason.SERVER_WRITEABLE and "write" not in seen:
            # The service thread is inside this connection's WRITEABLE right now.
            seen["write"] = _in_thread(lambda: conn.write(b"from a thread", WriteKind.BINARY))
            seen["cow"] = _in_thread(conn.callback_on_writable)
            seen["rx"] = _in_thread(lambda: conn.rx_flow_control(False))
            seen["timer"] = _in_thread(lambda: conn.set_timer(1.0))
            conn.write(b"from the service thread", WriteKind.BINARY)
        return 0

    ctx = make_ctx([Protocol("p", cb)])
    c = client(ctx.port)
    handshake(ctx, c)
    frame = wait_frame(ctx, c)
    assert frame.payload == b"from the service thread"
    for name in ("write", "cow", "rx", "timer"):
        exc = seen[name]
        assert isinstance(exc, LocalProtocolError), (name, exc)
        assert "single-threaded" in str(exc) or "WRITEABLE" in str(exc)


def test_context_calls_from_another_thread_are_refused(make_ctx) -> None:
    ctx = make_ctx([Protocol("p", lambda *a: 0)])
    calls: list[Callable[[], Any]] = [
        lambda: ctx.service_fd(0, 0),
        ctx.service_pending,
        ctx.next_timeout,
        lambda: ctx.fds,
        lambda: ctx.connections(),
        ctx.all_connections,
        lambda: ctx.callback_on_writable_all_protocol("p"),
        lambda: ctx.client_connect(ClientConnectInfo("127.0.0.1", 1)),
        lambda: ctx.set_poll_sink(None),
        lambda: ctx.service(0),
        ctx.destroy,
    ]
    for call in calls:
        assert isinstance(_in_thread(call), LocalProtocolError)
    assert _in_thread(ctx.cancel_service) is None  # the one thread-safe call
    ctx.service_pending()  # still fine on its own thread


def _reuse_fds(n: int = 8) -> list[tuple[int, int]]:
    """Pipes opened right away take the lowest free fd numbers (those just closed)."""
    return [os.pipe() for _ in range(n)]


def _unread(pipes: list[tuple[int, int]]) -> bytes:
    got = b""
    for r, _w in pipes:
        os.set_blocking(r, False)
        with contextlib.suppress(BlockingIOError):
            got += os.read(r, 4096)
    return got


def test_resolver_result_after_destroy_is_dropped(monkeypatch) -> None:
    release = threading.Event()
    started = threading.Event()
    real = socket.getaddrinfo

    def slow_getaddrinfo(host, *a, **kw):  # type: ignore[no-untyped-def]
        if host == "slow.invalid":
            started.set()
            release.wait(10)
            return real("127.0.0.1", *a, **kw)
        return real(host, *a, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", slow_getaddrinfo)
    errors: list[Any] = []

    def cb(conn, reason, user, payload):  # type: ignore[no-untyped-def]
        if reason is Reason.CLIENT_CONNECTION_ERROR:
            errors.append(payload)
        return 0

    ctx = Context([Protocol("p", cb)], port=None)
    ctx.client_connect(ClientConnectInfo("slow.invalid", 9, protocol="p"))
    assert started.wait(10)
    ctx.destroy()
    assert len(errors) == 1 and "destroyed" in errors[0]
    pipes = _reuse_fds()  # the host reuses the wakeup pipe's fd numbers
    try:
        threads = [t for t in threading.enumerate() if t.daemon and t.is_alive()]
        release.set()
        for t in threads:
            t.join(5)
        assert _unread(pipes) == b""  # no stray wake byte in the host's files
        assert len(errors) == 1  # and the late result called nothing
    finally:
        for r, w in pipes:
            os.close(r)
            os.close(w)


def test_cancel_service_after_destroy_writes_nothing() -> None:
    ctx = Context([Protocol("p", lambda *a: 0)], port=None)
    ctx.destroy()
    pipes = _reuse_fds()
    try:
        ctx.cancel_service()
        assert _unread(pipes) == b""
    finally:
        for r, w in pipes:
            os.close(r)
            os.close(w)


def test_cancel_service_from_a_thread_wakes_before_destroy(make_ctx) -> None:
    woken: list[int] = []

    def cb(conn, reason, user, payload):  # type: ignore[no-untyped-def]
        if reason is Reason.EVENT_WAIT_CANCELLED:
            woken.append(1)
        return 0

    ctx = make_ctx([Protocol("p", cb)])
    assert _in_thread(ctx.cancel_service) is None
    pump(stepper(ctx), lambda: woken, "EVENT_WAIT_CANCELLED")
    assert woken == [1]
