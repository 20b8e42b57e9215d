"""The built-in loop's per-call cost: ``ctx.service(timeout)`` against ``EpollLoop``.

Two echo clients and the echo server on one context, in one thread: each client
sends a small message, the server echoes it, the client sends the next.  Prints
round trips per second for each way of driving the context, best of ``--rounds``;
``--profile`` prints the top of a cProfile of each instead.

usage: python benchmarks/bench_service.py [--rounds 5] [--messages 20000] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from collections.abc import Callable
from typing import Any

from lwsbridge.adapters.epoll_loop import EpollLoop
from lwsbridge.context import ClientConnectInfo, Context, Protocol, Reason, WriteKind

MSG = b"x" * 32


def make(total: int) -> tuple[Context, dict[str, Any]]:
    state = {"n": 0, "total": total}

    def cb(conn: Any, reason: Reason, user: Any, payload: Any) -> int:
        # write() only from WRITEABLE (lws's discipline): ask for it, send the one message
        if reason is Reason.RECEIVE or reason is Reason.CLIENT_ESTABLISHED:
            conn.callback_on_writable()
        elif reason is Reason.CLIENT_RECEIVE:
            state["n"] += 1
            if state["n"] < state["total"]:
                conn.callback_on_writable()
        elif reason is Reason.SERVER_WRITEABLE or reason is Reason.CLIENT_WRITEABLE:
            conn.write(MSG, WriteKind.BINARY)
        return 0

    ctx = Context(
        [Protocol("http", lambda *a: 0), Protocol("echo", cb)], port=0, interface="127.0.0.1"
    )
    for _ in range(2):
        ctx.client_connect(ClientConnectInfo("127.0.0.1", ctx.port, protocol="echo"))
    return ctx, state


def by_service(ctx: Context, state: dict[str, Any]) -> None:
    while state["n"] < state["total"]:
        ctx.service(1000)


def by_epoll(ctx: Context, state: dict[str, Any]) -> None:
    with EpollLoop(ctx) as loop:
        while state["n"] < state["total"]:
            loop.run_once(1000)


WAYS: dict[str, Callable[[Context, dict[str, Any]], None]] = {
    "ctx.service(1000)": by_service,
    "EpollLoop.run_once(1000)": by_epoll,
}


def one(way: Callable[[Context, dict[str, Any]], None], total: int, profile: bool) -> float:
    ctx, state = make(total)
    try:
        prof = cProfile.Profile() if profile else None
        start = time.perf_counter()
        if prof is not None:
            prof.enable()
        way(ctx, state)
        if prof is not None:
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(14)
        return state["n"] / (time.perf_counter() - start)
    finally:
        ctx.destroy()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    best: dict[str, float] = {}
    for _ in range(1 if a.profile else a.rounds):
        for name, way in WAYS.items():  # interleaved: machine noise hits all alike
            best[name] = max(best.get(name, 0.0), one(way, a.messages, a.profile))
    for name, rate in best.items():
        print(f"{name:32s} {rate:10.0f} round trips/s")


if __name__ == "__main__":
    main()
