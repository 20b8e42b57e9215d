"""cProfile of the echo server under one wsload scenario: function calls per message or
per connection (issue 14's profile).  Deterministic counts, unlike times on a busy box.

    python benchmarks/profile_echo.py ROOT SCENARIO [LOOP]

ROOT is a checkout whose ``lwsbridge`` is profiled (e.g. a worktree of the commit before
a change, with the built ``_speedups*.so`` copied in); SCENARIO is 1MiB, latency, small, 4KiB or
connrate (wsload's arguments as in the shared harness); LOOP an adapter name (default:
the built-in loop).  Needs the harness's wsload (``WSLOAD``, default
/tmp/wsbench/bin/wsload).  Env ``SORT`` (tottime, ncalls...) and ``TOP`` (rows) shape the
table.
"""

from __future__ import annotations

import contextlib
import cProfile
import io
import json
import os
import pstats
import re
import signal
import subprocess
import sys
import threading
import time

ROOT, SCENARIO = sys.argv[1], sys.argv[2]
LOOP = sys.argv[3] if len(sys.argv) > 3 else None
sys.path.insert(0, ROOT)

from lwsbridge.apps.common import serve  # noqa: E402
from lwsbridge.apps.echo_server import build_context  # noqa: E402

WSLOAD = os.environ.get("WSLOAD", "/tmp/wsbench/bin/wsload")
ARGS = {
    "1MiB": ["-c", "4", "-w", "1", "-s", "1M"],
    "latency": ["-c", "1", "-w", "1", "-s", "32"],
    "small": ["-c", "50", "-w", "8", "-s", "32"],
    "4KiB": ["-c", "50", "-w", "8", "-s", "4096"],
    "connrate": ["-m", "connrate", "-c", "8"],
}[SCENARIO]


def main() -> None:
    port = 7000 + os.getpid() % 1000
    ctx = build_context(port, "127.0.0.1", 64 << 20)
    result: dict[str, str] = {}

    def load() -> None:
        time.sleep(0.3)
        url = f"ws://127.0.0.1:{port}/"
        p = subprocess.run(
            [WSLOAD, "-u", url, "-d", "3", "-j", "-q", *ARGS],
            capture_output=True,
            text=True,
            timeout=90,
        )
        result["out"] = p.stdout
        os.kill(os.getpid(), signal.SIGTERM)

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    threading.Thread(target=load, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    prof = cProfile.Profile()
    prof.enable()
    with contextlib.suppress(KeyboardInterrupt):
        serve(ctx, LOOP)
    prof.disable()
    ctx.destroy()
    report = json.loads(result["out"].strip().splitlines()[-1])
    ops = report["cycles"] if SCENARIO == "connrate" else report["msgs"]
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats(os.environ.get("SORT", "tottime")).print_stats(
        int(os.environ.get("TOP", "25"))
    )
    calls = int(re.search(r"(\d+) function calls", out.getvalue()).group(1))  # type: ignore[union-attr]
    what = "connection" if SCENARIO == "connrate" else "message"
    print(out.getvalue())
    print(f"{SCENARIO}: {ops} {what}s, {calls} calls, {calls / max(ops, 1):.1f} calls per {what}")


if __name__ == "__main__":
    main()
