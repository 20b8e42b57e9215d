"""Interleaved A/B of echo servers: server CPU per message (or per connection) for a
fixed amount of work, and the wall-clock figure, median of N alternating runs.

    python benchmarks/ab_echo.py SCENARIO REPS NAME=ROOT[:LOOP] NAME=ROOT[:LOOP] ...

CPU time comes from /proc/PID/stat (utime+stime, clock ticks) before and after wsload
sends a fixed count (env N, default 300), so it does not depend on how long the shared
machine kept the server waiting; the runs alternate order each repetition.  Uses the
shared harness's venv python and wsload (WSBENCH_WORK, default /tmp/wsbench).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

WORK = os.environ.get("WSBENCH_WORK", "/tmp/wsbench")
PY = f"{WORK}/venv/bin/python"
WSLOAD = f"{WORK}/bin/wsload"
ARGS = {
    "1MiB": ["-c", "4", "-w", "1", "-s", "1M"],
    "latency": ["-c", "1", "-w", "1", "-s", "32"],
    "small": ["-c", "50", "-w", "8", "-s", "32"],
    "4KiB": ["-c", "50", "-w", "8", "-s", "4096"],
    "connrate": ["-m", "connrate", "-c", "8"],
}
KEY = {
    "1MiB": "mb_per_s",
    "latency": "p50_us",
    "small": "msgs_per_s",
    "4KiB": "msgs_per_s",
    "connrate": "conns_per_s",
}


def proc_stat(pid: int) -> tuple[int, float]:
    """``pid``'s minor page faults and CPU seconds (utime + stime) from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[7]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    return proc_stat(pid)[1]


def wait_listening(port: int) -> None:
    """Until something accepts on 127.0.0.1:``port`` (at most about 25 s)."""
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)


def run_one(scenario: str, root: str, loop: str, port: int, count: str) -> tuple[float, float]:
    cmd = ["taskset", "-c", "0", "env", f"PYTHONPATH={root}", PY, "-m"]
    cmd += ["lwsbridge.apps.echo_server", "-p", str(port), "-i", "127.0.0.1"]
    if loop:
        cmd += ["--loop", loop]
    # cwd=root: ``python -m`` puts the working directory first on sys.path, so run from
    # a checkout it would import that checkout's lwsbridge for every row, not ROOT's.
    server = subprocess.Popen(cmd, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port)
        c0 = cpu_seconds(server.pid)
        load = ["taskset", "-c", "1", WSLOAD, "-u", f"ws://127.0.0.1:{port}/", "-d", "30"]
        load += ["-n", count, "-j", "-q", *ARGS[scenario]]
        out = subprocess.run(load, capture_output=True, text=True, timeout=90).stdout
        c1 = cpu_seconds(server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(5)
    report = json.loads(out.strip().splitlines()[-1])
    done = report["cycles"] if scenario == "connrate" else report["msgs"]
    return float(report[KEY[scenario]]), (c1 - c0) / max(done, 1) * 1e6


def main() -> None:
    scenario, reps, rows = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    count = os.environ.get("N", "300")
    results: dict[str, list[tuple[float, float]]] = {r: [] for r in rows}
    port = 9100 + os.getpid() % 500
    for i in range(reps):
        for row in rows if i % 2 == 0 else rows[::-1]:
            root, _, loop = row.split("=", 1)[1].partition(":")
            port += 1
            results[row].append(run_one(scenario, root, loop, port, count))
    for row, vals in results.items():
        name = row.split("=", 1)[0]
        figure = statistics.median(v[0] for v in vals)
        cpu = statistics.median(v[1] for v in vals)
        print(
            f"{name:12s} {KEY[scenario]} {figure:9.1f}  server CPU us/op {cpu:8.1f}"
            f"  (per run: {[round(v[1]) for v in vals]})"
        )


if __name__ == "__main__":
    main()
