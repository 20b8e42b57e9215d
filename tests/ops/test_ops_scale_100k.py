"""``benchmarks/scale_100k.py`` (issue 16 item 6), sized to seconds so that it cannot rot.

A few hundred connections over two workers, from two source addresses (bound before
connect), with a one-second heartbeat: every connection opens, every heartbeat comes
back matching, the workers' memory is measured.  The C100K goals (memory per
connection, p99) are the benchmark's business: printed, never asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
CONNS = 400


def test_scale_100k_smoke() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "scale_100k.py",
            "--conns",
            str(CONNS),
            "--sources",
            "2",
            "--period",
            "1",
            "--duration",
            "2",
            "--json",
        ],
        cwd=BENCH,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["errors"] == []
    assert len(r["per_worker_fds"]) == 2
    # every connection sent a heartbeat once a second for two seconds, and it came back
    assert r["heartbeats"]["received"] == r["heartbeats"]["sent"] >= CONNS
    assert r["rss_kib"]["open"] > 0
    print(
        f"scale_100k smoke: {r['kib_per_conn']} KiB per connection, "
        f"RTT p99 {r['rtt_ms']['p99']} ms, opened in {r['open_s']} s"
    )
