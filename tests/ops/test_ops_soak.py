"""Soak, CI-sized (issue 13 item 3): ``benchmarks/soak.py`` with the same checks.

20,000 cycles of connect -> upgrade -> echo -> close on the built-in loop, 8 in flight,
against a server subprocess that counts ESTABLISHED and CLOSED: the server's RSS stays
within 5 MB of its value after the warm-up tenth, its fd count returns to the
baseline, and every connection gets exactly one ESTABLISHED and one CLOSED.  50,000
cycles (the issue's size) take about 70 s on the loaded 2-core machine, so this run
is the part that fits in about 30 s; benchmarks/README.md has the 1,000,000-cycle
figures.  CPU per cycle is reported, not asserted (a timing figure: the benchmark
holds it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
CYCLES = 20_000


def test_soak_ci_sized() -> None:
    out = subprocess.run(
        [sys.executable, "soak.py", "--cycles", str(CYCLES), "--cpu-ratio", "0", "--json"],
        cwd=BENCH,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["failed"] == []
    assert r["done"] == CYCLES and r["errors"] == 0
    assert r["rss_growth_kb"] <= 5 * 1024
    assert r["fds_after"] == r["fds_before"]
    assert r["established"] == r["closed"] == CYCLES + 1  # and the warm-up cycle
    assert r["unmatched"] == 0 and r["live"] == 0
    print(f"soak: {CYCLES} cycles, {r['cycles_per_s']:.0f}/s, CPU ratio {r['cpu_ratio']:.2f}")
