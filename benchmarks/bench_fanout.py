"""Fan-out: one publisher's messages broadcast to 10,000 subscribers spread over the workers.

Run from the repository root::

    python benchmarks/bench_fanout.py                        # 10,000 subscribers, 5 setups
    python benchmarks/bench_fanout.py --subs 2000 --setups none,redis2 --duration 5
    python benchmarks/bench_fanout.py --subs 200 --duration 1 --flood 1 --json   # smoke

What is measured is the test server's ``lws-mirror-protocol`` itself (the issue's
"mirror through the backplane"), not a dedicated broadcast protocol: every subscriber
and the publisher are members of the default mirror instance of
``lwsbridge-test-server --loop epoll``, so each message takes the real path: the
publisher's worker receives it, publishes it on the backplane, every worker gets it
back from the broker and queues it in its mirror ring, and each member's
SERVER_WRITEABLE writes it.  Without a backplane (setup ``none``) the one process
queues it directly.  The setups (``--setups``, default all five):

- ``none``: one process, no backplane (``--workers 1``, no supervisor);
- ``redis1`` / ``redis2``: 1 or 2 workers with ``--backplane redis://...``;
- ``zmq1`` / ``zmq2``: 1 or 2 workers with ``--backplane zmq://...`` (lwsbridge-zmq-proxy).

The brokers are started by the script (``redis-server``, ``python -m
lwsbridge.apps.zmq_proxy``) unless ``--redis URL`` / ``--zmq URL`` name running ones.

The clients are raw sockets on epoll (rawws.py), ``--client-procs`` processes (2) each
holding its share of the subscribers; a frame's payload is the publisher's
``time.monotonic()`` (one clock for every process on the host), a sequence number and
a phase byte, so each subscriber takes the delivery latency of every message and checks
that none is missing or out of order.  The publisher is one more raw member in this
process.  For each setup:

1. start the server, open the subscribers (256 handshakes in flight per process, one
   source address per 2,000), count each worker's share from its fds;
2. warm-up: one message at a time until two in a row reached every subscriber, and no
   more (the backplane subscriptions are in place everywhere);
3. **rate** phase: ``--rate`` (10) messages per second for ``--duration`` (10) s; the
   figures are the delivery latency p50/p99/max over every (message, subscriber).  The
   subscribers read each socket as soon as epoll reports it;
4. **flood** phase: for ``--flood`` (10) s the publisher sends as fast as the
   subscribers take it, with at most ``--window`` (32) messages not yet delivered to
   everyone (a closed loop on the subscribers' counters: an open-loop flood would only
   fill the mirror rings, pause the publisher and, through the backplane, drop
   laggards); the figure is delivered messages (message x subscriber) per second after
   the first quarter (at most 1 s).  Here the subscriber processes sleep
   ``--flood-nap`` (5) ms after each epoll pass, so that one read takes several frames:
   that cuts their CPU per delivery about 5x, which is what lets the 2-core machine
   show the server's scaling at all (see the bound below).  Its latency is queueing,
   reported but not the target;
5. CPU seconds of the server processes (and their kernel share), the broker, the
   subscriber processes and this process (the publisher) over each phase, from /proc,
   and from them CPU microseconds per delivery.  With s the server's and c the clients'
   (subscribers + publisher) CPU per delivery, two cores shared by the workers and the
   clients allow at most 2s / (s + c) from 1 worker to 2: printed as the bound.

Counted as errors (exit status 1): a subscriber closed by the server, a message missing,
duplicated or out of order, a bad frame, deliveries still missing 60 s after a phase.
The targets (delivered msgs/s 1 -> 2 workers >= 1.7x; p99 < 50 ms at 10,000
subscribers and 10 msg/s) are reported, not enforced.  ``--json`` prints every figure as
one JSON line at the end.
"""

from __future__ import annotations

import argparse
import array
import datetime
import json
import multiprocessing as mp
import os
import platform
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any

import rawws
from rawws import HOST

REPO = Path(__file__).resolve().parent.parent
HDR = struct.Struct("<dIB")  # send time (monotonic), sequence number, phase
SETUPS = {
    "none": (None, 1),
    "redis1": ("redis", 1),
    "redis2": ("redis", 2),
    "zmq1": ("zmq", 1),
    "zmq2": ("zmq", 2),
}
WARM, RATE, FLOOD = 0, 1, 2


# -- the subscribers (one process per share) -------------------------------------------


def subscriber_proc(
    idx: int,
    port: int,
    n: int,
    size: int,
    sources: list[str],
    counters: Any,
    pipe: Pipe,
    flood_nap: float = 0.0,
    rate_nap: float = 0.0,
) -> None:
    """Hold ``n`` mirror members; count deliveries into ``counters[idx]`` once per wake-up;
    on "stop", send back the latencies per phase and the errors.  While the frames are of
    the flood phase, sleep ``flood_nap`` s after each pass, so that several frames wait
    in each socket and one read takes them all (fewer syscalls per delivery)."""
    try:
        socks = rawws.open_many(port, n, rawws.request(port, "/", "lws-mirror-protocol"), sources)
    except Exception as exc:  # reported to the parent, which stops
        pipe.send(("error", f"subscriber process {idx}: {exc}"))
        return
    pipe.send(("ready", n))
    frame_len = rawws.server_frame_len(size)
    head = bytes([0x82, size]) if size < 126 else bytes([0x82, 126]) + size.to_bytes(2, "big")
    hlen = len(head)
    lat = {WARM: array.array("d"), RATE: array.array("d"), FLOOD: array.array("d")}
    lat_app = {k: v.append for k, v in lat.items()}
    expect: dict[int, int] = {}
    left: dict[int, bytes] = {}
    err = {"closed": 0, "gaps": 0, "bad": 0}
    total = 0
    ep = select.epoll(sizehint=n + 1)
    for s in socks:
        ep.register(s.fileno(), select.EPOLLIN)
    pfd = pipe.fileno()
    ep.register(pfd, select.EPOLLIN)
    mono = time.monotonic
    unpack = HDR.unpack_from
    read = os.read
    running = True
    ph = WARM
    while running:
        for fd, _ev in ep.poll(1.0):
            if fd == pfd:
                running = False
                continue
            try:
                data = read(fd, 65536)
            except ConnectionError:
                data = b""
            now = mono()
            if not data:
                err["closed"] += 1
                ep.unregister(fd)
                continue
            if fd in left:
                data = left.pop(fd) + data
            if len(data) == frame_len and data[:hlen] == head:  # the common case: one frame
                t, seq, ph = unpack(data, hlen)
                lat_app[ph](now - t)
                if ph and expect.get(fd, seq) != seq:
                    err["gaps"] += 1
                expect[fd] = seq + 1
                total += 1
                continue
            off = 0
            end = len(data) - frame_len
            while off <= end:
                if data[off : off + hlen] != head:
                    err["bad"] += 1
                    off = len(data)
                    break
                t, seq, ph = unpack(data, off + hlen)
                lat_app[ph](now - t)
                if ph and expect.get(fd, seq) != seq:
                    err["gaps"] += 1
                expect[fd] = seq + 1
                total += 1
                off += frame_len
            if off < len(data):
                left[fd] = data[off:]
        counters[idx] = total
        if ph == FLOOD:
            if flood_nap:
                time.sleep(flood_nap)
        elif rate_nap:
            time.sleep(rate_nap)
    pipe.recv()
    ru = os.times()
    pipe.send(
        (
            "done",
            {
                "lat": {k: v.tobytes() for k, v in lat.items()},
                "errors": err,
                "total": total,
                "cpu": ru.user + ru.system,
            },
        )
    )
    for s in socks:  # the clients close first: TIME_WAIT stays on this side
        s.close()


# -- brokers and servers -----------------------------------------------------------------


class Broker:
    def __init__(self, kind: str, url: str | None, log: Any) -> None:
        self.kind = kind
        self.proc: subprocess.Popen[bytes] | None = None
        if url:
            self.url = url
            return
        if kind == "redis":
            exe = shutil.which("redis-server")
            if exe is None:
                raise RuntimeError("redis-server not found: install it or give --redis URL")
            port = rawws.free_port()
            cmd = [exe, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"]
            cmd += ["--dir", tempfile.gettempdir(), "--daemonize", "no"]
            self.url = f"redis://{HOST}:{port}"
        else:
            port = rawws.free_port_pair()
            cmd = [sys.executable, "-m", "lwsbridge.apps.zmq_proxy", "--bind", f"{HOST}:{port}"]
            self.url = f"zmq://{HOST}:{port}"
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        rawws.wait_port(self.proc, port)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def close(self) -> None:
        if self.proc is not None:
            rawws.stop(self.proc)


def _cpu(pids: list[int]) -> float:
    return sum(rawws.proc_cpu(p) for p in pids)


def _self_cpu() -> float:
    t = os.times()
    return t.user + t.system


class Cpu:
    """CPU seconds of the server, broker, subscriber processes and this one, from a mark."""

    def __init__(self, server: list[int], broker: int | None, clients: list[int]) -> None:
        self.groups = {"server": server, "broker": [broker] if broker else [], "clients": clients}
        self.t0 = time.monotonic()
        self.c0 = {k: _cpu(v) for k, v in self.groups.items()}
        self.s0 = _self_cpu()
        self.sys0 = sum(rawws.proc_cpu_split(p)[1] for p in server)

    def since(self) -> dict[str, float]:
        """% of one core each group used since the mark."""
        dt = max(1e-9, time.monotonic() - self.t0)
        out = {k: 100 * (_cpu(v) - self.c0[k]) / dt for k, v in self.groups.items()}
        out["publisher"] = 100 * (_self_cpu() - self.s0) / dt
        sys_s = sum(rawws.proc_cpu_split(p)[1] for p in self.groups["server"]) - self.sys0
        out["server_sys"] = 100 * sys_s / dt  # of which in the kernel (send() on loopback)
        return out


def run_setup(
    name: str, args: argparse.Namespace, brokers: dict[str, Broker], n_setup: int, log: Any
) -> dict[str, Any]:
    kind, workers = SETUPS[name]
    port = rawws.free_port()
    cmd = [sys.executable, "-m", "lwsbridge.apps.demo_server", "-p", str(port), "-i", HOST]
    if args.server_prefix:  # e.g. a profiler's wrapper: PREFIX... -p PORT ...
        cmd = [sys.executable, *args.server_prefix.split(), "-p", str(port), "-i", HOST]
    cmd += ["--loop", "epoll", "-d", "3"]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    broker = brokers[kind] if kind else None
    if broker is not None:
        cmd += ["--backplane", broker.url]
    print(f"\n== {name}: {' '.join(cmd[1:])}", flush=True)
    res: dict[str, Any] = {"setup": name, "workers": workers, "backplane": kind, "errors": []}
    errors: list[str] = res["errors"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    ctx = mp.get_context("fork")
    procs: list[Any] = []
    pipes: list[Pipe] = []
    pub: socket.socket | None = None
    try:
        rawws.wait_port(proc, port)
        spids = rawws.server_pids(proc, workers)
        time.sleep(0.3)
        fds0 = [rawws.fd_count(p) for p in spids]
        rss0 = [rawws.rss_kib(p) for p in spids]
        k = max(1, min(args.client_procs, args.subs))
        counters = ctx.RawArray("q", k)
        t_open = time.monotonic()
        for i in range(k):
            share = args.subs // k + (1 if i < args.subs % k else 0)
            a, b = ctx.Pipe()
            # one source address per 2,000 subscribers: connect() walks an address's
            # ports in use to find a free one (see scale_100k.py)
            sources = [f"127.0.{10 + n_setup}.{i * 50 + j + 1}" for j in range(share // 2000 + 1)]
            p = ctx.Process(
                target=subscriber_proc,
                args=(
                    i,
                    port,
                    share,
                    args.size,
                    sources,
                    counters,
                    b,
                    args.flood_nap / 1000,
                    args.rate_nap / 1000,
                ),
            )
            p.start()
            b.close()
            procs.append(p)
            pipes.append(a)
        for i, a in enumerate(pipes):
            if not a.poll(120):
                raise RuntimeError(f"subscriber process {i} not ready within 120 s")
            what, detail = a.recv()
            if what != "ready":
                raise RuntimeError(detail)
        res["open_s"] = round(time.monotonic() - t_open, 2)
        pub = rawws.open_many(port, 1, rawws.request(port, "/", "lws-mirror-protocol"))[0]
        pub.setblocking(False)
        time.sleep(0.3)
        share = [rawws.fd_count(p) - f for p, f in zip(spids, fds0, strict=True)]
        res["per_worker"] = share
        res["rss_kib_per_sub"] = round(
            (sum(rawws.rss_kib(p) for p in spids) - sum(rss0)) / args.subs, 2
        )
        print(
            f"   {args.subs:,} subscribers in {k} processes opened in {res['open_s']} s; "
            f"connections per worker (fds): {share}",
            flush=True,
        )
        cpids = [p.pid for p in procs]
        seq = 0
        subs = args.subs

        def delivered() -> int:
            return sum(counters)

        def drain_pub() -> None:
            assert pub is not None
            while True:
                try:
                    if not pub.recv(1 << 16, socket.MSG_DONTWAIT):
                        raise RuntimeError("the server closed the publisher")
                except BlockingIOError:
                    return

        def send(phase: int) -> None:
            nonlocal seq
            assert pub is not None
            payload = HDR.pack(time.monotonic(), seq, phase)
            data = memoryview(rawws.client_frame(payload + b"." * (args.size - len(payload))))
            end = time.monotonic() + 10
            while data:
                try:
                    data = data[pub.send(data) :]
                except BlockingIOError:
                    if time.monotonic() > end:
                        raise RuntimeError("the publisher could not send for 10 s") from None
                    drain_pub()
                    select.select([], [pub], [], 0.01)
            seq += 1

        def wait_delivered(target: int, timeout: float) -> bool:
            end = time.monotonic() + timeout
            while delivered() < target and time.monotonic() < end:
                drain_pub()
                time.sleep(0.005)
            return delivered() >= target

        # -- warm-up: until two messages in a row reach every subscriber (and no more)
        end = time.monotonic() + 60
        in_row = 0
        while in_row < 2:
            if time.monotonic() > end:
                errors.append("warm-up: no two messages in a row reached every subscriber")
                return res
            before = delivered()
            send(WARM)
            if wait_delivered(before + subs, 3.0) and delivered() == before + subs:
                in_row += 1
            else:  # lost on some worker (a subscription on its way), or late: again
                in_row = 0
                time.sleep(0.5)
        base = delivered()
        # -- rate phase
        n_rate = max(1, round(args.rate * args.duration))
        cpu = Cpu(spids, broker.pid if broker else None, cpids)
        t0 = time.monotonic()
        for i in range(n_rate):
            due = t0 + i / args.rate
            while (now := time.monotonic()) < due:
                drain_pub()
                time.sleep(min(0.002, due - now))
            send(RATE)
        t_last = time.monotonic()
        ok = wait_delivered(base + n_rate * subs, 60)
        # how long after the last send the last delivery came: > 0.1 s means the
        # setup did not keep up with --rate (a backlog built up during the phase)
        res["rate_tail_s"] = round(time.monotonic() - t_last, 2)
        res["rate_cpu"] = cpu.since()
        rate_dt = time.monotonic() - cpu.t0
        got = delivered() - base
        res["rate_msgs"] = n_rate
        res["rate_deliveries"] = got
        res["rate_us_per_delivery"] = {
            k: round(v / 100 * rate_dt / max(1, got) * 1e6, 2) for k, v in res["rate_cpu"].items()
        }
        if not ok:
            errors.append(f"rate phase: {n_rate * subs - got:,} deliveries missing after 60 s")
        base = delivered()
        # -- flood phase: closed loop, at most --window messages not delivered to all
        sent0 = seq
        t0 = time.monotonic()
        t_mark = t0 + min(1.0, args.flood / 4)
        end = t0 + args.flood
        flood_cpu: Cpu | None = None
        d_mark = 0
        while (now := time.monotonic()) < end:
            if flood_cpu is None and now >= t_mark:
                flood_cpu = Cpu(spids, broker.pid if broker else None, cpids)
                d_mark, t_mark = delivered(), now
            done = (delivered() - base) // subs
            while seq - sent0 < done + args.window:
                send(FLOOD)
            drain_pub()
            time.sleep(0.0005)
        d_end, t_end = delivered(), time.monotonic()
        assert flood_cpu is not None
        res["flood_cpu"] = flood_cpu.since()
        res["flood_deliveries_per_s"] = round((d_end - d_mark) / (t_end - t_mark))
        res["flood_msgs_per_s"] = round((d_end - d_mark) / (t_end - t_mark) / subs, 1)
        # CPU microseconds per delivery: what bounds the scaling on a shared machine
        per_s = max(1.0, (d_end - d_mark) / (t_end - t_mark))
        res["flood_us_per_delivery"] = {
            k: round(v / 100 / per_s * 1e6, 2) for k, v in res["flood_cpu"].items()
        }
        n_flood = seq - sent0
        ok = wait_delivered(base + n_flood * subs, 60)
        got = delivered() - base
        res["flood_msgs"] = n_flood
        if not ok:
            errors.append(f"flood phase: {n_flood * subs - got:,} deliveries missing after 60 s")
        # -- collect
        lat: dict[int, array.array[float]] = {RATE: array.array("d"), FLOOD: array.array("d")}
        client_cpu = 0.0
        for a in pipes:
            a.send("stop")
        for i, a in enumerate(pipes):
            if not a.poll(60):
                errors.append(f"subscriber process {i} did not report")
                continue
            _what, r = a.recv()
            for ph in (RATE, FLOOD):
                lat[ph].frombytes(r["lat"][ph])
            client_cpu += r["cpu"]
            for what, count in r["errors"].items():
                if count:
                    errors.append(f"subscriber process {i}: {count} {what}")
        for ph, key in ((RATE, "rate"), (FLOOD, "flood")):
            ms = sorted(x * 1000 for x in lat[ph])
            res[f"{key}_latency_ms"] = {
                "p50": round(rawws.pct(ms, 50), 2),
                "p99": round(rawws.pct(ms, 99), 2),
                "max": round(ms[-1], 2) if ms else None,
                "samples": len(ms),
            }
        return res
    except Exception as exc:
        errors.append(str(exc))
        return res
    finally:
        if pub is not None:
            pub.close()
        for a in pipes:
            a.close()
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()
        res["server_stop"] = rawws.stop(proc)
        if res["errors"]:
            print(f"   errors: {res['errors']}", flush=True)
        else:
            _print_setup(res)


def _print_setup(r: dict[str, Any]) -> None:
    lr, lf = r["rate_latency_ms"], r["flood_latency_ms"]
    rc, fc = r["rate_cpu"], r["flood_cpu"]
    print(
        f"   rate  {r['rate_msgs']} msgs -> {r['rate_deliveries']:,} deliveries, the last "
        f"{r['rate_tail_s']} s after the last send; latency ms "
        f"p50 {lr['p50']}  p99 {lr['p99']}  max {lr['max']}; CPU % server {rc['server']:.0f} "
        f"broker {rc['broker']:.0f} subscribers {rc['clients']:.0f} "
        f"publisher {rc['publisher']:.0f}",
        flush=True,
    )
    print(
        f"   flood {r['flood_deliveries_per_s']:,} deliveries/s ({r['flood_msgs_per_s']} msgs/s "
        f"x {r['per_worker']} subscribers); latency ms p50 {lf['p50']}  p99 {lf['p99']}; "
        f"CPU % server {fc['server']:.0f} (kernel {fc['server_sys']:.0f}) "
        f"broker {fc['broker']:.0f} subscribers "
        f"{fc['clients']:.0f} publisher {fc['publisher']:.0f}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--subs", type=int, default=10_000, help="subscribers (default 10,000)")
    ap.add_argument(
        "--setups", default=",".join(SETUPS), help=f"comma-separated, of {', '.join(SETUPS)}"
    )
    ap.add_argument("--rate", type=float, default=10.0, help="messages/s in the rate phase (10)")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of the rate phase (10)")
    ap.add_argument("--flood", type=float, default=10.0, help="seconds of the flood phase (10)")
    ap.add_argument(
        "--window", type=int, default=32, help="flood: messages not yet everywhere (32)"
    )
    ap.add_argument(
        "--flood-nap",
        type=float,
        default=5.0,
        help="flood phase: ms a subscriber process sleeps after each epoll pass, so that "
        "each read takes several frames (default 5; 0: read at once)",
    )
    ap.add_argument(
        "--rate-nap",
        type=float,
        default=0.0,
        help="rate phase and warm-up: ms a subscriber process sleeps after each epoll pass "
        "(default 0: read at once; a nap adds at most that much to the latency)",
    )
    ap.add_argument("--size", type=int, default=32, help="payload bytes (default 32, at least 13)")
    ap.add_argument("--client-procs", type=int, default=2, help="subscriber processes (2)")
    ap.add_argument("--redis", default=None, help="use this redis://HOST:PORT (default: start one)")
    ap.add_argument(
        "--zmq", default=None, help="use this zmq://HOST:PORT proxy (default: start one)"
    )
    ap.add_argument(
        "--server-prefix",
        default=None,
        help="run the server as python PREFIX -p PORT ... instead of -m lwsbridge.apps."
        "demo_server (a profiling wrapper that calls demo_server.main(argv))",
    )
    ap.add_argument(
        "--json", action="store_true", help="print the figures as one JSON line at the end"
    )
    args = ap.parse_args(argv)
    setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    for s in setups:
        if s not in SETUPS:
            ap.error(f"unknown setup {s!r}")
    if args.size < HDR.size or args.size > 65535:
        ap.error(f"--size must be {HDR.size}..65535")

    soft, hard = rawws.raise_nofile(args.subs + 2_000)
    print(f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(
        f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; RLIMIT_NOFILE {soft}/{hard}"
    )
    print(
        f"{args.subs:,} subscribers in {args.client_procs} processes; rate phase {args.rate:g} "
        f"msgs/s x {args.duration:g} s; flood {args.flood:g} s, window {args.window}; "
        f"payload {args.size} B",
        flush=True,
    )
    if soft < args.subs + 100:
        print(f"error: RLIMIT_NOFILE {soft} cannot hold {args.subs} subscribers")
        return 2
    results: list[dict[str, Any]] = []
    brokers: dict[str, Broker] = {}
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed below)
    try:
        kinds = {k for k in (SETUPS[s][0] for s in setups) if k is not None}
        for kind in sorted(kinds):
            url = args.redis if kind == "redis" else args.zmq
            brokers[kind] = Broker(kind, url, log)
            print(f"{kind} broker: {brokers[kind].url}", flush=True)
        for i, name in enumerate(setups):
            results.append(run_setup(name, args, brokers, i, log))
    finally:
        for b in brokers.values():
            b.close()
        log.seek(0)
        lines = log.read().decode(errors="replace").splitlines()
        log.close()
    rc = 1 if any(r["errors"] for r in results) else 0
    print(
        "\n| setup | subscribers per worker | rate: p50 ms | p99 ms | max ms "
        "| flood: deliveries/s | msgs/s | server CPU % | subscribers' CPU % |"
    )
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|")
    by = {r["setup"]: r for r in results}
    for r in results:
        if r["errors"]:
            print(f"| {r['setup']} | errors: {'; '.join(r['errors'])} |")
            continue
        lr = r["rate_latency_ms"]
        print(
            f"| {r['setup']} | {r['per_worker']} | {lr['p50']} | {lr['p99']} | {lr['max']} | "
            f"{r['flood_deliveries_per_s']:,} | {r['flood_msgs_per_s']} | "
            f"{r['flood_cpu']['server']:.0f} | {r['flood_cpu']['clients']:.0f} |"
        )
    summary: dict[str, Any] = {}
    for kind in ("redis", "zmq"):
        one, two = by.get(f"{kind}1"), by.get(f"{kind}2")
        if one and two and not one["errors"] and not two["errors"]:
            ratio = two["flood_deliveries_per_s"] / max(1, one["flood_deliveries_per_s"])
            summary[f"{kind}_scaling"] = round(ratio, 2)
            print(f"{kind}: delivered msgs/s 2 workers / 1 worker = {ratio:.2f} (target >= 1.7)")
    for r in results:
        if not r["errors"]:
            ru = r["rate_us_per_delivery"]
            print(
                f"{r['setup']}: rate CPU per delivery: server {ru['server']} us (kernel "
                f"{ru['server_sys']}), subscribers {ru['clients']} us"
            )
    for r in results:
        if not r["errors"]:
            us = r["flood_us_per_delivery"]
            bound = 2 * us["server"] / max(1e-9, us["server"] + us["clients"] + us["publisher"])
            print(
                f"{r['setup']}: flood CPU per delivery: server {us['server']} us (kernel "
                f"{us['server_sys']}), subscribers {us['clients']} us, broker {us['broker']} us;"
                f" 2 cores shared with the clients allow at most {bound:.2f}x from 1 worker to 2"
            )
    for r in results:
        if not r["errors"]:
            p99 = r["rate_latency_ms"]["p99"]
            print(f"{r['setup']}: p99 at {args.rate:g} msgs/s = {p99} ms (target < 50 ms)")
    if any("Traceback" in ln for ln in lines):
        print("server/broker log (last 20 lines):")
        for ln in lines[-20:]:
            print(f"  | {ln}")
    print(f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"exit status {rc}")
    if args.json:
        print(json.dumps({"results": results, "summary": summary, "subs": args.subs}))
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
