"""10,000 connections: one lwsbridge client context against one lwsbridge-test-echo.

Run from the repository root::

    python benchmarks/scale_10k.py                           # 10,000 conns x 60 s
    python benchmarks/scale_10k.py --conns 1000 --duration 10   # quick look

What it does:

1. raises this process's RLIMIT_NOFILE soft limit to the hard limit (the server child
   inherits it) and stops if that is below 12,000 (``--conns`` + 2,000 when larger);
2. starts ``python -m lwsbridge.apps.echo_server -p P -i 127.0.0.1 --loop epoll``, pinned to
   cpu 0 with ``taskset`` when it exists and there are two CPUs (this process moves itself
   to cpu 1), and waits for the port;
3. opens ``--conns`` client connections from ONE lwsbridge ``Context`` served by the epoll
   adapter, ``--batch`` at a time, each batch waited for (CLIENT_ESTABLISHED) before the
   next, so the server's listen backlog is never flooded; reports the time taken;
4. then every connection sends one 32-byte binary message per second for ``--duration``
   seconds: a per-connection TIMER (``conn.set_timer``) with a random initial phase in
   [0, 1 s), so the load is spread evenly; on TIMER the send time is recorded and
   ``callback_on_writable`` asked, the message is written in CLIENT_WRITEABLE, and the
   echo's round-trip time is taken in CLIENT_RECEIVE (every echo compared byte for byte
   with what was sent);
5. waits up to ``--drain`` seconds for the last echoes, closes every connection (1000)
   and waits for the CLOSED callbacks, then stops the server by PID (SIGTERM, then
   SIGKILL after 5 s).

Counted as errors: CLIENT_CONNECTION_ERROR, CLOSED before the closing phase, an echo
that differs from what was sent, echoes still missing after the drain, connections not
established, connections not closed cleanly.  The exit status is 1 if there was any.

Reported: connections established, messages sent / received, errors, RTT p50/p90/p99/max
(ms), server VmRSS (/proc/PID/status) before connecting, with every connection open and
at the end (KiB per connection), server CPU % (utime + stime from /proc/PID/stat) and
client CPU % (getrusage) over the load window; to explain latency, the CPU used on the
two cores by other processes and the kernel (/proc/stat), the client's GC pauses and the
system-wide softnet drops / TCP retransmissions.  Progress lines every ``--report``
seconds show the same per interval.  Loopback only; a hard deadline of
``--duration`` + 120 s bounds the whole run (SIGALRM as a backstop).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import os
import platform
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
MIN_NOFILE = 12_000
SIZE = 32


class Deadline(BaseException):
    """Not an Exception: the context's guard against callback errors must not catch it."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _pinning() -> bool:
    return shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2


def _proc_cpu(pid: int) -> float:
    """utime + stime of ``pid`` in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _read_sys(path: str) -> str:
    try:
        return Path(path).read_text().strip().replace("\t", " ")
    except OSError:
        return "?"


def _net_counters() -> dict[str, int]:
    """System-wide kernel counters that explain stalls on loopback (0 where unreadable).

    ``softnet dropped``: packets dropped because a CPU's input backlog
    (net.core.netdev_max_backlog) was full -- loopback traffic goes through it;
    ``RetransSegs`` / ``TCPTimeouts``: TCP retransmissions and RTO expiries.
    """
    out = {"softnet dropped": 0, "RetransSegs": 0, "TCPTimeouts": 0}
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/net/softnet_stat").read_text().splitlines():
            out["softnet dropped"] += int(line.split()[1], 16)
    for path in ("/proc/net/snmp", "/proc/net/netstat"):
        with contextlib.suppress(OSError, ValueError):
            lines = Path(path).read_text().splitlines()
            for names, values in zip(lines[::2], lines[1::2], strict=False):
                pairs = zip(names.split()[1:], values.split()[1:], strict=False)
                for k, v in pairs:
                    if k in out:
                        out[k] = int(v)
    return out


def _cpu_busy() -> dict[str, float]:
    """Seconds each CPU was busy (user+nice+system+irq+softirq) and stolen, from /proc/stat."""
    out: dict[str, float] = {}
    tck = os.sysconf("SC_CLK_TCK")
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/stat").read_text().splitlines():
            f = line.split()
            if f and f[0].startswith("cpu") and f[0] != "cpu":
                v = [int(x) for x in f[1:9]]
                out[f[0]] = (v[0] + v[1] + v[2] + v[5] + v[6]) / tck
                out[f[0] + " steal"] = v[7] / tck
    return out


class GcPauses:
    """Wall time spent in the client's garbage collector (gc.callbacks)."""

    def __init__(self) -> None:
        self.total = 0.0
        self.longest = 0.0
        self.full = 0
        self._t = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t = time.perf_counter()
            return
        d = time.perf_counter() - self._t
        self.total += d
        self.longest = max(self.longest, d)
        if info.get("generation") == 2:
            self.full += 1


def _wait_port(proc: subprocess.Popen[bytes], port: int, deadline: float) -> None:
    end = min(deadline, time.monotonic() + 15)
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port} within 15 s")


def _stop_server(proc: subprocess.Popen[bytes]) -> str:
    """SIGTERM by PID, SIGKILL after 5 s; returns how it ended."""
    if proc.poll() is not None:
        return f"had already exited ({proc.returncode})"
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
        return f"SIGTERM, exit {proc.returncode}"
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
        return "did not stop within 5 s of SIGTERM: SIGKILL"


def _pct(sorted_ms: list[float], p: float) -> float:
    if not sorted_ms:
        return float("nan")
    k = min(len(sorted_ms) - 1, max(0, round(p / 100.0 * len(sorted_ms) + 0.5) - 1))
    return sorted_ms[k]


def _payload(i: int, seq: int) -> bytes:
    head = f"c{i:06d} s{seq:08d} ".encode()
    return head + b"." * (SIZE - len(head))


class Sess:
    __slots__ = ("due", "i", "inflight", "seq", "to_write")

    def __init__(self, i: int) -> None:
        self.i = i
        self.seq = 0
        self.due = 0.0  # monotonic time of the next send
        self.inflight: list[tuple[bytes, float]] = []  # (payload, send time), in order
        self.to_write: list[bytes] = []


def run(args: argparse.Namespace, proc: subprocess.Popen[bytes], deadline: float) -> int:
    from lwsbridge.adapters.epoll_loop import EpollLoop
    from lwsbridge.context import ClientConnectInfo, Context, Protocol, Reason, WriteKind

    n = args.conns
    pid = proc.pid
    st: dict[str, Any] = {
        "established": 0,
        "conn_errors": [],
        "unexpected_closed": 0,
        "closed": 0,
        "mismatch": 0,
        "sent": 0,
        "received": 0,
        "sending": False,
        "closing": False,
    }
    rtts: list[float] = []
    mono = time.monotonic
    BINARY = WriteKind.BINARY
    TIMER, WRITEABLE, RECEIVE = Reason.TIMER, Reason.CLIENT_WRITEABLE, Reason.CLIENT_RECEIVE
    ESTABLISHED, CONN_ERROR, CLOSED = (
        Reason.CLIENT_ESTABLISHED,
        Reason.CLIENT_CONNECTION_ERROR,
        Reason.CLOSED,
    )

    def cb(conn: Any, reason: Reason, s: Sess, payload: Any) -> int:
        if reason is TIMER:
            if not st["sending"]:
                return 0
            now = mono()
            s.seq += 1
            msg = _payload(s.i, s.seq)
            s.inflight.append((msg, now))
            s.to_write.append(msg)
            st["sent"] += 1
            conn.callback_on_writable()
            s.due += 1.0
            conn.set_timer(max(0.0, s.due - now))
        elif reason is WRITEABLE:
            if s.to_write:
                conn.write(s.to_write.pop(0), BINARY)
                if s.to_write:
                    conn.callback_on_writable()
        elif reason is RECEIVE:
            now = mono()
            if not conn.is_final_fragment() or not s.inflight:
                st["mismatch"] += 1
                return 0
            msg, t0 = s.inflight.pop(0)
            if payload != msg:
                st["mismatch"] += 1
            st["received"] += 1
            rtts.append((now - t0) * 1000.0)
        elif reason is ESTABLISHED:
            st["established"] += 1
        elif reason is CONN_ERROR:
            st["conn_errors"].append(str(payload))
        elif reason is CLOSED:
            if st["closing"]:
                st["closed"] += 1
            else:
                st["unexpected_closed"] += 1
                if st["unexpected_closed"] <= 5:
                    print(
                        f"  unexpected CLOSED on connection {s.i} (close code {conn.close_code})",
                        flush=True,
                    )
        return 0

    def check_deadline() -> None:
        if mono() > deadline:
            raise Deadline("hard deadline reached")

    gcp = GcPauses()
    gc.callbacks.append(gcp)
    ctx = Context([Protocol("lws-echo", cb)], port=None)
    loop = EpollLoop(ctx)
    conns: list[Any] = []
    sessions: list[Sess] = []
    errors: list[str] = []
    try:
        rss_before = _rss_kib(pid)
        print(f"server VmRSS before connecting: {rss_before:,} KiB", flush=True)

        # ---- open, batch by batch
        net0 = _net_counters()
        t_open0 = mono()
        for start in range(0, n, args.batch):
            stop = min(n, start + args.batch)
            for i in range(start, stop):
                s = Sess(i)
                sessions.append(s)
                conns.append(ctx.client_connect(ClientConnectInfo(HOST, args.port, "/", user=s)))
            batch_end = mono() + 30
            while st["established"] + len(st["conn_errors"]) < stop and mono() < batch_end:
                check_deadline()
                loop.run_once(50)
            if st["established"] + len(st["conn_errors"]) < stop:
                errors.append(f"batch {start}..{stop - 1} not settled within 30 s")
                break
        t_open = mono() - t_open0
        established = st["established"]
        print(
            f"opened {established:,} / {n:,} connections in {t_open:.2f} s "
            f"({established / t_open:,.0f} conn/s, batches of {args.batch}); "
            f"connection errors: {len(st['conn_errors'])}",
            flush=True,
        )
        for e in st["conn_errors"][:5]:
            print(f"  CLIENT_CONNECTION_ERROR: {e}", flush=True)
        # let the server settle (its last WSI bookkeeping), then measure it idle
        settle = mono() + 1.0
        while mono() < settle:
            loop.run_once(50)
        rss_open = _rss_kib(pid)
        print(
            f"server VmRSS with {established:,} connections open: {rss_open:,} KiB "
            f"(+{(rss_open - rss_before) / max(1, established):.2f} KiB per connection)",
            flush=True,
        )

        # ---- load: one message per connection per second, random phase
        live = [(c, c.user) for c in ctx.connections()]
        net1 = _net_counters()
        st["sending"] = True
        t0 = mono()
        cpu_s0, cpu_c0 = _proc_cpu(pid), _self_cpu()
        for c, s in live:
            phase = random.random()
            s.due = t0 + phase
            c.set_timer(phase)
        end = t0 + args.duration
        interval = args.report
        next_report = t0 + interval
        mark = (0, 0, 0, cpu_s0, cpu_c0)  # rtt index, sent, received, server/client CPU
        net_mark = net1
        busy_mark = busy0 = _cpu_busy()

        def others(a: dict[str, float], b: dict[str, float], cpu: str, ours: float) -> float:
            """% of ``cpu`` used by everything but our process over the interval."""
            if cpu not in a or cpu not in b:
                return float("nan")
            return 100 * (b[cpu] - a[cpu] - ours) / interval

        while mono() < end:
            check_deadline()
            loop.run_once(50)
            now = mono()
            if now >= next_report:
                i0, sent0, recv0, s0, c0 = mark
                win = sorted(rtts[i0:])
                cs, cc = _proc_cpu(pid), _self_cpu()
                net = _net_counters()
                busy = _cpu_busy()
                print(
                    f"  t={now - t0:5.1f} s  sent {st['sent'] - sent0:6,}  "
                    f"received {st['received'] - recv0:6,}  "
                    f"in flight {st['sent'] - st['received']:6,}  "
                    f"RTT p50 {_pct(win, 50):7.2f} max {win[-1] if win else 0:7.1f} ms  "
                    f"CPU server {100 * (cs - s0) / interval:3.0f}% "
                    f"client {100 * (cc - c0) / interval:3.0f}%  "
                    f"errors {len(st['conn_errors']) + st['unexpected_closed'] + st['mismatch']}  "
                    f"drops +{net['softnet dropped'] - net_mark['softnet dropped']} "
                    f"retrans +{net['RetransSegs'] - net_mark['RetransSegs']}  "
                    f"others cpu0 {others(busy_mark, busy, 'cpu0', cs - s0):3.0f}% "
                    f"cpu1 {others(busy_mark, busy, 'cpu1', cc - c0):3.0f}%",
                    flush=True,
                )
                busy_mark = busy
                net_mark = net
                mark = (len(rtts), st["sent"], st["received"], cs, cc)
                next_report += interval
        st["sending"] = False
        t1 = mono()
        cpu_s1, cpu_c1 = _proc_cpu(pid), _self_cpu()
        busy1 = _cpu_busy()
        for c, _s in live:
            c.set_timer(None)
        # ---- drain the last echoes
        drain_end = mono() + args.drain
        while st["received"] < st["sent"] and mono() < drain_end:
            check_deadline()
            loop.run_once(50)
        missing = st["sent"] - st["received"]
        net2 = _net_counters()
        rss_end = _rss_kib(pid)

        # ---- close every connection cleanly
        st["closing"] = True
        open_now = ctx.connections()
        t_close0 = mono()
        for c in open_now:
            ctx.close(c, 1000)
        close_end = mono() + 30
        while st["closed"] < len(open_now) and mono() < close_end:
            check_deadline()
            loop.run_once(50)
        t_close = mono() - t_close0
        not_closed = len(open_now) - st["closed"]
    finally:
        gc.callbacks.remove(gcp)
        loop.close()
        ctx.destroy()

    window = t1 - t0
    srt = sorted(rtts)
    if established < n:
        errors.append(f"{n - established} connections not established")
    if st["conn_errors"]:
        errors.append(f"{len(st['conn_errors'])} CLIENT_CONNECTION_ERROR")
    if st["unexpected_closed"]:
        errors.append(f"{st['unexpected_closed']} unexpected CLOSED")
    if st["mismatch"]:
        errors.append(f"{st['mismatch']} mismatched echoes")
    if missing:
        errors.append(f"{missing} echoes missing after {args.drain} s of drain")
    if not_closed:
        errors.append(f"{not_closed} connections not closed within 30 s")

    print()
    print(f"connections established   {established:,} / {n:,} (opened in {t_open:.2f} s)")
    print(
        f"messages sent / received  {st['sent']:,} / {st['received']:,} in {window:.1f} s "
        f"({st['received'] / window:,.0f} echoes/s; expected ~{established * window:,.0f} sent)"
    )
    print(
        f"errors                    {len(errors)}: {'; '.join(errors) if errors else 'none'} "
        f"(CLIENT_CONNECTION_ERROR {len(st['conn_errors'])}, unexpected CLOSED "
        f"{st['unexpected_closed']}, mismatched {st['mismatch']}, missing {missing})"
    )
    print(
        f"RTT ms                    p50 {_pct(srt, 50):.2f}  p90 {_pct(srt, 90):.2f}  "
        f"p99 {_pct(srt, 99):.2f}  max {srt[-1] if srt else float('nan'):.2f}  "
        f"({len(srt):,} samples)"
    )
    per_open = (rss_open - rss_before) / max(1, established)
    per_end = (rss_end - rss_before) / max(1, established)
    print(
        f"server VmRSS KiB           before {rss_before:,}  all open {rss_open:,}  "
        f"end of load {rss_end:,}"
    )
    print(
        f"server KiB per connection  {per_open:.2f} idle (all open)  {per_end:.2f} after the load"
    )
    print(
        f"server CPU                {100 * (cpu_s1 - cpu_s0) / window:.1f}% of a core over the "
        f"load window ({cpu_s1 - cpu_s0:.2f} s)"
    )
    print(
        f"client CPU                {100 * (cpu_c1 - cpu_c0) / window:.1f}% of a core over the "
        f"load window ({cpu_c1 - cpu_c0:.2f} s)"
    )
    if pin_note := args.pinned:
        o0 = 100 * (busy1["cpu0"] - busy0["cpu0"] - (cpu_s1 - cpu_s0)) / window
        o1 = 100 * (busy1["cpu1"] - busy0["cpu1"] - (cpu_c1 - cpu_c0)) / window
        st0 = sum(busy1[k] - busy0[k] for k in busy1 if k.endswith("steal"))
        print(
            f"other load                cpu0 {o0:.1f}%, cpu1 {o1:.1f}% of the core used by other "
            f"processes and the kernel over the load window ({pin_note}); steal {st0:.2f} s"
        )
    print(
        f"client GC                 {gcp.total * 1000:.0f} ms in total, longest pause "
        f"{gcp.longest * 1000:.1f} ms, {gcp.full} full collections (whole run)"
    )
    for label, a, b in (("opening", net0, net1), ("load + drain", net1, net2)):
        print(
            f"kernel, {label:<13}    "
            + "  ".join(f"{k} +{b[k] - a[k]:,}" for k in a)
            + "  (system-wide counters)"
        )
    print(f"closed cleanly            {st['closed']:,} / {len(open_now):,} in {t_close:.2f} s")
    return 1 if errors else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--conns", type=int, default=10_000, help="connections (default 10,000)")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    ap.add_argument("--batch", type=int, default=500, help="connections opened at a time")
    ap.add_argument("--drain", type=float, default=5.0, help="seconds to wait for last echoes")
    ap.add_argument(
        "--report", type=float, default=10.0, help="seconds between progress lines (default 10)"
    )
    ap.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    args = ap.parse_args(argv)

    deadline = time.monotonic() + args.duration + 120

    def alarm(signum: int, frame: FrameType | None) -> None:
        raise Deadline("hard deadline reached (SIGALRM)")

    signal.signal(signal.SIGALRM, alarm)
    signal.alarm(int(args.duration + 125))

    need = max(MIN_NOFILE, args.conns + 2_000)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    print(f"RLIMIT_NOFILE: soft {soft}, hard {hard}")
    if hard != resource.RLIM_INFINITY and hard < need:
        print(f"error: the hard limit {hard} is below {need}: cannot hold {args.conns} fds")
        return 2
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    print(f"RLIMIT_NOFILE raised: soft {soft}, hard {hard} (the server inherits it)")

    port = args.port = args.port or _free_port()
    pin = _pinning()
    cmd = [sys.executable, "-m", "lwsbridge.apps.echo_server", "-p", str(port), "-i", HOST]
    cmd += ["--loop", "epoll"]
    args.pinned = ""
    if pin:
        cmd = ["taskset", "-c", "0", *cmd]
        os.sched_setaffinity(0, {1})
        args.pinned = "server on cpu0, client on cpu1"
    print(f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(
        f"somaxconn {_read_sys('/proc/sys/net/core/somaxconn')}, ephemeral ports "
        f"{_read_sys('/proc/sys/net/ipv4/ip_local_port_range')}"
    )
    print(f"server: {' '.join(cmd)}")
    print(
        f"client: this process, one Context on the epoll adapter"
        f"{', cpu 1' if pin else ' (not pinned)'}; {args.conns:,} connections, 1 x {SIZE} B "
        f"binary per connection per second for {args.duration:g} s",
        flush=True,
    )

    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in the finally below)
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    rc = 1
    try:
        _wait_port(proc, port, deadline)
        time.sleep(0.3)  # the probe connection above is gone from the server
        print(f"server PID {proc.pid} listening on {HOST}:{port}", flush=True)
        rc = run(args, proc, deadline)
    except Deadline as exc:
        print(f"error: {exc}", flush=True)
        rc = 1
    finally:
        signal.alarm(0)
        alive = proc.poll() is None
        print(f"server {'stopped: ' + _stop_server(proc) if alive else 'died early'}")
        if not alive:
            rc = 1
        log.seek(0)
        lines = log.read().decode(errors="replace").splitlines()
        notable = [ln for ln in lines if "connection limit" not in ln]
        print(f"server log: {len(lines)} lines" + (":" if notable else ""))
        for ln in notable[-20:]:
            print(f"  | {ln}")
        log.close()
    print(f"exit status {rc}")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
