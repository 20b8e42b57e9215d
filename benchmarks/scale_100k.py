"""C100K: 100,000 concurrent WebSockets on one host, spread over the workers.

Run from the repository root (as root, for the file limits; see below)::

    python benchmarks/scale_100k.py                                # 100,000 x one 60 s period
    python benchmarks/scale_100k.py --conns 20000 --period 10 --duration 10   # quick look
    python benchmarks/scale_100k.py --conns 300 --period 1 --duration 2 --json   # smoke

What it does:

1. raises RLIMIT_NOFILE before starting anything, to what one process needs (its share
   of ``--conns`` + 1,000): the server's supervisor and its workers inherit it, and each
   worker derives its connection limit from it (``listener.connection_limit``, as lws
   does), so the server needs no option of its own.  Raising the *hard* limit (up to
   /proc/sys/fs/nr_open) needs CAP_SYS_RESOURCE, which root in a container may lack:
   then the connections are spread over more processes instead (workers and client
   processes of at most the limit - 1,000 connections each, with 10 % headroom for the
   uneven SO_REUSEPORT hash), and the script says so;
2. prints the kernel settings that bite at this scale (listen backlog ``somaxconn`` and
   ``tcp_max_syn_backlog``, ``ip_local_port_range``, ``nf_conntrack_max``, ``fs.nr_open``)
   and refuses to start when the source addresses cannot supply enough ports;
3. starts ``python -m lwsbridge.apps.echo_server --loop epoll --workers N`` (``--workers``,
   default 2, or more as in 1.) and records the workers' VmRSS as the baseline;
4. opens ``--conns`` raw-socket clients (rawws.py) from ``--client-procs`` processes
   (2, or more as in 1.), 256 handshakes in flight per process, each socket bound
   before connect to one of ``--sources`` loopback addresses 127.0.2.1, 127.0.2.2, ...
   (default: one per 2,000 connections) with IP_BIND_ADDRESS_NO_PORT, so that no
   address runs out of ephemeral ports.  Few connections per address matter for speed
   too: connect() looks for a free port by walking the address's ports in use, so with
   10,000 per address opening 20,000 took 30 s, with 2,000 per address 6.6 s; reports
   the time to open all and the CPU used meanwhile;
5. measures the workers' RSS with everything open and settled: (sum - baseline) /
   connections is the server memory per connection (the kernel's socket memory is not
   in it: the system-wide change of /proc/meminfo's ``Slab``, both ends of every
   connection, is printed beside it);
6. heartbeats: each connection sends one 16-byte binary message every ``--period``
   seconds (60), the connections' phases spread evenly over the period, for
   ``--duration`` seconds (default one period: every connection once); the payload
   carries the send time, so the echo gives the round-trip time;
7. waits up to 10 s for the last echoes, reads RSS again, closes the clients and
   stops the server by PID (SIGTERM, SIGKILL after 15 s).

Errors (exit status 1): a connection not opened or closed by the server, an echo that
does not match, echoes missing after the drain.  The goals (<= 5 KiB of server memory per
connection, heartbeat p99 < 100 ms) are reported, not enforced.
"""

from __future__ import annotations

import argparse
import array
import datetime
import json
import math
import multiprocessing as mp
import os
import platform
import select
import struct
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any

import rawws
from rawws import HOST, read_sys

REPO = Path(__file__).resolve().parent.parent
BEAT = struct.Struct("<dQ")  # send time (monotonic), connection number
PORTS_PER_SOURCE = 2_000  # connect() scans the used ports of its address: keep few
FD_MARGIN = 1_000  # fds a process keeps besides its connections (listener, epoll, logs...)
SPREAD = 1.1  # SO_REUSEPORT spreads by hash: room for a worker's share above the mean


def client_proc(
    idx: int,
    port: int,
    first: int,
    n: int,
    total: int,
    sources: list[str],
    pipe: Pipe,
) -> None:
    """Open connections ``first`` .. ``first + n - 1``; on ("go", t0, period, duration)
    send their heartbeats; on "stop" report the round-trip times and the errors."""
    t_open = time.monotonic()
    try:
        socks = rawws.open_many(port, n, rawws.request(port, "/"), sources)
    except Exception as exc:
        pipe.send(("error", f"client process {idx}: {exc}"))
        return
    pipe.send(("ready", time.monotonic() - t_open))
    cmd = pipe.recv()
    if cmd[0] != "go":
        return
    _, t0, period, duration = cmd
    frame_len = rawws.server_frame_len(BEAT.size)
    head = bytes([0x82, BEAT.size])
    fds = [s.fileno() for s in socks]
    number = {fd: first + i for i, fd in enumerate(fds)}
    # connection first+i sends at t0 + (first+i)/total * period, then every period
    offsets = [(first + i) / total * period for i in range(n)]
    rtt = array.array("d")
    err = {"closed": 0, "mismatched": 0, "send_failed": 0}
    sent = received = 0
    ep = select.epoll(sizehint=n + 1)
    for fd in fds:
        ep.register(fd, select.EPOLLIN)
    pfd = pipe.fileno()
    ep.register(pfd, select.EPOLLIN)
    left: dict[int, bytes] = {}
    mono = time.monotonic
    pack_into, unpack = BEAT.pack_into, BEAT.unpack_from
    prefix = rawws.client_frame(b"\0" * BEAT.size)[: -BEAT.size]
    buf = bytearray(prefix + b"\0" * BEAT.size)
    plen = len(prefix)
    end = t0 + duration
    rnd, i = 0, 0  # round, index of the next connection due
    sending = True
    running = True
    while running:
        now = mono()
        if sending:
            while True:
                due = t0 + rnd * period + offsets[i]
                if due >= end:
                    sending = False
                    break
                if due > now:
                    break
                pack_into(buf, plen, now, first + i)
                try:
                    if os.write(fds[i], buf) != len(buf):
                        err["send_failed"] += 1
                    else:
                        sent += 1
                except OSError:
                    err["send_failed"] += 1
                i += 1
                if i == n:
                    i, rnd = 0, rnd + 1
            wait = max(0.0, min(0.01, due - mono())) if sending else 0.05
        else:
            wait = 0.05
        for fd, _ev in ep.poll(wait):
            if fd == pfd:
                running = False
                continue
            try:
                data = os.read(fd, 65536)
            except ConnectionError:
                data = b""
            t = mono()
            if not data:
                err["closed"] += 1
                ep.unregister(fd)
                continue
            if fd in left:
                data = left.pop(fd) + data
            off = 0
            while len(data) - off >= frame_len:
                if data[off : off + 2] != head:
                    err["mismatched"] += 1
                    off = len(data)
                    break
                ts, num = unpack(data, off + 2)
                if num != number[fd]:
                    err["mismatched"] += 1
                rtt.append(t - ts)
                received += 1
                off += frame_len
            if off < len(data):
                left[fd] = data[off:]
    pipe.recv()
    ru = os.times()
    pipe.send(
        (
            "done",
            {
                "rtt": rtt.tobytes(),
                "sent": sent,
                "received": received,
                "errors": err,
                "cpu": ru.user + ru.system,
            },
        )
    )
    for s in socks:
        s.close()


def _sockstat() -> str:
    try:
        lines = Path("/proc/net/sockstat").read_text().splitlines()
    except OSError:
        return "?"
    return next((ln for ln in lines if ln.startswith("TCP:")), "?")


def _slab_kib() -> int:
    """The kernel's slab memory (/proc/meminfo ``Slab``), where idle sockets live; KiB."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("Slab:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--conns", type=int, default=100_000, help="connections (default 100,000)")
    ap.add_argument("--workers", type=int, default=2, help="server workers (default 2)")
    ap.add_argument("--period", type=float, default=60.0, help="heartbeat period, s (60)")
    ap.add_argument("--duration", type=float, default=None, help="heartbeat s (one period)")
    ap.add_argument("--sources", type=int, default=0, help="source addresses (default: enough)")
    ap.add_argument("--client-procs", type=int, default=2, help="client processes (2)")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON line")
    args = ap.parse_args(argv)
    duration = args.period if args.duration is None else args.duration
    n = args.conns
    nsrc = args.sources or max(1, math.ceil(n / PORTS_PER_SOURCE))
    sources = rawws.source_addresses(nsrc, third=2)
    # Each worker (and each client process) holds its share of the connections: the
    # limit is per process.  Raising the hard limit needs CAP_SYS_RESOURCE; without it
    # the fds are spread over more processes instead.
    want = max(n // max(1, args.workers), n // max(1, args.client_procs)) + 1_000
    soft, hard = rawws.raise_nofile(want)
    budget = max(100, soft - FD_MARGIN)  # connections one process may hold
    workers = max(args.workers, math.ceil(n * SPREAD / budget))
    k = max(1, min(max(args.client_procs, math.ceil(n / budget)), n))
    lo, hi = (int(x) for x in read_sys("/proc/sys/net/ipv4/ip_local_port_range").split())
    print(f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(
        f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(
        f"RLIMIT_NOFILE {soft}/{hard} (wanted {want} per process; the server inherits it; "
        f"CAP_SYS_RESOURCE {'yes' if rawws.has_cap_sys_resource() else 'no'})"
    )
    if workers != args.workers:
        print(
            f"note: at most {budget:,} connections per process under this RLIMIT_NOFILE: "
            f"{workers} workers instead of {args.workers} (the hard limit {hard} cannot be "
            "raised without CAP_SYS_RESOURCE)"
        )
    print(
        f"kernel: somaxconn {read_sys('/proc/sys/net/core/somaxconn')}, tcp_max_syn_backlog "
        f"{read_sys('/proc/sys/net/ipv4/tcp_max_syn_backlog')}, ip_local_port_range {lo} {hi}, "
        f"nf_conntrack_max {read_sys('/proc/sys/net/netfilter/nf_conntrack_max')} (in use "
        f"{read_sys('/proc/sys/net/netfilter/nf_conntrack_count')}), fs.nr_open "
        f"{read_sys('/proc/sys/fs/nr_open')}, file-nr {read_sys('/proc/sys/fs/file-nr')}"
    )
    print(f"{_sockstat()} (before)")
    if nsrc * (hi - lo + 1) < n:
        print(f"error: {nsrc} source addresses x {hi - lo + 1} ports < {n} connections")
        return 2
    conntrack = read_sys("/proc/sys/net/netfilter/nf_conntrack_max")
    if conntrack.isdigit() and int(conntrack) < 2 * n:
        print(f"warning: nf_conntrack_max {conntrack} is below 2 x {n}: new connections may drop")

    port = rawws.free_port()
    cmd = [sys.executable, "-m", "lwsbridge.apps.echo_server", "-p", str(port), "-i", HOST]
    cmd += ["--loop", "epoll", "-d", "3"]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    print(f"server: {' '.join(cmd[1:])}")
    print(
        f"clients: {n:,} raw sockets in {k} processes from {nsrc} source addresses "
        f"({sources[0]} ...); heartbeat 16 B every {args.period:g} s for {duration:g} s",
        flush=True,
    )
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    res: dict[str, Any] = {"conns": n, "workers": workers, "client_procs": k, "errors": []}
    errors: list[str] = res["errors"]
    ctx = mp.get_context("fork")
    procs: list[Any] = []
    pipes: list[Pipe] = []
    try:
        rawws.wait_port(proc, port)
        wpids = rawws.server_pids(proc, workers)
        time.sleep(0.5)
        rss0 = sum(rawws.rss_kib(p) for p in wpids)
        mem0 = _slab_kib()
        print(f"workers {wpids}: VmRSS {rss0:,} KiB in all before connecting", flush=True)
        t_open = time.monotonic()
        ocpu0 = sum(rawws.proc_cpu(p) for p in wpids)
        first = 0
        for i in range(k):
            share = n // k + (1 if i < n % k else 0)
            a, b = ctx.Pipe()
            p = ctx.Process(
                target=client_proc,
                args=(i, port, first, share, n, sources[i::k] or sources, b),
            )
            p.start()
            b.close()
            procs.append(p)
            pipes.append(a)
            first += share
        for i, a in enumerate(pipes):
            if not a.poll(900):
                raise RuntimeError(f"client process {i} not ready within 900 s")
            what, detail = a.recv()
            if what != "ready":
                raise RuntimeError(detail)
        res["open_s"] = round(time.monotonic() - t_open, 2)
        odt = max(1e-9, res["open_s"])
        res["open_cpu_pct"] = {
            "workers": round(100 * (sum(rawws.proc_cpu(p) for p in wpids) - ocpu0) / odt),
            "clients": round(100 * sum(rawws.proc_cpu(p.pid) for p in procs) / odt),
        }
        print(
            f"opened {n:,} connections in {res['open_s']} s ({n / odt:,.0f} conn/s); CPU "
            f"meanwhile: workers {res['open_cpu_pct']['workers']}%, clients "
            f"{res['open_cpu_pct']['clients']}% of a core; load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        time.sleep(2.0)  # the workers' last bookkeeping
        per = [rawws.fd_count(p) for p in wpids]
        rss1 = sum(rawws.rss_kib(p) for p in wpids)
        mem1 = _slab_kib()
        res["per_worker_fds"] = per
        res["rss_kib"] = {"before": rss0, "open": rss1}
        res["kib_per_conn"] = round((rss1 - rss0) / n, 2)
        res["kernel_slab_kib_per_conn"] = round((mem1 - mem0) / n, 2)
        print(
            f"workers' VmRSS with all open: {rss1:,} KiB (+{res['kib_per_conn']} KiB per "
            f"connection); fds per worker {per}; {_sockstat()}",
            flush=True,
        )
        cpu0 = sum(rawws.proc_cpu(p) for p in wpids)
        ccpu0 = sum(rawws.proc_cpu(p.pid) for p in procs)
        t0 = time.monotonic() + 0.5
        for a in pipes:
            a.send(("go", t0, args.period, duration))
        step = max(1.0, min(10.0, duration / 6))
        while time.monotonic() < t0 + duration:
            time.sleep(min(step, max(0.0, t0 + duration - time.monotonic())))
            busy = sum(rawws.proc_cpu(p) for p in wpids) - cpu0
            print(
                f"  t={time.monotonic() - t0:5.1f} s  workers' CPU "
                f"{100 * busy / max(1e-9, time.monotonic() - t0):.0f}%"
                f"  VmRSS {sum(rawws.rss_kib(p) for p in wpids):,} KiB  load "
                f"{os.getloadavg()[0]:.2f}",
                flush=True,
            )
        window = time.monotonic() - t0
        res["server_cpu_pct"] = round(
            100 * (sum(rawws.proc_cpu(p) for p in wpids) - cpu0) / window, 1
        )
        res["client_cpu_pct"] = round(
            100 * (sum(rawws.proc_cpu(p.pid) for p in procs) - ccpu0) / window, 1
        )
        time.sleep(min(10.0, max(1.0, args.period / 6)))  # the last echoes
        rss2 = sum(rawws.rss_kib(p) for p in wpids)
        res["rss_kib"]["after"] = rss2
        for a in pipes:
            a.send("stop")
        rtt = array.array("d")
        sent = received = 0
        for i, a in enumerate(pipes):
            if not a.poll(60):
                errors.append(f"client process {i} did not report")
                continue
            _what, r = a.recv()
            rtt.frombytes(r["rtt"])
            sent += r["sent"]
            received += r["received"]
            for what, count in r["errors"].items():
                if count:
                    errors.append(f"client process {i}: {count} {what}")
        if received < sent:
            errors.append(f"{sent - received} echoes missing")
        ms = sorted(x * 1000 for x in rtt)
        res["heartbeats"] = {"sent": sent, "received": received}
        res["rtt_ms"] = {
            "p50": round(rawws.pct(ms, 50), 2),
            "p99": round(rawws.pct(ms, 99), 2),
            "max": round(ms[-1], 2) if ms else None,
        }
    except Exception as exc:
        errors.append(str(exc))
    finally:
        for a in pipes:
            a.close()
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
                p.join()
        res["server_stop"] = rawws.stop(proc)
        log.seek(0)
        lines = log.read().decode(errors="replace").splitlines()
        log.close()
    print()
    if "rtt_ms" in res:
        r = res["rtt_ms"]
        print(
            f"heartbeats sent / echoed  {res['heartbeats']['sent']:,} / "
            f"{res['heartbeats']['received']:,}; RTT ms p50 {r['p50']}  p99 {r['p99']}  "
            f"max {r['max']} (goal p99 < 100 ms)"
        )
        print(
            f"CPU over the heartbeats   workers {res['server_cpu_pct']}%  clients "
            f"{res['client_cpu_pct']}% of a core"
        )
    if "kib_per_conn" in res:
        print(
            f"server memory             {res['kib_per_conn']} KiB per connection "
            f"(workers' VmRSS {res['rss_kib']}) (goal <= 5 KiB); kernel slab "
            f"+{res['kernel_slab_kib_per_conn']} KiB per connection (both ends; system-wide)"
        )
        print(f"time to open all          {res['open_s']} s")
    print(f"errors                    {'; '.join(errors) if errors else 'none'}")
    print(f"server stopped: {res['server_stop']}; log {len(lines)} lines")
    for ln in lines[-10:]:
        print(f"  | {ln}")
    print(f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    rc = 1 if errors else 0
    print(f"exit status {rc}")
    if args.json:
        print(json.dumps(res))
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
