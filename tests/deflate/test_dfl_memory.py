"""Memory per idle connection with permessage-deflate negotiated vs without.

zlib objects are created lazily, on a connection's first compressed message, so an
idle connection with deflate negotiated should cost about what one without does.
Each figure: (server VmRSS with N idle websockets clients open - VmRSS before) / N, on
a fresh lwsbridge-test-echo each.  benchmarks/bench_deflate.py --memory measures more.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from dflutil import proc_status, run
from support.procs import run_server
from websockets.asyncio.client import connect

N = 500


def _idle_kib_per_conn(tmp_path: Path, compression: str | None) -> float:
    tmp_path.mkdir()
    with run_server("lwsbridge-test-echo", tmp_path) as srv:
        pid = srv.proc.pid

        async def main() -> float:
            # warm up: one connection and one message of each kind
            async with connect(srv.ws_url, compression=compression) as ws:
                await ws.send("warm up " * 100)
                await ws.recv()
            await asyncio.sleep(0.2)
            before = proc_status(pid)["VmRSS"]
            conns: list[Any] = []
            for _i in range(0, N, 50):
                conns += await asyncio.gather(
                    *(
                        connect(srv.ws_url, compression=compression, ping_interval=None)
                        for _ in range(50)
                    )
                )
            for ws in conns[:5]:
                assert bool(ws.protocol.extensions) == (compression is not None)
            time.sleep(0.3)  # let the server finish the handshakes
            after = proc_status(pid)["VmRSS"]
            await asyncio.gather(*(ws.close() for ws in conns))
            return (after - before) / N

        kib = run(main, 60)
        srv.assert_alive()
        return kib


def test_idle_connection_memory(tmp_path: Path) -> None:
    plain = _idle_kib_per_conn(tmp_path / "plain", None)
    deflate = _idle_kib_per_conn(tmp_path / "deflate", "deflate")
    print(f"\nKiB per idle connection, N={N}: without deflate {plain:.1f}, with {deflate:.1f}")
    assert deflate < 64, f"{deflate:.1f} KiB per idle deflate connection"
    # no zlib state while idle: within 8 KiB of the plain figure
    assert deflate < plain + 8, (plain, deflate)
