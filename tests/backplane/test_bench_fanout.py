"""``benchmarks/bench_fanout.py`` (issue 16 item 5), sized to seconds so that it cannot rot.

Every setup runs with a few hundred subscribers on loopback, against the real
redis-server and the real ``lwsbridge-zmq-proxy`` of the backplane fixtures: each
message of the rate and flood phases must reach every subscriber, in order, none
twice.  The figures (messages per second, latency, 1 -> 2 worker scaling) are the
benchmark's business: printed here, never asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support.redisserver import RedisServer
from support.zmqproxy import ZmqProxy

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
SUBS = 200


def test_bench_fanout_smoke(redis: RedisServer, proxy: ZmqProxy) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "bench_fanout.py",
            "--subs",
            str(SUBS),
            "--duration",
            "1",
            "--flood",
            "1",
            "--redis",
            redis.url,
            "--zmq",
            proxy.url,
            "--json",
        ],
        cwd=BENCH,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    results = {r["setup"]: r for r in report["results"]}
    assert set(results) == {"none", "redis1", "redis2", "zmq1", "zmq2"}
    for name, r in results.items():
        assert r["errors"] == [], name
        assert sum(r["per_worker"]) >= SUBS, name  # the subscribers (and the publisher)
        assert len(r["per_worker"]) == r["workers"], name
        assert r["rate_deliveries"] == r["rate_msgs"] * SUBS, name
        assert r["rate_latency_ms"]["samples"] == r["rate_msgs"] * SUBS, name
        assert r["flood_latency_ms"]["samples"] == r["flood_msgs"] * SUBS, name
        print(
            f"{name}: p99 {r['rate_latency_ms']['p99']} ms, "
            f"{r['flood_deliveries_per_s']:,} deliveries/s"
        )
