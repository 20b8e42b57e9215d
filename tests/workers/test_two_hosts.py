"""Two hosts (issue 16, item 4): network namespaces A and B joined by a veth pair, each
running ``lwsbridge-test-server --workers 2 --backplane URL``, with mirror members on
both hosts and on every worker.

The broker runs on host A, bound to A's veth address, so host B's workers reach it
across the veth and host A's locally, as two machines with Redis on one of them would.
The members are websockets clients of this test process whose sockets were made inside
A or B (``support.netns.connect_in``), each connected to its own host's server; which
worker holds a member is read from ``/proc`` (``workerkit.owner_pid``).

Every member checks what it received per sender with sequence numbers: exactly the
messages that sender sent since the member joined, in order, the sender's own included.
So a gap, a duplicate or a reordering anywhere fails the test.

Runs as root only (namespaces); skipped otherwise, failed under LWSBRIDGE_REQUIRE_PEERS=1.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.mirror import Member, members_closed, until_flowing, wait_for
from support.netns import VethPair, connect_in, exec_in, require_netns, veth_pair
from support.redisserver import RedisServer, redis_server
from support.zmqproxy import zmq_proxy
from websockets.exceptions import ConnectionClosed
from workerkit import WAIT, WorkerApp, alive, children, owner_pid, worker_app

from lwsbridge.backplane.resp import PyReader, encode_command

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="SO_REUSEPORT and namespaces are Linux only"
)

N = 10  # messages per sender and round
MAX_TRIES = 40  # connections opened on one host while looking for one on each worker
RECONNECT_BOUND = 15.0  # seconds for the backplane to be back after a Redis restart
CHANNEL = "lws-mirror"  # the default mirror instance's channel


@pytest.fixture
def net() -> Iterator[VethPair]:
    require_netns()
    with veth_pair() as pair:
        yield pair


@dataclass
class Client:
    member: Member
    host: str  # "a" or "b"
    pid: int  # the worker that holds its connection
    start: dict[str, int]  # sender -> how many it had sent when this member joined


class Cluster:
    """The two hosts' supervisors, the members, and how many messages each one sent."""

    def __init__(self, hosts: dict[str, tuple[WorkerApp, str]]) -> None:
        self.hosts = hosts
        self.clients: list[Client] = []
        self.sent: dict[str, int] = {}
        self._serial = itertools.count()

    def connect(self, host: str) -> Client:
        app, ns = self.hosts[host]
        name = f"{host}{next(self._serial)}"
        member = Member(app.port, name, netns=ns)
        pid = owner_pid(member.ws, app.port, list(app.current().values()))
        assert pid is not None, f"no worker of host {host} holds {name}'s connection"
        client = Client(member, host, pid, dict(self.sent))
        self.clients.append(client)
        self.sent[name] = 0
        return client

    def spread(self) -> None:
        """Members on each host until every worker of both holds one (SO_REUSEPORT
        places them by a hash: the test takes whatever spread it gets)."""
        for host, (app, _ns) in self.hosts.items():
            workers = set(app.current().values())
            for _ in range(MAX_TRIES):
                if workers <= {c.pid for c in self.clients}:
                    break
                self.connect(host)
            else:
                pytest.fail(f"{MAX_TRIES} members on host {host} missed a worker of {workers}")

    def one_per_worker(self) -> list[Member]:
        by_pid = {c.pid: c.member for c in self.clients}
        return list(by_pid.values())

    def members(self, host: str | None = None) -> list[Member]:
        return [c.member for c in self.clients if host is None or c.host == host]

    def leave(self, gone: list[Client]) -> None:
        self.clients = [c for c in self.clients if c not in gone]

    def send(self, senders: list[Client], count: int) -> None:
        """Each sender sends ``count`` numbered messages, the senders interleaved."""
        for _ in range(count):
            for c in senders:
                name = c.member.name
                c.member.ws.send(f"{name}:{self.sent[name]}")
                self.sent[name] += 1

    def expected(self, c: Client) -> dict[str, list[int]]:
        return {s: list(range(c.start.get(s, 0), n)) for s, n in self.sent.items()}

    def check(self, what: str) -> None:
        """Every member gets exactly what every sender sent since it joined, in order."""

        def total(c: Client) -> int:
            return sum(len(v) for v in self.expected(c).values())

        wait_for(
            self.members(),
            lambda: all(len(c.member.got) >= total(c) for c in self.clients),
            what,
            timeout=WAIT,
        )
        for c in self.clients:
            for sender, seqs in self.expected(c).items():
                got = [int(t.split(":")[1]) for t in c.member.texts(f"{sender}:")]
                assert got == seqs, (what, c.member.name, sender, got[:12], seqs[:12])
            assert len(c.member.got) == total(c), (what, c.member.name)


def expect_closed(m: Member) -> ConnectionClosed:
    """Read what ``m`` still has until its connection ends; how it ended."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            m.ws.recv(timeout=max(0.0, deadline - time.monotonic()))
        except ConnectionClosed as exc:
            return exc
        except TimeoutError:
            break
    pytest.fail(f"{m.name}'s connection did not end within {WAIT} s")


def numsub(redis: RedisServer, ns: str) -> int:
    """PUBSUB NUMSUB of the mirror's channel, asked from namespace ``ns``."""
    with connect_in(ns, (redis.host, redis.port), timeout=WAIT) as s:
        s.sendall(encode_command(b"PUBSUB", b"NUMSUB", CHANNEL))
        reader = PyReader()
        while (reply := reader.gets()) is False:
            data = s.recv(4096)
            assert data, "redis closed the connection"
            reader.feed(data)
    return int(reply[1])


def server(tmp_path: Path, url: str, ns: str) -> contextlib.AbstractContextManager[WorkerApp]:
    """``lwsbridge-test-server --workers 2 --backplane URL`` inside namespace ``ns``."""
    return worker_app(tmp_path, "--backplane", url, app="demo_server", prefix=exec_in(ns))


def drain_each_host(cl: Cluster) -> None:
    """SIGTERM to A's supervisor, then B's: its members get 1001 "going away", its
    processes exit with 0 within the bound, and the other host's members go on."""
    for host in ("a", "b"):
        app, _ns = cl.hosts[host]
        workers = set(app.current().values())
        assert children(app.proc.pid) == workers
        leaving = [c for c in cl.clients if c.host == host]
        app.signal(signal.SIGTERM)
        for c in leaving:
            rcvd = expect_closed(c.member).rcvd
            assert rcvd is not None, f"{c.member.name}: closed without a close frame"
            assert (rcvd.code, rcvd.reason) == (1001, "going away")
        cl.leave(leaving)
        assert app.wait_exit() == 0  # within WAIT: --drain-timeout 5, then killed after 2
        assert not any(alive(pid) for pid in workers)
        assert "Traceback" not in app.log(), app.log()
        if cl.clients:  # the other host is untouched
            cl.send(cl.clients, N)
            cl.check(f"host {host} drained: the others' messages")


def test_two_hosts_redis_kill9_restart_and_drain(net: VethPair, tmp_path: Path) -> None:
    with (
        redis_server(tmp_path, host=net.addr_a, netns=net.ns_a) as redis,
        server(tmp_path, redis.url, net.ns_a) as a,
        server(tmp_path, redis.url, net.ns_b) as b,
        members_closed(),
    ):
        cl = Cluster({"a": (a, net.ns_a), "b": (b, net.ns_b)})
        cl.spread()
        until_flowing(cl.one_per_worker(), cl.members(), timeout=WAIT)

        # 1. every message reaches every member, across hosts and workers
        cl.send(cl.clients, N)
        cl.check("every message to every member")
        assert numsub(redis, net.ns_b) == 4  # one subscription per worker

        # 2. kill -9 one of A's workers: its members lose their connection, the others
        # see no gap while it is dead and after it is back
        before = a.current()
        victim = before[1]
        assert victim in children(a.proc.pid)
        victims = [c for c in cl.clients if c.pid == victim]
        cl.leave(victims)
        cl.send(cl.clients, N // 2)
        os.kill(victim, signal.SIGKILL)
        for c in victims:
            assert expect_closed(c.member).rcvd is None  # no close frame from a dead process
        cl.send(cl.clients, N // 2)
        a.wait_log(lambda t: a.current()[1] != victim, "worker 1 of host A restarted")
        assert "was killed by SIGKILL; restarting it" in a.log()
        new = a.current()[1]
        assert new in children(a.proc.pid) and victim not in children(a.proc.pid)
        assert a.current()[2] == before[2]  # the other worker is untouched
        cl.send(cl.clients, N // 2)
        cl.check("the survivors' messages around the kill")
        # the victims reconnect (the same URL); one of them lands on the new worker
        back: list[Client] = []
        for _ in range(MAX_TRIES):
            back.append(cl.connect("a"))
            if back[-1].pid == new:
                break
        else:
            pytest.fail(f"{MAX_TRIES} reconnections never reached the new worker {new}")
        until_flowing([c.member for c in back], cl.members(), timeout=WAIT)
        cl.send(cl.clients, N)
        cl.check("every message after the restart, the new worker's members included")

        # 3. Redis restarts on the same port: every worker subscribes again in bounded
        # time, then messages cross the hosts again; no gap, since nothing real was
        # sent while it was away
        seen = {app: len(app.log()) for app in (a, b)}
        redis.stop()
        assert redis.start(), redis.log()
        deadline = time.monotonic() + RECONNECT_BOUND
        while (subs := numsub(redis, net.ns_b)) < 4:
            if time.monotonic() > deadline:
                pytest.fail(f"{subs} of 4 workers subscribed {RECONNECT_BOUND} s after a restart")
            time.sleep(0.05)
        until_flowing(cl.one_per_worker(), cl.members(), timeout=RECONNECT_BOUND)
        cl.send(cl.clients, N)
        cl.check("every message after the Redis restart")
        for app in (a, b):  # each worker said so, for both of its connections
            log = app.log()[seen[app] :]
            for index in (1, 2):
                for link in ("subscribe", "publish"):
                    line = f"[w{index}] backplane: {redis.url} ({link}) connected again"
                    assert line in log, log

        # 4. SIGTERM drains each host
        drain_each_host(cl)


def test_two_hosts_zmq_every_message_and_drain(net: VethPair, tmp_path: Path) -> None:
    pytest.importorskip("zmq")
    with (
        zmq_proxy(tmp_path, host=net.addr_a, netns=net.ns_a) as proxy,
        server(tmp_path, proxy.url, net.ns_a) as a,
        server(tmp_path, proxy.url, net.ns_b) as b,
        members_closed(),
    ):
        cl = Cluster({"a": (a, net.ns_a), "b": (b, net.ns_b)})
        cl.spread()
        until_flowing(cl.one_per_worker(), cl.members(), timeout=WAIT)
        cl.send(cl.clients, N)
        cl.check("every message to every member")
        drain_each_host(cl)
