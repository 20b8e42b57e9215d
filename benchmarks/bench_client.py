"""Client benchmark: lwsbridge's client against websockets' asyncio client, crossed over
two echo servers (websockets 17 and lwsbridge-test-echo).

Run from the repository root::

    python benchmarks/bench_client.py                      # 3 rounds x 3 s, ~1 minute
    python benchmarks/bench_client.py --rounds 1 --duration 1   # quick look
    python benchmarks/bench_client.py --profile            # + cProfile of the lwsbridge client

Every client runs as its own process with N connections, each keeping W binary messages
of S bytes in flight (default 50 x 8 x 32 B, as ``shared/bench``'s "small msg/s"), and
counts the echoes that come back in a window of ``--duration`` seconds after
``--warmup``.  Each echo is checked byte for byte.  Servers are pinned to cpu 0 and
clients to cpu 1 with ``taskset`` when it exists and there are two CPUs.  In each round
every server is started once and both clients are run against it back to back (in
alternating order), so the two clients' rates against one server are measured close in
time; the table shows medians over the rounds and the median of per-round ratios.

The websockets client and server run under ``--ws-python`` (default
``/tmp/wsbench/venv/bin/python``, websockets 17.4 from ``shared/bench/setup.sh``); the
lwsbridge client and server run under this interpreter.  websockets' client is started
with ``compression=None``: lwsbridge offers no permessage-deflate, and neither does
``shared/bench``'s load generator.  Everything talks to 127.0.0.1 only; every process
is stopped by PID; every loop is bounded in time.

Internal roles (used by the driver): ``--role lwsbridge-client|websockets-client``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
HOST = "127.0.0.1"


# ---------------------------------------------------------------------------- clients


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _payload(i: int, size: int) -> bytes:
    base = f"conn-{i:05d}-".encode()
    return (base * (size // len(base) + 1))[:size]


def lwsbridge_client(args: argparse.Namespace) -> dict[str, Any]:
    """N connections x W in flight, one write per CLIENT_WRITEABLE (the lws pattern)."""
    from lwsbridge.context import ClientConnectInfo, Context, Protocol, Reason, WriteKind

    state = {"count": 0, "bad": 0, "errors": [], "closed": 0, "closing": False}
    BINARY = WriteKind.BINARY
    RECEIVE, WRITEABLE = Reason.CLIENT_RECEIVE, Reason.CLIENT_WRITEABLE

    class Sess:
        __slots__ = ("payload", "to_send")

        def __init__(self) -> None:
            self.payload = b""
            self.to_send = 0

    sessions: list[Sess] = []

    def cb(conn: Any, reason: Reason, user: Any, payload: Any) -> int:
        if reason is RECEIVE:
            if payload != user.payload:
                state["bad"] += 1
            state["count"] += 1
            if state["closing"]:
                return 0
            user.to_send += 1
            conn.callback_on_writable()
        elif reason is WRITEABLE:
            if state["closing"]:
                return -1
            if user.to_send:
                user.to_send -= 1
                conn.write(user.payload, BINARY)
                if user.to_send:
                    conn.callback_on_writable()
        elif reason is Reason.CLIENT_ESTABLISHED:
            user.to_send = args.window
            conn.callback_on_writable()
        elif reason is Reason.CLIENT_CONNECTION_ERROR:
            state["errors"].append(str(payload))
        elif reason is Reason.CLOSED:
            state["closed"] += 1
        return 0

    ctx = Context([Protocol("bench", cb)], port=None)
    conns = []
    for i in range(args.conns):
        s = Sess()
        s.payload = _payload(i, args.size)
        sessions.append(s)
        conns.append(ctx.client_connect(ClientConnectInfo(HOST, args.port, "/", user=s)))
    t_start = time.monotonic()
    deadline = t_start + args.warmup + args.duration + 30
    prof = None
    try:
        # connect, then warm up
        warm_end = t_start + args.warmup
        while time.monotonic() < warm_end:
            ctx.service(10)
        if args.profile:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        c0, cpu0, t0 = state["count"], _cpu(), time.monotonic()
        end = t0 + args.duration
        while time.monotonic() < end and time.monotonic() < deadline:
            ctx.service(10)
        c1, cpu1, t1 = state["count"], _cpu(), time.monotonic()
        if prof is not None:
            prof.disable()
        # close every connection (1000), bounded
        state["closing"] = True
        for c in conns:
            c.callback_on_writable()
        close_end = time.monotonic() + 3
        while state["closed"] + len(state["errors"]) < args.conns and time.monotonic() < close_end:
            ctx.service(10)
    finally:
        ctx.destroy()
    if prof is not None:
        import io
        import pstats

        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(25)
        print(out.getvalue(), file=sys.stderr)
    return {
        "messages": c1 - c0,
        "seconds": t1 - t0,
        "rate": (c1 - c0) / (t1 - t0),
        "cpu": (cpu1 - cpu0) / (t1 - t0),
        "bad": state["bad"],
        "errors": state["errors"][:5],
        "closed": state["closed"],
    }


def websockets_client(args: argparse.Namespace) -> dict[str, Any]:
    """websockets' asyncio client: per connection, W sends, then recv/send."""
    import asyncio

    from websockets.asyncio.client import connect

    state = {"count": 0, "bad": 0, "errors": []}
    url = f"ws://{HOST}:{args.port}/"

    async def one(i: int, stop: asyncio.Event, ready: list[int]) -> None:
        payload = _payload(i, args.size)
        try:
            async with connect(url, compression=None, max_size=None) as ws:
                ready.append(i)
                for _ in range(args.window):
                    await ws.send(payload)
                while not stop.is_set():
                    msg = await ws.recv()
                    if msg != payload:
                        state["bad"] += 1
                    state["count"] += 1
                    await ws.send(payload)
        except Exception as exc:
            if not stop.is_set():
                state["errors"].append(repr(exc))

    async def main() -> dict[str, Any]:
        stop = asyncio.Event()
        ready: list[int] = []
        tasks = [asyncio.create_task(one(i, stop, ready)) for i in range(args.conns)]
        await asyncio.sleep(args.warmup)
        c0, cpu0, t0 = state["count"], _cpu(), time.monotonic()
        await asyncio.sleep(args.duration)
        c1, cpu1, t1 = state["count"], _cpu(), time.monotonic()
        stop.set()
        _done, pending = await asyncio.wait(tasks, timeout=5)
        for t in pending:
            t.cancel()
        return {
            "messages": c1 - c0,
            "seconds": t1 - t0,
            "rate": (c1 - c0) / (t1 - t0),
            "cpu": (cpu1 - cpu0) / (t1 - t0),
            "bad": state["bad"],
            "errors": state["errors"][:5],
            "closed": len(ready),
        }

    return asyncio.run(main())


# ---------------------------------------------------------------------------- driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _pin(cpu: int) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(cpu)]
    return []


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=3)


def _wait_port(proc: subprocess.Popen[bytes], port: int, timeout: float = 10) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port} within {timeout} s")


def _proc_cpu(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (0 where /proc is missing)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _lwsbridge_echo_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "lwsbridge-test-echo"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "lwsbridge.apps.echo_server"]


def server_cmd(name: str, port: int, ws_python: str) -> list[str]:
    if name == "websockets":
        script = Path(os.environ.get("LWSBRIDGE_SHARED", REPO.parent / "shared"))
        return [ws_python, str(script / "bench" / "servers" / "ws_websockets.py"), str(port)]
    return [*_lwsbridge_echo_cmd(), "-p", str(port), "-i", HOST]


def run_client(
    client: str, port: int, args: argparse.Namespace, profile: bool = False
) -> dict[str, Any]:
    py = sys.executable if client == "lwsbridge" else args.ws_python
    cmd = [
        *_pin(1),
        py,
        str(Path(__file__).resolve()),
        "--role",
        f"{client}-client",
        "--port",
        str(port),
        "--conns",
        str(args.conns),
        "--window",
        str(args.window),
        "--size",
        str(args.size),
        "--duration",
        str(args.duration),
        "--warmup",
        str(args.warmup),
    ]
    if profile:
        cmd.append("--profile")
    limit = args.warmup + args.duration + 60
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=5)
        raise RuntimeError(f"{client} client did not finish within {limit} s:\n{err}") from None
    if proc.returncode != 0:
        raise RuntimeError(f"{client} client exited {proc.returncode}:\n{err[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    if profile:
        result["profile"] = err
    return result


SERVERS = ["websockets", "lwsbridge"]
CLIENTS = ["lwsbridge", "websockets"]


def drive(args: argparse.Namespace) -> int:
    t_begin = time.monotonic()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4 * args.conns + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    profile_text = ""
    for rnd in range(args.rounds):
        servers = SERVERS[rnd % 2 :] + SERVERS[: rnd % 2]
        for server in servers:
            port = _free_port()
            proc = subprocess.Popen(
                [*_pin(0), *server_cmd(server, port, args.ws_python)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                _wait_port(proc, port)
                clients = CLIENTS if rnd % 2 == 0 else CLIENTS[::-1]
                for client in clients:
                    s0, w0 = _proc_cpu(proc.pid), time.monotonic()
                    r = run_client(client, port, args)
                    r["server_cpu"] = (_proc_cpu(proc.pid) - s0) / (time.monotonic() - w0)
                    if r["bad"] or r["errors"] or r["messages"] == 0:
                        raise RuntimeError(f"{client} -> {server}: {r}")
                    results.setdefault((client, server), []).append(r)
                    print(
                        f"round {rnd + 1}: {client:>10} -> {server:<10} "
                        f"{r['rate']:>10,.0f} msg/s  client cpu {100 * r['cpu']:.0f}%  "
                        f"server cpu {100 * r['server_cpu']:.0f}%",
                        file=sys.stderr,
                    )
                if args.profile and rnd == args.rounds - 1:
                    r = run_client("lwsbridge", port, args, profile=True)
                    profile_text += f"\n### cProfile: lwsbridge client -> {server}\n\n"
                    profile_text += r["profile"]
                if proc.poll() is not None:
                    raise RuntimeError(f"{server} server died with {proc.returncode}")
            finally:
                _stop(proc)
    print_table(args, results, time.monotonic() - t_begin)
    if profile_text:
        print(profile_text)
    ok = True
    for server in SERVERS:
        ratio = _ratio(results, server)
        if ratio < 1.0:
            ok = False
            print(
                f"NOTE: lwsbridge client is slower than websockets' against {server} "
                f"({ratio:.2f}x); run with --profile",
                file=sys.stderr,
            )
    return 0 if ok or not args.check else 1


def _ratio(results: dict[tuple[str, str], list[dict[str, Any]]], server: str) -> float:
    a = results[("lwsbridge", server)]
    b = results[("websockets", server)]
    return statistics.median(x["rate"] / y["rate"] for x, y in zip(a, b, strict=True))


def print_table(
    args: argparse.Namespace,
    results: dict[tuple[str, str], list[dict[str, Any]]],
    wall: float,
) -> None:
    try:
        ws_version = subprocess.run(
            [args.ws_python, "-c", "import websockets; print(websockets.__version__)"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        ws_version = "?"
    pinned = "server cpu 0, client cpu 1 (taskset)" if _pin(0) else "not pinned"
    print(f"# lwsbridge client benchmark ({datetime.date.today().isoformat()})\n")
    print(
        f"- {args.conns} connections x {args.window} binary messages of {args.size} B in "
        f"flight; {args.rounds} rounds x {args.duration:g} s (+{args.warmup:g} s warmup); "
        f"{pinned}; wall time {wall:.0f} s"
    )
    print(
        f"- Python {platform.python_version()}, websockets {ws_version}, "
        f"{os.cpu_count()} CPUs, {platform.machine()}\n"
    )
    print(
        "| client | server | msg/s (median) | min | max | client CPU | server CPU "
        "| lwsbridge / websockets |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for server in SERVERS:
        for client in CLIENTS:
            rs = results[(client, server)]
            rates = [r["rate"] for r in rs]
            cpu = statistics.median(r["cpu"] for r in rs)
            scpu = statistics.median(r["server_cpu"] for r in rs)
            ratio = f"**{_ratio(results, server):.2f}**" if client == "lwsbridge" else ""
            print(
                f"| {client} | {server} | {statistics.median(rates):,.0f} | "
                f"{min(rates):,.0f} | {max(rates):,.0f} | {100 * cpu:.0f}% | {100 * scpu:.0f}% "
                f"| {ratio} |"
            )
    print()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--role", choices=["lwsbridge-client", "websockets-client"], default=None)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("-c", "--conns", type=int, default=50)
    p.add_argument("-w", "--window", type=int, default=8)
    p.add_argument("-s", "--size", type=int, default=32)
    p.add_argument("-d", "--duration", type=float, default=3.0)
    p.add_argument("-a", "--warmup", type=float, default=0.5)
    p.add_argument("-r", "--rounds", type=int, default=3)
    p.add_argument("--ws-python", default="/tmp/wsbench/venv/bin/python")
    p.add_argument(
        "--profile",
        action="store_true",
        help="also profile the lwsbridge client (cProfile, last round) and print the top",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if the lwsbridge client is slower than websockets' against a server",
    )
    args = p.parse_args(argv)
    if args.role == "lwsbridge-client":
        print(json.dumps(lwsbridge_client(args)))
        return 0
    if args.role == "websockets-client":
        print(json.dumps(websockets_client(args)))
        return 0
    if not os.path.exists(args.ws_python):
        print(f"{args.ws_python} not found: run shared/bench/setup.sh", file=sys.stderr)
        return 2
    return drive(args)


if __name__ == "__main__":
    raise SystemExit(main())
