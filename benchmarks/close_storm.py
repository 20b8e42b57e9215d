"""Close storm: N WebSocket connections open, then all close at once; how fast each loop settles.

    python benchmarks/close_storm.py                         # 20,000 connections, every loop
    python benchmarks/close_storm.py -n 2000 --loop zmq --json

For each loop: start the counting echo server of ``soak.py`` (``--serve``) in a
subprocess, open ``-n`` connections and upgrade them all, then close every client
socket in one go.  Measured from that moment: when a fresh client's whole cycle
(connect, upgrade, echo, close) is done, and when the server's fd count is back to
what it was before the first connection; "settle" is the later of the two.  Also
reported: the server's VmRSS growth per connection with all of them open and idle.  Checks
(exit status 1): settled within ``--settle`` seconds (2), ESTABLISHED == CLOSED ==
n + 2 (a warm-up cycle and the fresh one) and nothing unmatched.  ``--settle 0`` only
waits (up to 60 s) and checks the rest.
RLIMIT_NOFILE is raised for both processes (the hard limit too where the process may:
that takes CAP_SYS_RESOURCE, which root in a container can lack; then the run is
capped a little below the hard limit, which the server's own fds count against).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import select
import socket
import sys
import time
from typing import Any

from soak import ACCEPT, HOST, CycleError, Cycles, Server, raise_nofile, request

LOOPS = ["builtin", "select", "poll", "epoll", "zmq", "gevent", "trio", "asyncio"]


def open_all(port: int, n: int, in_flight: int = 256, timeout: float = 600.0) -> list[Any]:
    """``n`` upgraded client sockets (at most ``in_flight`` handshakes at a time)."""
    req = request(port)
    ep = select.epoll()
    pending: dict[int, list[Any]] = {}
    opened: list[socket.socket] = []
    started = 0
    deadline = time.monotonic() + timeout
    try:
        while len(opened) < n:
            while len(pending) < in_flight and started < n:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                err = s.connect_ex((HOST, port))
                if err not in (0, errno.EINPROGRESS):
                    raise CycleError(f"connect: {os.strerror(err)}")
                pending[s.fileno()] = [s, b"", False]
                ep.register(s.fileno(), select.EPOLLOUT)
                started += 1
            if time.monotonic() > deadline:
                raise CycleError(f"only {len(opened)} of {n} upgraded in {timeout} s")
            for fd, _ev in ep.poll(1.0):
                c = pending[fd]
                s = c[0]
                if not c[2]:
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise CycleError(f"connect: {os.strerror(err)}")
                    s.send(req)
                    c[2] = True
                    ep.modify(fd, select.EPOLLIN)
                    continue
                data = s.recv(4096)
                if not data:
                    raise CycleError(f"EOF during the upgrade ({len(opened)} open)")
                c[1] += data
                end = c[1].find(b"\r\n\r\n")
                if end >= 0:
                    if not c[1].startswith(b"HTTP/1.1 101") or ACCEPT not in c[1][:end]:
                        raise CycleError(f"bad upgrade answer {c[1][:80]!r}")
                    ep.unregister(fd)
                    del pending[fd]
                    opened.append(s)
    except BaseException:
        for s in opened:
            s.close()
        raise
    finally:
        for c in pending.values():
            c[0].close()
        ep.close()
    return opened


def storm(loop: str, n: int, wait: float) -> dict[str, Any]:
    # Opening tens of thousands of connections on a loaded machine can keep one waiting
    # for its head longer than the default 5 s: the storm measured is the close.
    server = Server(None if loop == "builtin" else loop, handshake_timeout=60.0)
    try:
        warm = Cycles(server.port, 1)  # a loop may open an fd on its first wait (zmq)
        try:
            warm.run(1)
        finally:
            warm.close()
        time.sleep(0.2)
        fds0 = server.fds()
        rss0 = server.rss_kb()
        t_open = time.monotonic()
        socks = open_all(server.port, n)
        open_s = time.monotonic() - t_open
        peak_fds = server.fds()
        rss_open = server.rss_kb()  # every connection open and idle
        t0 = time.monotonic()
        for s in socks:
            s.close()
        closed_s = time.monotonic() - t0
        fresh = Cycles(server.port, 1)
        try:
            fresh.run(1, timeout=wait)
            fresh_s = time.monotonic() - t0
        except CycleError as exc:
            print(f"[{loop}] fresh client: {exc}", file=sys.stderr)
            fresh_s = float("nan")
        finally:
            fresh.close()
        fds_s = float("nan")
        while time.monotonic() - t0 < wait:
            if server.fds() == fds0:
                fds_s = time.monotonic() - t0
                break
            time.sleep(0.01)
        fds1 = server.fds()
    finally:
        counts = server.stop()
    return {
        "loop": loop,
        "connections": n,
        "open_s": open_s,
        "peak_fds": peak_fds,
        "idle_kib_per_conn": (rss_open - rss0) / n,
        "close_calls_s": closed_s,
        "fresh_s": fresh_s,
        "fds_s": fds_s,
        "settle_s": max(fresh_s, fds_s),
        "fds_before": fds0,
        "fds_after": fds1,
        **counts,
    }


def check(r: dict[str, Any], settle: float) -> list[str]:
    bad = []
    if r["fresh_s"] != r["fresh_s"]:  # NaN
        bad.append("the fresh client was not served")
    if r["fds_after"] != r["fds_before"]:
        bad.append(f"server fds {r['fds_before']} before, {r['fds_after']} after")
    want = r["connections"] + 2  # and the warm-up and fresh clients
    if not r["established"] == r["closed"] == want or r["unmatched"] or r["live"]:
        bad.append(
            f"callbacks: {r['established']} ESTABLISHED, {r['closed']} CLOSED, "
            f"{r['unmatched']} unmatched, {r['live']} live; want {want}"
        )
    if settle and not r["settle_s"] <= settle:
        bad.append(f"settled in {r['settle_s']:.2f} s (limit {settle} s)")
    return bad


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", "--connections", type=int, default=20_000)
    p.add_argument("--loop", action="append", choices=LOOPS, help="repeatable; default all")
    p.add_argument("--settle", type=float, default=2.0, help="seconds allowed (0: no check)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    # Client and server each hold every connection's fd; the server inherits the limit.
    nofile = raise_nofile(args.connections + 256)
    if args.connections > nofile - 100:
        print(
            f"RLIMIT_NOFILE is {nofile} here (the hard limit, which this process may not "
            f"raise: setrlimit needs CAP_SYS_RESOURCE): {nofile - 100:,} connections, "
            f"not {args.connections:,}",
            file=sys.stderr,
        )
        args.connections = nofile - 100
    loops = args.loop or LOOPS
    failed = False
    rows = [
        "| loop | connections | open s | idle KiB/conn | fresh client s | fds back s | settle s "
        "| checks |",
        "|---|--:|--:|--:|--:|--:|--:|---|",
    ]
    for loop in loops:
        n = args.connections
        if loop == "select" and n > 900:
            n = 900  # FD_SETSIZE: the select loop caps its connections below 1024
        try:
            r = storm(loop, n, max(args.settle * 5, 60.0) if args.settle else 60.0)
        except CycleError as exc:  # this loop could not even be set up: go on with the rest
            print(f"FAIL [{loop}]: {exc}", file=sys.stderr)
            failed = True
            rows.append(f"| {loop} | {n:,} | | | | | | {exc} |")
            continue
        bad = check(r, args.settle)
        r["failed"] = bad
        failed = failed or bool(bad)
        if args.json:
            print(json.dumps(r), flush=True)
        for msg in bad:
            print(f"FAIL [{loop}]: {msg}", file=sys.stderr)
        rows.append(
            f"| {loop} | {n:,} | {r['open_s']:.1f} | {r['idle_kib_per_conn']:.2f} "
            f"| {r['fresh_s']:.2f} | {r['fds_s']:.2f} "
            f"| {r['settle_s']:.2f} | {'ok' if not bad else '; '.join(bad)} |"
        )
    if not args.json:
        print("\n".join(rows))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
