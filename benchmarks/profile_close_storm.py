"""Function calls per closed connection in a close storm (cProfile in the server).

    python benchmarks/profile_close_storm.py [-n 3000] [--loop builtin] [--top 30]

Starts the counting echo server of ``soak.py`` with cProfile armed but off, opens
``-n`` connections (``close_storm.open_all``), turns the profiler on (SIGUSR1), closes
every client socket at once, runs one fresh cycle, waits for the server's fds to be
back, turns the profiler off (SIGUSR2, which writes the stats) and prints the calls per
closed connection and the functions called most.  Call counts do not depend on the
machine's load, so before/after comparisons hold on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def serve(loop: str, out: str) -> None:
    import cProfile

    import soak

    prof = cProfile.Profile()
    signal.signal(signal.SIGUSR1, lambda *_: prof.enable())

    def off(*_: object) -> None:
        prof.disable()
        prof.dump_stats(out)

    signal.signal(signal.SIGUSR2, off)
    soak.serve(0, None if loop == "builtin" else loop, 60.0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", "--connections", type=int, default=3000)
    p.add_argument("--loop", default="builtin")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--serve", nargs=2, metavar=("LOOP", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve(*args.serve)
        return 0
    import close_storm
    import soak

    n = args.connections
    soak.raise_nofile(n + 256)
    out = os.path.join(tempfile.mkdtemp(), "storm.prof")
    cmd = [sys.executable, os.path.abspath(__file__), "--serve", args.loop, out]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = int(json.loads(proc.stdout.readline())["ready"])
    fds = lambda: len(os.listdir(f"/proc/{proc.pid}/fd"))  # noqa: E731
    try:
        warm = soak.Cycles(port, 1)
        warm.run(1)
        warm.close()
        time.sleep(0.2)
        fds0 = fds()
        socks = close_storm.open_all(port, n)
        time.sleep(0.5)
        proc.send_signal(signal.SIGUSR1)
        time.sleep(0.2)
        t0 = time.monotonic()
        for s in socks:
            s.close()
        fresh = soak.Cycles(port, 1)
        fresh.run(1, timeout=60)
        fresh.close()
        while fds() != fds0 and time.monotonic() - t0 < 120:
            time.sleep(0.01)
        settle = time.monotonic() - t0
        time.sleep(0.2)
        proc.send_signal(signal.SIGUSR2)
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        counts = proc.communicate(timeout=30)[0].strip().splitlines()[-1]
    st = pstats.Stats(out)
    total = st.total_calls  # type: ignore[attr-defined]
    print(f"{args.loop}: {n} connections, settled in {settle:.2f} s (under cProfile); {counts}")
    print(f"function calls {total:,}: {total / n:.1f} per closed connection")
    st.sort_stats("ncalls").print_stats(args.top)
    os.unlink(out)
    os.rmdir(os.path.dirname(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
