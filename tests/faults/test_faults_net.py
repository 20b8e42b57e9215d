"""Network faults between an lwsbridge server and an lwsbridge client (issue 13, item 4).

The server runs in namespace A, the client in namespace B, each a subprocess running
``tests/support/nspeer.py``; the two are joined by the faulty wire of
``tests/support/netwire.py`` (tun devices and a relay: the kernel here has no
``sch_netem``, see that module).  Under loss, reordering, delay, and a link that goes
down and comes back, every numbered message sent before the clean close arrives, once,
in order and intact, in both directions.  A RST in the middle of a frame ends that
connection with exactly one end callback on each side, and the context's other
connection carries on.  A peer that silently disappears is detected by TCP keepalive or
by ping/pong within the configured time (upper bound only, with generous slack).

Runs as root only (namespaces); skipped otherwise, failed under LWSBRIDGE_REQUIRE_PEERS=1.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.netns import require_netns
from support.netwire import Faults, Wire, faulty_wire
from support.peers import missing_peer
from support.procs import stop_process

PEER = Path(__file__).resolve().parents[1] / "support" / "nspeer.py"
PORT = 7681  # the namespaces are ours alone
N = 200  # messages in the "seq" plan, each way
EXCHANGE_TIMEOUT = 30.0  # a bound on a whole exchange under faults; typically 1-5 s
SLACK = 6.0  # seconds allowed past the configured detection time of a dead peer


class PeerProc:
    """A running ``nspeer.py``: its JSON events, read with bounded waits."""

    def __init__(self, ns: str, args: list[str], log: Path) -> None:
        self.log_path = log
        with open(log, "wb") as err:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, sys.executable, str(PEER), *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
            )
        self.events: list[dict[str, Any]] = []
        self._buf = b""
        self._seen = 0

    def _pump(self, timeout: float) -> bool:
        """Read what the peer said within ``timeout``; False at EOF."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        if not select.select([fd], [], [], max(0.0, timeout))[0]:
            return True
        chunk = os.read(fd, 65536)
        if not chunk:
            return False
        self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        for line in lines:
            ev = json.loads(line)
            assert ev["ev"] != "exception", f"the peer raised:\n{ev['tb']}"
            self.events.append(ev)
        return True

    def expect(self, ev: str, timeout: float, **match: Any) -> dict[str, Any]:
        """The next event ``ev`` (with the ``match`` fields) the peer says, within
        ``timeout`` seconds; events before it are kept in ``events``."""
        deadline = time.monotonic() + timeout
        while True:
            for i in range(self._seen, len(self.events)):
                e = self.events[i]
                if e["ev"] == ev and all(e.get(k) == v for k, v in match.items()):
                    self._seen = i + 1
                    return e
            left = deadline - time.monotonic()
            if left <= 0 or not self._pump(left):
                pytest.fail(
                    f"no {ev} {match} within {timeout} s; the peer said {self.events[-8:]}"
                    f"\nits log:\n{self.log()[-3000:]}"
                )

    def quit(self) -> dict[str, Any]:
        """Tell the peer to stop; its summary (every end callback per connection)."""
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.write(b"quit\n")
            self.proc.stdin.flush()
        summary = self.expect("summary", 10)
        self.proc.wait(10)
        assert self.proc.returncode == 0, self.log()[-3000:]
        log = self.log()
        assert "Traceback" not in log, log[-3000:]
        return summary

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.proc)
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()


@pytest.fixture
def wire() -> Iterator[Wire]:
    require_netns()
    if not os.path.exists("/dev/net/tun"):
        missing_peer("/dev/net/tun", "the faulty wire is made of tun devices")
    with faulty_wire(seed=13) as w:
        yield w


@pytest.fixture
def spawn(wire: Wire, tmp_path: Path) -> Iterator[Callable[..., PeerProc]]:
    """``spawn(role, *args)``: the server in A, a client in B; all stopped by PID."""
    procs: list[PeerProc] = []

    def start(role: str, *args: str) -> PeerProc:
        ns = wire.ns_a if role == "server" else wire.ns_b
        p = PeerProc(
            ns, [role, wire.addr_a, str(PORT), *args], tmp_path / f"{role}{len(procs)}.log"
        )
        procs.append(p)
        p.expect("ready", 15)
        return p

    try:
        yield start
    finally:
        for p in procs:
            p.stop()


def conn_summary(summary: dict[str, Any], label: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [c for c in summary["conns"] if c["label"] == label]
    assert len(found) == 1, summary
    return found[0]


def assert_whole_sequence(report: dict[str, Any], side: str) -> None:
    """Every message of the plan went out and came in, in order and intact."""
    assert report["bad"] == [], (side, report)
    assert (report["sent"], report["received"]) == (N, N), (side, report)


def exchange(spawn: Callable[..., PeerProc], during: Callable[[], None] | None = None) -> None:
    """The numbered exchange on one connection, ``during()`` running meanwhile, then the
    client's clean close: both sides got all N messages, and one CLOSED each."""
    server = spawn("server")
    client = spawn("client", "--conn", "c1:seq")
    if during is not None:
        during()
    c_end = client.expect("end", EXCHANGE_TIMEOUT, label="c1")
    s_end = server.expect("end", EXCHANGE_TIMEOUT, label="c1")
    for side, end in (("client", c_end), ("server", s_end)):
        assert end["reason"] == "CLOSED", (side, end)
        # the server counts at CLOSED: all N were in before the close frame
        assert_whole_sequence(end, side)
    for side, peer in (("client", client), ("server", server)):
        rep = conn_summary(peer.quit(), "c1")
        assert rep["ends"] == ["CLOSED"], (side, rep)


# ---------------------------------------------------------------------------- delivery


def test_loss_5_percent(wire: Wire, spawn: Callable[..., PeerProc]) -> None:
    wire.faults = Faults(loss=0.05)
    exchange(spawn)
    assert wire.stats.dropped > 20, wire.stats  # the loss did happen, many times


def test_reordering(wire: Wire, spawn: Callable[..., PeerProc]) -> None:
    wire.faults = Faults(reorder=0.1)
    exchange(spawn)
    assert wire.stats.reordered > 20, wire.stats


def test_delay_200ms(wire: Wire, spawn: Callable[..., PeerProc]) -> None:
    wire.faults = Faults(delay=0.2)
    exchange(spawn)
    assert wire.stats.dropped == 0, wire.stats


def test_link_down_then_up(wire: Wire, spawn: Callable[..., PeerProc]) -> None:
    # The cut starts once 300 kB have crossed (of about 2 MB, both ways in flight), so
    # it always lands mid-transfer; then B's link goes down for a second and comes back.
    cut = wire.cut_after(300_000)

    def outage() -> None:
        assert cut.wait(EXCHANGE_TIMEOUT), "the transfer never reached 300 kB"
        wire.link(False)
        time.sleep(1.0)
        wire.link(True)
        wire.faults = Faults()

    exchange(spawn, outage)
    assert wire.stats.dropped > 0 or wire.stats.write_errors > 0, wire.stats


# ---------------------------------------------------------------------------- RST


def test_rst_mid_frame(wire: Wire, spawn: Callable[..., PeerProc]) -> None:
    """The client sends a 600 kB message on "victim"; after 200 kB a RST reaches both
    ends.  "control", on the same two contexts, then does the whole exchange."""
    reset = wire.reset_flow(PORT, after=200_000)
    server = spawn("server")
    client = spawn("client", "--conn", "victim:big", "--conn", "control:seq:after=victim")
    assert reset.wait(EXCHANGE_TIMEOUT), "the victim's transfer never reached 200 kB"
    c_victim = client.expect("end", 10, label="victim")
    s_victim = server.expect("end", 10, label="victim")
    for side, end in (("client", c_victim), ("server", s_victim)):
        assert end["reason"] in ("CLOSED", "CLIENT_CONNECTION_ERROR"), (side, end)
        assert end["received"] == 0, (side, end)  # the RST cut the frame in the middle
    c_ctl = client.expect("end", EXCHANGE_TIMEOUT, label="control")
    s_ctl = server.expect("end", EXCHANGE_TIMEOUT, label="control")
    for side, end in (("client", c_ctl), ("server", s_ctl)):
        assert end["reason"] == "CLOSED", (side, end)
        assert_whole_sequence(end, side)
    for side, peer in (("client", client), ("server", server)):
        summary = peer.quit()
        assert len(conn_summary(summary, "victim")["ends"]) == 1, (side, summary)
        assert conn_summary(summary, "control")["ends"] == ["CLOSED"], (side, summary)
    assert wire.stats.resets == 2, wire.stats


# ---------------------------------------------------------------------------- dead peer


def dead_peer_detected(
    wire: Wire, spawn: Callable[..., PeerProc], opts: list[str], budget: float, kill: str
) -> None:
    server = spawn("server", *opts)
    client = spawn("client", *opts, "--conn", "c1:idle")
    client.expect("established", 15, label="c1")
    server.expect("established", 15, label="c1")
    if "--ping" in opts:  # a live peer answers: both sides have had a pong
        client.expect("pong", 10, label="c1")
        server.expect("pong", 10, label="c1")
    dead = time.monotonic()
    if kill == "cut":
        wire.faults = Faults(cut=True)  # nothing crosses any more, and nobody is told
    else:
        wire.link(False)  # B's link goes down for good
    for side, peer in (("client", client), ("server", server)):
        end = peer.expect("end", budget + SLACK + 2, label="c1")
        assert end["reason"] in ("CLOSED", "CLIENT_CONNECTION_ERROR"), (side, end)
        took = end["t"] - dead
        assert took < budget + SLACK, (side, took, budget)
    for side, peer in (("client", client), ("server", server)):
        assert len(conn_summary(peer.quit(), "c1")["ends"]) == 1, side


def test_dead_peer_detected_by_tcp_keepalive(wire: Wire, spawn: Callable[..., PeerProc]) -> None:
    ka_time, ka_interval, ka_probes = 1, 1, 2
    opts = ["--ka", f"{ka_time},{ka_interval},{ka_probes}"]
    dead_peer_detected(wire, spawn, opts, ka_time + ka_probes * ka_interval, "cut")


def test_dead_peer_detected_by_ping(wire: Wire, spawn: Callable[..., PeerProc]) -> None:
    ping_interval, pong_timeout = 1, 1
    opts = ["--ping", f"{ping_interval},{pong_timeout}"]
    dead_peer_detected(wire, spawn, opts, ping_interval + pong_timeout, "link")
