"""The test server's lws-mirror-protocol through a backplane: two real
``lwsbridge-test-server --backplane URL`` processes (and in-process contexts for the flow
control), a real redis-server and the real zmq proxy, real WebSocket clients."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.mirror import Member, members_closed, until_flowing, wait_for
from support.procs import HOST, Server, run_server
from support.redisserver import RedisServer

from lwsbridge.apps.demo_server import Mirror, build_context, instance_name
from lwsbridge.context import Context

N = 20  # messages per sender


@contextlib.contextmanager
def two_servers(tmp_path: Path, url: str) -> Iterator[tuple[Server, Server]]:
    # A on the asyncio adapter, B on the built-in loop: the backplane's sockets are in
    # the poll set whichever loop serves it.
    with (
        run_server("lwsbridge-test-server", tmp_path, "--backplane", url, "--loop", "asyncio") as a,
        run_server("lwsbridge-test-server", tmp_path, "--backplane", url) as b,
    ):
        yield a, b
        a.assert_alive()
        b.assert_alive()


def check_per_sender(member: Member, senders: list[str]) -> None:
    """``member`` got every sender's N messages, each exactly once, in order."""
    for s in senders:
        assert member.texts(f"{s}:") == [f"{s}:{i}" for i in range(N)], (member.name, s)


def test_every_member_on_both_servers_gets_every_message_once_in_order(
    broker_url: str, tmp_path: Path
) -> None:
    with two_servers(tmp_path, broker_url) as (a, b), members_closed() as ms:
        ms += [Member(a.port, "a1"), Member(a.port, "a2"), Member(b.port, "b1")]
        ms.append(Member(b.port, "b2"))
        until_flowing([ms[0], ms[2]], ms)
        for i in range(N):
            for m in ms:
                m.ws.send(f"{m.name}:{i}")
        ms[3].ws.send(b"\x00binary\xff")  # the frame type goes through too
        total = len(ms) * N + 1
        wait_for(ms, lambda: all(len(m.got) >= total for m in ms), "every message")
        for m in ms:
            check_per_sender(m, [x.name for x in ms])  # the sender's own included
            assert [x for x in m.got if isinstance(x, bytes)] == [b"\x00binary\xff"]
            assert len(m.got) == total


def run_isolation(members: dict[str, list[Member]], ends: list[Member]) -> None:
    """Every member of every instance sends N messages; ``ends`` (one per server and
    instance) then send an end marker once their own messages are back.  A backplane
    keeps one process's messages in order over all channels, so a message that leaked
    into another instance would arrive before the markers: all in, nothing foreign."""
    everyone = [m for group in members.values() for m in group]
    for i in range(N):
        for m in everyone:
            m.ws.send(f"{m.name}:{i}")
    for inst, group in members.items():
        wait_for(
            everyone,
            lambda group=group: all(len(m.texts()) >= len(group) * N for m in group),  # type: ignore[misc]
            f"instance {inst!r}",
        )
    for e in ends:
        e.ws.send(f"end:{e.name}")
    for inst, group in members.items():
        enders = [e.name for e in ends if e in group]
        want = len(group) * N + len(enders)
        wait_for(everyone, lambda g=group, w=want: all(len(m.got) >= w for m in g), "the ends")  # type: ignore[misc]
        for m in group:
            check_per_sender(m, [x.name for x in group])
            assert sorted(m.texts("end:")) == sorted(f"end:{n}" for n in enders)
            assert len(m.got) == want, (inst, m.name, m.got[:5])


def test_named_instances_are_isolated_across_servers(broker_url: str, tmp_path: Path) -> None:
    with two_servers(tmp_path, broker_url) as (a, b), members_closed() as ms:
        groups: dict[str, list[Member]] = {}
        for inst in (None, "x", "y"):
            key = inst or "default"
            groups[key] = [Member(a.port, f"{key}-a", inst), Member(b.port, f"{key}-b", inst)]
            ms += groups[key]
            until_flowing(groups[key], groups[key])
        run_isolation(groups, ms)


def test_named_instances_without_a_backplane(tmp_path: Path) -> None:
    with run_server("lwsbridge-test-server", tmp_path) as srv, members_closed() as ms:
        groups: dict[str, list[Member]] = {}
        for inst in (None, "x", "y", ""):  # "?mirror=" is the default instance too
            key = inst or "default"
            new = [Member(srv.port, f"{key}-{len(ms) + i}", inst) for i in range(2)]
            groups.setdefault(key, []).extend(new)
            ms += new
        run_isolation(groups, [g[0] for g in groups.values()])
        srv.assert_alive()


def test_instance_name_from_the_request_target() -> None:
    assert instance_name("/") == ""
    assert instance_name("/?mirror=") == ""
    assert instance_name("/?a=1&mirror=room%201") == "room 1"
    assert instance_name("/?mirror=" + "x" * Mirror.MAX_NAME) == "x" * Mirror.MAX_NAME
    assert instance_name("/?mirror=" + "x" * (Mirror.MAX_NAME + 1)) is None
    assert instance_name("/?mirror=a%0Ab") is None


def test_bad_instance_name_is_refused(tmp_path: Path) -> None:
    from websockets.exceptions import InvalidStatus

    with run_server("lwsbridge-test-server", tmp_path) as srv:
        with pytest.raises(InvalidStatus) as info:
            Member(srv.port, "bad", "a%0Ab")
        assert info.value.response.status_code == 403
        with members_closed() as ms:  # the server goes on
            ms.append(Member(srv.port, "ok"))
            ms[0].ws.send("hi")
            wait_for(ms, lambda: ms[0].got == ["hi"], "the echo")
        srv.assert_alive()


# ------------------------------------------------------------- flow control, in-process


class Serviced:
    """A test-server context with a small mirror on a backplane, serviced on a thread."""

    def __init__(self, url: str, mirror: Mirror) -> None:
        self.mirror = mirror
        self.ctx: Context = build_context(0, "127.0.0.1", mirror=mirror, backplane=url)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.ctx.adopt_thread()
        while not self.stop.is_set():
            self.ctx.service(10)

    def close(self) -> None:
        self.stop.set()
        self.ctx.cancel_service()
        self.thread.join(10)
        assert not self.thread.is_alive()
        self.ctx.adopt_thread()
        self.mirror.close()
        self.ctx.destroy()


def raw_member(port: int) -> socket.socket:
    """A member that completes the handshake and then never reads: a small receive
    buffer, so that the kernel holds little for it."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect((HOST, port))
    s.sendall(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Protocol: lws-mirror-protocol\r\n\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        assert chunk, "closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def wait_dropped(server: Serviced, what: str, timeout: float = 30) -> None:
    """Until a member of ``server``'s default instance is dropped (read from the test
    thread while the service thread runs: a copy of the dict, retried if it changed)."""

    def dropped() -> bool:
        try:
            members = list(server.mirror.default.members)
        except RuntimeError:  # changed size while copied
            return False
        return len(members) < 2 or any(c.user.dropped for c in members)

    deadline = time.monotonic() + timeout
    while not dropped():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def flood_past_a_lazy_member(broker_url: str, b_mirror: Mirror, with_reader: bool) -> None:
    """A floods from server A; on server B a member that stopped reading (and maybe one
    that reads).  A's sender cannot be paused by B, so B must drop the lazy member; the
    flooder and the reader get everything, in order."""
    a = Serviced(broker_url, Mirror(ring=16, stall_timeout=60))
    b = Serviced(broker_url, b_mirror)
    lazy: socket.socket | None = None
    try:
        with members_closed() as ms:
            ms.append(Member(a.ctx.port, "flooder"))
            if with_reader:
                ms.append(Member(b.ctx.port, "reader"))
            lazy = raw_member(b.ctx.port)
            until_flowing([ms[0]], ms)  # the lazy member takes the probes too
            payload = "x" * 2000
            count = 4000  # 8 MB: more than the kernel holds for the lazy member (tcp_wmem)
            for i in range(count):
                ms[0].ws.send(f"flooder:{i}:{payload}")
            wait_for(ms, lambda: all(len(m.got) >= count for m in ms), "the flood", timeout=60)
            for m in ms:
                assert [str(x).split(":")[1] for x in m.got] == [str(i) for i in range(count)]
            wait_dropped(b, "the lazy member to be dropped")
    finally:
        if lazy is not None:
            lazy.close()
        a.close()
        b.close()


def test_a_stalled_member_is_timed_out_and_never_slows_the_others(broker_url: str) -> None:
    """No memory bound in reach: the lazy member is dropped because it took nothing
    for stall_timeout while it held the ring nearly full."""
    flood_past_a_lazy_member(broker_url, Mirror(ring=16, stall_timeout=1, max_behind=10**6), True)


def test_a_member_max_behind_is_dropped_at_once(broker_url: str) -> None:
    """No stall timer in reach: the memory bound drops the lazy member."""
    flood_past_a_lazy_member(broker_url, Mirror(ring=16, stall_timeout=600, max_behind=400), False)


class PauseCounting(Mirror):
    """Counts the pauses, and the most messages in flight seen at one."""

    pauses = 0
    most_in_flight = 0

    def _pause(self, conn: Any, ring: Mirror.Ring, members: list[Any]) -> None:
        self.pauses += 1
        self.most_in_flight = max(self.most_in_flight, ring.outstanding)
        super()._pause(conn, ring, members)


def test_flooding_sender_is_paused_until_its_messages_come_back(redis: RedisServer) -> None:
    """One server: the flooder's messages in flight count as queued, so it is paused
    (not the world) before more than a ring is on its way, and every member still gets
    everything in order.  (The accounting is the backplane's business on either broker:
    Redis only, to keep the suite short.)"""
    mirror = PauseCounting(ring=8, stall_timeout=60)
    a = Serviced(redis.url, mirror)
    try:
        with members_closed() as ms:
            ms += [Member(a.ctx.port, f"m{i}") for i in range(3)]
            until_flowing([ms[0]], ms)
            count = 600  # ring=8: ~200 pauses
            for i in range(count):
                ms[0].ws.send(f"m0:{i}")
            wait_for(ms, lambda: all(len(m.got) >= count for m in ms), "the flood", timeout=60)
            for m in ms:
                assert m.got == [f"m0:{i}" for i in range(count)]
        ring = mirror.default
        a.stop.set()
        a.thread.join(10)
        a.ctx.adopt_thread()
        assert mirror.pauses > 0
        assert mirror.most_in_flight <= mirror.high_water
        assert ring.outstanding == 0 and not ring.pending and not ring.paused
    finally:
        a.close()


def test_workers_share_the_mirror_through_the_backplane(redis: RedisServer, tmp_path: Path) -> None:
    """``--workers 2 --backplane``: each worker has its own mirror on the backplane, so
    the members reach each other whichever worker the kernel gave them (SO_REUSEPORT
    spreads them; the test holds whatever the spread)."""
    with (
        run_server(
            "lwsbridge-test-server", tmp_path, "--workers", "2", "--backplane", redis.url
        ) as srv,
        members_closed() as ms,
    ):
        ms += [Member(srv.port, f"w{i}") for i in range(4)]
        until_flowing(ms, ms)
        for i in range(N):
            for m in ms:
                m.ws.send(f"{m.name}:{i}")
        wait_for(ms, lambda: all(len(m.got) >= len(ms) * N for m in ms), "every message")
        for m in ms:
            check_per_sender(m, [x.name for x in ms])
            assert len(m.got) == len(ms) * N
        srv.assert_alive()
