"""Context.adopt_fd / set_fd_events / release_fd and Context.call_later: a foreign fd and
a plain timer driven by the context, as the backplanes use them."""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from lwsbridge.context import POLLIN, POLLOUT, Context, Protocol, Reason
from lwsbridge.core.errors import LocalProtocolError


class Recorder:
    def __init__(self) -> None:
        self.poll: list[tuple[Reason, int, int]] = []

    def __call__(self, conn: Any, reason: Reason, user: Any, payload: Any) -> int:
        if reason in (
            Reason.ADD_POLL_FD,
            Reason.DEL_POLL_FD,
            Reason.SET_MODE_POLL_FD,
            Reason.CLEAR_MODE_POLL_FD,
        ):
            self.poll.append((reason, payload.fd, payload.events))
        return 0


class Sink:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int]] = []

    def add_fd(self, fd: int, events: int) -> None:
        self.calls.append(("add", fd, events))

    def del_fd(self, fd: int, events: int) -> None:
        self.calls.append(("del", fd, events))

    def change_fd(self, fd: int, old: int, events: int) -> None:
        self.calls.append(("change", fd, events))


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def ctx() -> Iterator[tuple[Context, Recorder]]:
    rec = Recorder()
    c = Context([Protocol("http", rec)], port=None)
    yield c, rec
    c.destroy()


def test_adopted_fd_is_reported_and_dispatched(
    ctx: tuple[Context, Recorder], pair: tuple[socket.socket, socket.socket]
) -> None:
    c, rec = ctx
    a, _b = pair
    sink = Sink()
    c.set_poll_sink(sink)
    sink.calls.clear()
    seen: list[tuple[int, int]] = []
    c.adopt_fd(a.fileno(), POLLIN, lambda fd, rev: seen.append((fd, rev)))
    fd = a.fileno()
    assert (Reason.ADD_POLL_FD, fd, POLLIN) in rec.poll
    assert sink.calls == [("add", fd, POLLIN)]
    assert (fd, POLLIN) in c.fds

    assert c.service_fd(fd, POLLIN) == 0  # ours: handled
    assert seen == [(fd, POLLIN)]

    c.set_fd_events(fd, POLLIN | POLLOUT)
    assert sink.calls[-1] == ("change", fd, POLLIN | POLLOUT)
    assert rec.poll[-1] == (Reason.SET_MODE_POLL_FD, fd, POLLIN | POLLOUT)
    c.set_fd_events(fd, POLLIN | POLLOUT)  # no change, no report
    assert sink.calls[-1] == ("change", fd, POLLIN | POLLOUT) and len(sink.calls) == 2

    c.release_fd(fd)
    assert sink.calls[-1] == ("del", fd, POLLIN | POLLOUT)
    assert rec.poll[-1][0] is Reason.DEL_POLL_FD
    assert fd not in {f for f, _ in c.fds}
    assert c.service_fd(fd, POLLIN) == POLLIN  # foreign again: left to the host
    assert seen == [(fd, POLLIN)]
    c.release_fd(fd)  # a no-op now
    c.set_poll_sink(None)


def test_built_in_loop_services_it(
    ctx: tuple[Context, Recorder], pair: tuple[socket.socket, socket.socket]
) -> None:
    c, _ = ctx
    a, b = pair
    got: list[bytes] = []
    c.adopt_fd(a.fileno(), POLLIN, lambda fd, rev: got.append(a.recv(100)))
    b.send(b"hi")
    for _ in range(100):
        c.service(50)
        if got:
            break
    assert got == [b"hi"]
    c.release_fd(a.fileno())


def test_handler_that_raises_is_logged_and_stays(
    ctx: tuple[Context, Recorder],
    pair: tuple[socket.socket, socket.socket],
    caplog: pytest.LogCaptureFixture,
) -> None:
    c, _ = ctx
    a, _b = pair

    def broken(fd: int, rev: int) -> None:
        raise RuntimeError("owner bug")

    c.adopt_fd(a.fileno(), POLLIN, broken)
    assert c.service_fd(a.fileno(), POLLIN) == 0
    assert "owner bug" in caplog.text
    assert (a.fileno(), POLLIN) in c.fds


def test_misuse_is_a_clear_error(
    ctx: tuple[Context, Recorder], pair: tuple[socket.socket, socket.socket]
) -> None:
    c, _ = ctx
    a, _b = pair
    with pytest.raises(LocalProtocolError, match="not adopted"):
        c.set_fd_events(a.fileno(), POLLIN)
    wake = c.wakeup_fd
    assert wake is not None
    with pytest.raises(LocalProtocolError, match="already"):
        c.adopt_fd(wake, POLLIN, lambda fd, rev: None)
    c.adopt_fd(a.fileno(), POLLIN, lambda fd, rev: None)
    with pytest.raises(LocalProtocolError, match="already"):
        c.adopt_fd(a.fileno(), POLLIN, lambda fd, rev: None)


def test_refused_by_the_sink_is_not_adopted(
    ctx: tuple[Context, Recorder], pair: tuple[socket.socket, socket.socket]
) -> None:
    c, _ = ctx
    a, _b = pair

    class Refusing(Sink):
        def add_fd(self, fd: int, events: int) -> None:
            if fd == a.fileno():
                raise ValueError("fd too large for select()")

    c.set_poll_sink(Refusing())
    with pytest.raises(ValueError, match="select"):
        c.adopt_fd(a.fileno(), POLLIN, lambda fd, rev: None)
    assert a.fileno() not in {f for f, _ in c.fds}
    with pytest.raises(LocalProtocolError, match="not adopted"):
        c.set_fd_events(a.fileno(), POLLIN)
    c.set_poll_sink(None)


def test_destroy_releases_adopted_fds(pair: tuple[socket.socket, socket.socket]) -> None:
    c = Context([Protocol("http", lambda *x: 0)], port=None)
    sink = Sink()
    c.set_poll_sink(sink)
    c.adopt_fd(pair[0].fileno(), POLLIN, lambda fd, rev: None)
    c.destroy()
    assert ("del", pair[0].fileno(), POLLIN) in sink.calls
    pair[0].send(b"")  # still open: the owner closes it


def test_call_later_counts_in_next_timeout_and_runs_once(ctx: tuple[Context, Recorder]) -> None:
    c, _ = ctx
    ran: list[str] = []
    assert c.next_timeout() is None
    c.call_later(3600, lambda: ran.append("late"))
    nt = c.next_timeout()
    assert nt is not None and nt > 3_000_000
    h = c.call_later(0, lambda: ran.append("now"))
    assert c.next_timeout() == 0
    c.service_pending()
    assert ran == ["now"]
    c.service_pending()
    assert ran == ["now"]  # once
    h.cancel()  # after it ran: harmless
    h2 = c.call_later(0, lambda: ran.append("cancelled"))
    h2.cancel()
    nt = c.next_timeout()
    assert nt is not None and nt > 3_000_000  # the cancelled one no longer counts
    c.service_pending()
    assert ran == ["now"]


def test_call_later_callback_that_raises_is_logged(
    ctx: tuple[Context, Recorder], caplog: pytest.LogCaptureFixture
) -> None:
    c, _ = ctx
    ran: list[int] = []

    def broken() -> None:
        raise RuntimeError("timer bug")

    c.call_later(0, broken)
    c.call_later(0, lambda: ran.append(1))
    c.service_pending()
    assert "timer bug" in caplog.text
    assert ran == [1]


def test_call_later_pokes_a_loop_asleep_on_an_older_timeout(
    ctx: tuple[Context, Recorder],
) -> None:
    """Outside servicing, a new earliest deadline makes the wakeup fd readable, so a
    loop blocked in poll() with a longer timeout comes back and asks again."""
    c, _ = ctx
    fd = c.wakeup_fd
    assert fd is not None
    c.service(0)  # drain anything pending
    assert select.select([fd], [], [], 0)[0] == []
    c.call_later(60, lambda: None)
    assert select.select([fd], [], [], 0)[0] == [fd]
    c.service(0)
    c.call_later(120, lambda: None)  # not the earliest: no poke
    assert select.select([fd], [], [], 0)[0] == []
