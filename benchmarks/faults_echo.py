"""Server minor page faults and CPU per echoed message, optionally with strace's count
of memory syscalls (brk, mmap, munmap): the allocator churn of large messages.

    python benchmarks/faults_echo.py ROOT[:LOOP] [N] [strace] [SIZE]

Starts ``lwsbridge.apps.echo_server`` from ROOT (pinned to cpu 0, run from ROOT so that
ROOT's lwsbridge is the one imported), sends N messages of SIZE (default 600 x 1M) with
wsload ``-c 4 -w 1`` (the harness's 1 MiB scenario; pinned to cpu 1) and reads the
server's minflt and utime+stime from /proc/PID/stat before and after.  Env ``PY``: the
server's python (default the harness venv's); ``WSBENCH_WORK`` as in ab_echo.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from ab_echo import proc_stat, wait_listening

WORK = os.environ.get("WSBENCH_WORK", "/tmp/wsbench")
PY = os.environ.get("PY", f"{WORK}/venv/bin/python")
WSLOAD = f"{WORK}/bin/wsload"
STRACE_OUT = "/tmp/faults_echo.strace"


def main() -> None:
    root, _, loop = sys.argv[1].partition(":")
    count = sys.argv[2] if len(sys.argv) > 2 else "600"
    traced = len(sys.argv) > 3 and sys.argv[3] == "strace"
    size = sys.argv[4] if len(sys.argv) > 4 else "1M"
    port = 9700 + os.getpid() % 200
    cmd = ["taskset", "-c", "0", PY, "-m", "lwsbridge.apps.echo_server"]
    cmd += ["-p", str(port), "-i", "127.0.0.1"]
    if loop:
        cmd += ["--loop", loop]
    if traced:
        cmd = ["strace", "-c", "-f", "-e", "trace=memory", "-o", STRACE_OUT, *cmd]
    env = dict(os.environ, PYTHONPATH=root)
    server = subprocess.Popen(
        cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    pid = server.pid
    try:
        wait_listening(port)
        if traced:  # taskset execs python: the traced python is strace's child
            pid = int(subprocess.check_output(["pgrep", "-P", str(server.pid)]).split()[0])
        f0, c0 = proc_stat(pid)
        load = ["taskset", "-c", "1", WSLOAD, "-u", f"ws://127.0.0.1:{port}/", "-d", "60"]
        load += ["-n", count, "-j", "-q", "-c", "4", "-w", "1", "-s", size]
        out = subprocess.run(load, capture_output=True, text=True, timeout=120).stdout
        f1, c1 = proc_stat(pid)
    finally:
        os.kill(pid, signal.SIGTERM)
        server.wait(10)
    report = json.loads(out.strip().splitlines()[-1])
    msgs = max(report["msgs"], 1)
    line = f"{sys.argv[1]}: {report['msgs']} messages, {(f1 - f0) / msgs:.1f} minor faults"
    line += f" and {(c1 - c0) / msgs * 1e6:.0f} us server CPU per message"
    if traced:
        with open(STRACE_OUT) as f:
            calls = {p[-1]: p[3] for p in (ln.split() for ln in f) if len(p) >= 5}
        line += "; " + ", ".join(f"{calls.get(k, 0)} {k}" for k in ("brk", "mmap", "munmap"))
    print(line)


if __name__ == "__main__":
    main()
