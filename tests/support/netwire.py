"""A faulty wire between two network namespaces: tun devices and a relay thread.

``tc qdisc ... netem`` is the usual tool, but kernels built without ``sch_netem`` (this
project's CI machine has none, and no loadable modules) refuse it.  So the wire is made
in user space, which any kernel with ``CONFIG_TUN`` allows: each namespace gets a tun
device whose fd stays in this process, and a relay thread copies IP packets between
them, applying the faults netem would (loss, delay, reordering, a cut), plus a forged
TCP RST in the middle of a flow, which netem cannot do.  The kernels' TCP stacks on both
sides see real lost, late and reordered segments and recover as they would on a bad
network.  The relay draws its randomness from a seeded generator.

Everything is undone on exit: the thread stops, the tun fds close (which deletes the
devices) and the namespaces are deleted.
"""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import os
import random
import select
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from support.netns import ip, namespaces, unique_name

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK = 0x01, 0x02, 0x04, 0x10
REORDER_HOLD = 0.01  # seconds a packet picked for reordering waits: later ones overtake it


@dataclass
class Faults:
    """What the wire does to each packet, in both directions.

    ``loss``: probability a packet is dropped (SYNs are spared so that connecting does
    not wait for the kernel's 1 s SYN retransmission; the tests are about data).
    ``delay``: seconds added to every packet.  ``reorder``: probability a packet is held
    back ``REORDER_HOLD`` seconds so that the following ones overtake it.  ``cut``: drop
    everything, silently (a dead peer, or a cable cut between the hosts).
    """

    loss: float = 0.0
    delay: float = 0.0
    reorder: float = 0.0
    cut: bool = False


@dataclass
class WireStats:
    forwarded: int = 0
    dropped: int = 0
    reordered: int = 0
    resets: int = 0
    write_errors: int = 0


@dataclass
class _ResetPlan:
    port: int  # the server port: the first flow to that port carrying ``after`` bytes dies
    after: int
    done: threading.Event = field(default_factory=threading.Event)
    flow: tuple[bytes, int, bytes, int] | None = None  # (client ip, port, server ip, port)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def forge_rst(src: bytes, sport: int, dst: bytes, dport: int, seq: int) -> bytes:
    """An IPv4 TCP RST from ``src:sport`` to ``dst:dport`` with sequence number ``seq``.

    Linux accepts a RST only when its sequence number is exactly the next one it expects
    (RFC 5961 §3.2); anything else gets a challenge ACK."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, TCP_RST, 0, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp)) + tcp[18:]
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, src, dst)
    head = head[:10] + struct.pack("!H", _checksum(head)) + head[12:]
    return head + tcp


class Wire:
    """Namespaces ``ns_a`` and ``ns_b`` (addresses ``addr_a``, ``addr_b``) joined by the
    relay.  Change the faults at any time with ``faults``; ``link(False)`` takes B's
    device down (the kernel in B sees its link go), ``link(True)`` back up."""

    def __init__(self, ns_a: str, ns_b: str, seed: int = 1) -> None:
        self.ns_a, self.ns_b = ns_a, ns_b
        x = os.getpid() % 250
        self.addr_a, self.addr_b = f"10.232.{x}.1", f"10.232.{x}.2"
        self.dev_a, self.dev_b = unique_name("ta"), unique_name("tb")
        self.faults = Faults()
        self.stats = WireStats()
        self.rng = random.Random(seed)
        self.fds: list[int] = []
        self._reset: _ResetPlan | None = None
        # next sequence number per direction of each flow: (src, sport, dst, dport) -> seq
        self._next_seq: dict[tuple[bytes, int, bytes, int], int] = {}
        self._flow_bytes: dict[tuple[bytes, int, bytes, int], int] = {}
        self._dead_flows: set[tuple[bytes, int, bytes, int]] = set()
        self._heap: list[tuple[float, int, int, bytes]] = []
        self._payload = 0  # TCP payload bytes seen, for cut_after
        self._cut_at: int | None = None
        self._cut_done = threading.Event()
        self._order = 0
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="netwire", daemon=True)
        self.error: BaseException | None = None

    # -- setup ---------------------------------------------------------------------------

    def open(self) -> None:
        for ns, dev, addr, peer in (
            (self.ns_a, self.dev_a, self.addr_a, self.addr_b),
            (self.ns_b, self.dev_b, self.addr_b, self.addr_a),
        ):
            # Made in our namespace, then moved: the fd stays attached to the device.
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            self.fds.append(fd)
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", dev.encode(), IFF_TUN | IFF_NO_PI))
            ip("link", "set", dev, "netns", ns)
            ip("-n", ns, "addr", "add", addr, "peer", peer, "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
        self._thread.start()

    def close(self) -> None:
        if self._thread.is_alive():
            os.write(self._stop_w, b"x")
            self._thread.join(timeout=5)
        for fd in (*self.fds, self._stop_r, self._stop_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []

    # -- controls ------------------------------------------------------------------------

    def link(self, up: bool) -> None:
        ip("-n", self.ns_b, "link", "set", self.dev_b, "up" if up else "down")

    def reset_flow(self, server_port: int, after: int) -> threading.Event:
        """Kill, with a RST to each end, the first TCP flow to ``server_port`` once
        ``after`` payload bytes have crossed it (both directions counted); from then on
        its packets are dropped.  The event is set when the RSTs have been sent."""
        plan = _ResetPlan(server_port, after)
        self._reset = plan
        return plan.done

    def cut_after(self, nbytes: int) -> threading.Event:
        """Set ``faults.cut`` once ``nbytes`` of TCP payload have been forwarded (any
        flow, both ways): a cut that lands mid-transfer whatever the timing.  The event
        is set at that moment."""
        self._cut_at = self._payload + nbytes
        self._cut_done = threading.Event()
        return self._cut_done

    # -- relay ---------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._relay()
        except BaseException as exc:  # reported by the fixture: a broken wire fails the test
            self.error = exc

    def _relay(self) -> None:
        fa, fb = self.fds
        watch = [fa, fb, self._stop_r]
        while True:
            timeout = 0.2
            if self._heap:
                timeout = max(0.0, min(timeout, self._heap[0][0] - time.monotonic()))
            ready, _, _ = select.select(watch, [], [], timeout)
            if self._stop_r in ready:
                return
            for fd in ready:
                out = fb if fd == fa else fa
                for _ in range(64):
                    try:
                        pkt = os.read(fd, 65536)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:  # EIO: the device is down; do not spin on it
                        time.sleep(0.01)
                        break
                    self._handle(pkt, out)
            now = time.monotonic()
            while self._heap and self._heap[0][0] <= now:
                _due, _n, out, pkt = heapq.heappop(self._heap)
                self._send(out, pkt)

    def _handle(self, pkt: bytes, out: int) -> None:
        f = self.faults
        if f.cut:
            self.stats.dropped += 1
            return
        flags = 0
        if len(pkt) >= 40 and pkt[0] >> 4 == 4 and pkt[9] == 6:
            flags = self._track_tcp(pkt)
            if flags < 0:
                self.stats.dropped += 1
                return
        if f.loss and not flags & TCP_SYN and self.rng.random() < f.loss:
            self.stats.dropped += 1
            return
        hold = f.delay
        if f.reorder and self.rng.random() < f.reorder:
            hold += REORDER_HOLD
            self.stats.reordered += 1
        if hold <= 0 and not self._heap:
            self._send(out, pkt)
            return
        self._order += 1
        heapq.heappush(self._heap, (time.monotonic() + hold, self._order, out, pkt))

    def _track_tcp(self, pkt: bytes) -> int:
        """The TCP flags of ``pkt``, or -1 if it belongs to a flow we reset.  Keeps the
        next sequence number of each direction and fires a planned reset."""
        ihl = (pkt[0] & 0x0F) * 4
        total = struct.unpack("!H", pkt[2:4])[0]
        src, dst = pkt[12:16], pkt[16:20]
        sport, dport, seq = struct.unpack("!HHI", pkt[ihl : ihl + 8])
        doff = (pkt[ihl + 12] >> 4) * 4
        flags = pkt[ihl + 13]
        key = (src, sport, dst, dport)
        if key in self._dead_flows:
            return -1
        length = total - ihl - doff
        plan = self._reset
        if plan is not None and not plan.done.is_set() and plan.port in (sport, dport):
            flow = key if dport == plan.port else (dst, dport, src, sport)
            self._flow_bytes[flow] = self._flow_bytes.get(flow, 0) + length
            if self._flow_bytes[flow] >= plan.after:
                # This packet is never delivered: the RSTs carry the sequence numbers
                # the two ends expect next, from what was forwarded before it.
                self._fire_reset(plan, flow)
                return -1
        self._payload += length
        if self._cut_at is not None and self._payload >= self._cut_at:
            self._cut_at = None
            self.faults = Faults(cut=True)
            self._cut_done.set()
            return -1
        end = (seq + length + (1 if flags & (TCP_SYN | TCP_FIN) else 0)) & 0xFFFFFFFF
        prev = self._next_seq.get(key)
        if prev is None or 0 < (end - prev) & 0xFFFFFFFF < 1 << 31:
            self._next_seq[key] = end
        return flags

    def _fire_reset(self, plan: _ResetPlan, flow: tuple[bytes, int, bytes, int]) -> None:
        c_ip, c_port, s_ip, s_port = flow
        fa, fb = self.fds  # a packet written to a device's fd arrives in its namespace
        server_in_b = s_ip == bytes(map(int, self.addr_b.split(".")))
        to_server_fd, to_client_fd = (fb, fa) if server_in_b else (fa, fb)
        to_server = (c_ip, c_port, s_ip, s_port)
        to_client = (s_ip, s_port, c_ip, c_port)
        # Everything already forwarded is in the receivers' queues ahead of the RSTs.
        self._flush_heap()
        for fd, (src, sport, dst, dport) in ((to_server_fd, to_server), (to_client_fd, to_client)):
            seq = self._next_seq.get((src, sport, dst, dport), 0)
            self._send(fd, forge_rst(src, sport, dst, dport, seq))
            self.stats.resets += 1
        self._dead_flows.update({to_server, to_client})
        plan.flow = flow
        plan.done.set()

    def _flush_heap(self) -> None:
        while self._heap:
            _due, _n, out, pkt = heapq.heappop(self._heap)
            self._send(out, pkt)

    def _send(self, out: int, pkt: bytes) -> None:
        try:
            os.write(out, pkt)
            self.stats.forwarded += 1
        except OSError:  # EIO while the device is down: the packet is lost, as on a wire
            self.stats.write_errors += 1


@contextlib.contextmanager
def faulty_wire(seed: int = 1) -> Iterator[Wire]:
    """Two fresh namespaces joined by a :class:`Wire`; all removed on exit.  Fails the
    test if the relay thread died."""
    with namespaces(2) as (ns_a, ns_b):
        wire = Wire(ns_a, ns_b, seed)
        try:
            wire.open()
            yield wire
        finally:
            wire.close()
        if wire.error is not None:
            raise AssertionError(f"the relay failed: {wire.error!r}") from wire.error
