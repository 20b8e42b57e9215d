"""TLS benchmark: wss echo and TLS connection setup, websockets 17 against lwsbridge-test-echo.

Run from the repository root::

    python benchmarks/bench_tls.py                  # 3 rounds, about a minute
    python benchmarks/bench_tls.py --rounds 1       # quick look
    python benchmarks/bench_tls.py --profile        # + cProfile of lwsbridge-test-echo --ssl

Both servers use the same RSA-2048 self-signed certificate (made by ``openssl`` in a
temporary directory) and the same client: lwsbridge's client (``ClientTLS(ca_file=...)``,
one process, pinned to cpu 1 while the server is pinned to cpu 0 with ``taskset``).

- **wss echo**: N connections x W binary messages of S bytes in flight (default
  50 x 8 x 32 B); echoes counted (and checked byte for byte) over ``--duration`` s after
  ``--warmup``.
- **setup**: 8 concurrent loops of connect + TLS handshake + WebSocket upgrade + close
  (1000, answered), for ``--setup-duration`` s; completed connections per second.

The websockets server is ``benchmarks/ws_tls_server.py`` under ``--ws-python`` (default
``/tmp/wsbench/venv/bin/python``, websockets 17.4).  Everything talks to 127.0.0.1; every
process is stopped by PID; every loop is bounded in time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_client import (  # noqa: E402
    _cpu,
    _free_port,
    _lwsbridge_echo_cmd,
    _payload,
    _pin,
    _proc_cpu,
    _stop,
    _wait_port,
)

HOST = "127.0.0.1"
SERVERS = ["websockets", "lwsbridge"]


# ---------------------------------------------------------------------------- client roles


def echo_client(args: argparse.Namespace) -> dict[str, Any]:
    from lwsbridge.context import ClientConnectInfo, Context, Protocol, Reason, WriteKind
    from lwsbridge.tls import ClientTLS

    state: dict[str, Any] = {"count": 0, "bad": 0, "errors": [], "closed": 0, "closing": False}
    BINARY = WriteKind.BINARY
    RECEIVE, WRITEABLE = Reason.CLIENT_RECEIVE, Reason.CLIENT_WRITEABLE

    class Sess:
        __slots__ = ("payload", "to_send")

        def __init__(self, payload: bytes) -> None:
            self.payload = payload
            self.to_send = 0

    def cb(conn: Any, reason: Reason, user: Any, payload: Any) -> int:
        if reason is RECEIVE:
            if payload != user.payload:
                state["bad"] += 1
            state["count"] += 1
            if not state["closing"]:
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

    tls = ClientTLS(ca_file=args.ca)
    ctx = Context([Protocol("bench", cb)], port=None)
    conns = [
        ctx.client_connect(
            ClientConnectInfo(HOST, args.port, "/", ssl=tls, user=Sess(_payload(i, args.size)))
        )
        for i in range(args.conns)
    ]
    try:
        warm_end = time.monotonic() + args.warmup
        while time.monotonic() < warm_end:
            ctx.service(10)
        c0, cpu0, t0 = state["count"], _cpu(), time.monotonic()
        end = t0 + args.duration
        while time.monotonic() < end:
            ctx.service(10)
        c1, cpu1, t1 = state["count"], _cpu(), time.monotonic()
        state["closing"] = True
        for c in conns:
            c.callback_on_writable()
        close_end = time.monotonic() + 3
        while state["closed"] + len(state["errors"]) < args.conns and time.monotonic() < close_end:
            ctx.service(10)
    finally:
        ctx.destroy()
    return {
        "rate": (c1 - c0) / (t1 - t0),
        "messages": c1 - c0,
        "cpu": (cpu1 - cpu0) / (t1 - t0),
        "bad": state["bad"],
        "errors": state["errors"][:5],
    }


def setup_client(args: argparse.Namespace) -> dict[str, Any]:
    from lwsbridge.context import ClientConnectInfo, Context, Protocol, Reason
    from lwsbridge.tls import ClientTLS

    state: dict[str, Any] = {"done": 0, "errors": [], "stop": False}
    tls = ClientTLS(ca_file=args.ca)
    ctx: Context

    def start() -> None:
        ctx.client_connect(ClientConnectInfo(HOST, args.port, "/", ssl=tls))

    def cb(conn: Any, reason: Reason, user: Any, payload: Any) -> int:
        if reason is Reason.CLIENT_ESTABLISHED:
            return -1  # close (1000) at once
        if reason is Reason.CLIENT_CONNECTION_ERROR:
            state["errors"].append(str(payload))
            if not state["stop"]:
                start()
        elif reason is Reason.CLOSED:
            state["done"] += 1
            if not state["stop"]:
                start()
        return 0

    ctx = Context([Protocol("bench", cb)], port=None)
    try:
        for _ in range(args.concurrency):
            start()
        warm_end = time.monotonic() + args.warmup
        while time.monotonic() < warm_end:
            ctx.service(10)
        c0, cpu0, t0 = state["done"], _cpu(), time.monotonic()
        end = t0 + args.setup_duration
        while time.monotonic() < end:
            ctx.service(10)
        c1, cpu1, t1 = state["done"], _cpu(), time.monotonic()
        state["stop"] = True
        drain_end = time.monotonic() + 3
        while ctx.fds and len(ctx.fds) > 1 and time.monotonic() < drain_end:
            ctx.service(10)
    finally:
        ctx.destroy()
    return {
        "rate": (c1 - c0) / (t1 - t0),
        "connections": c1 - c0,
        "cpu": (cpu1 - cpu0) / (t1 - t0),
        "bad": 0,
        "errors": state["errors"][:5],
    }


# ---------------------------------------------------------------------------- driver


def make_cert(d: Path) -> tuple[str, str]:
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "30",
            "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return str(cert), str(key)


def server_cmd(name: str, port: int, cert: str, key: str, args: argparse.Namespace) -> list[str]:
    if name == "websockets":
        return [args.ws_python, str(HERE / "ws_tls_server.py"), str(port), cert, key]
    cmd = [*_lwsbridge_echo_cmd(), "-p", str(port), "-i", HOST, "--ssl", "-C", cert, "-K", key]
    return [*cmd, "-d", "3"]


def run_role(role: str, port: int, cert: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        *_pin(1),
        sys.executable,
        str(Path(__file__).resolve()),
        "--role",
        role,
        "--port",
        str(port),
        "--ca",
        cert,
        "--conns",
        str(args.conns),
        "--window",
        str(args.window),
        "--size",
        str(args.size),
        "--duration",
        str(args.duration),
        "--setup-duration",
        str(args.setup_duration),
        "--concurrency",
        str(args.concurrency),
        "--warmup",
        str(args.warmup),
    ]
    limit = args.warmup + max(args.duration, args.setup_duration) + 60
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit)
    if proc.returncode != 0:
        raise RuntimeError(f"{role} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def drive(args: argparse.Namespace) -> int:
    t_begin = time.monotonic()
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    profile_text = ""
    with tempfile.TemporaryDirectory(prefix="bench-tls-") as tmp:
        cert, key = make_cert(Path(tmp))
        for rnd in range(args.rounds):
            order = SERVERS if rnd % 2 == 0 else SERVERS[::-1]
            for server in order:
                port = _free_port()
                cmd = server_cmd(server, port, cert, key, args)
                proc = subprocess.Popen(
                    [*_pin(0), *cmd],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                try:
                    _wait_port(proc, port)
                    for kind, role in (("echo", "echo-client"), ("setup", "setup-client")):
                        s0, w0 = _proc_cpu(proc.pid), time.monotonic()
                        r = run_role(role, port, cert, args)
                        r["server_cpu"] = (_proc_cpu(proc.pid) - s0) / (time.monotonic() - w0)
                        if r["bad"] or r["errors"] or r["rate"] == 0:
                            raise RuntimeError(f"{kind} -> {server}: {r}")
                        results.setdefault((kind, server), []).append(r)
                        print(
                            f"round {rnd + 1}: {kind:>5} -> {server:<10} {r['rate']:>9,.0f}/s "
                            f"client cpu {100 * r['cpu']:.0f}% "
                            f"server cpu {100 * r['server_cpu']:.0f}%",
                            file=sys.stderr,
                        )
                    if proc.poll() is not None:
                        raise RuntimeError(f"{server} server died with {proc.returncode}")
                finally:
                    _stop(proc)
        if args.profile:
            profile_text = profile_server(cert, key, args, Path(tmp) / "server.prof")
    print_table(args, results, time.monotonic() - t_begin)
    if profile_text:
        print("### cProfile: lwsbridge-test-echo --ssl (extra echo run, not in the table)\n")
        print(profile_text)
    ratio = _ratio(results, "echo")
    if ratio < 1.0:
        print(
            f"NOTE: lwsbridge wss echo is slower than websockets' ({ratio:.2f}x)",
            file=sys.stderr,
        )
        return 1 if args.check else 0
    return 0


def profile_server(cert: str, key: str, args: argparse.Namespace, prof_path: Path) -> str:
    """One extra echo run against lwsbridge-test-echo under cProfile (not in the table)."""
    import io
    import pstats

    port = _free_port()
    cmd = server_cmd("lwsbridge", port, cert, key, args)
    cmd = [sys.executable, "-m", "cProfile", "-o", str(prof_path), *_echo_module(cmd)]
    proc = subprocess.Popen(
        [*_pin(0), *cmd],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(proc, port)
        r = run_role("echo-client", port, cert, args)
        print(f"profiled run: {r['rate']:,.0f} msg/s (under cProfile)", file=sys.stderr)
    finally:
        _stop(proc)  # SIGTERM: the app returns from main and cProfile writes its file
    if not prof_path.exists():
        return "(no profile written)\n"
    out = io.StringIO()
    pstats.Stats(str(prof_path), stream=out).sort_stats("tottime").print_stats(25)
    return out.getvalue()


def _echo_module(cmd: list[str]) -> list[str]:
    """lwsbridge-test-echo's arguments as ``-m lwsbridge.apps.echo_server ...`` (for cProfile)."""
    rest = cmd[3:] if cmd[1] == "-m" else cmd[1:]
    return ["-m", "lwsbridge.apps.echo_server", *rest]


def _ratio(results: dict[tuple[str, str], list[dict[str, Any]]], kind: str) -> float:
    a, b = results[(kind, "lwsbridge")], results[(kind, "websockets")]
    return statistics.median(x["rate"] / y["rate"] for x, y in zip(a, b, strict=True))


def print_table(
    args: argparse.Namespace, results: dict[tuple[str, str], list[dict[str, Any]]], wall: float
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
    print(f"# lwsbridge TLS benchmark ({datetime.date.today().isoformat()})\n")
    print(
        f"- wss echo: {args.conns} connections x {args.window} binary messages of "
        f"{args.size} B in flight, {args.duration:g} s; setup: {args.concurrency} concurrent "
        f"connect + TLS + upgrade + close, {args.setup_duration:g} s; {args.rounds} rounds "
        f"(+{args.warmup:g} s warmup each); {pinned}; wall time {wall:.0f} s"
    )
    print(
        f"- client: lwsbridge (ClientTLS, RSA-2048 self-signed as CA); Python "
        f"{platform.python_version()}, {ssl.OPENSSL_VERSION}, websockets {ws_version}, "
        f"{os.cpu_count()} CPUs, {platform.machine()}\n"
    )
    print(
        "| benchmark | server | rate/s (median) | min | max | server CPU | lwsbridge / websockets |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for kind, label in (("echo", "wss echo, msg/s"), ("setup", "TLS setup, conn/s")):
        for server in SERVERS:
            rs = results[(kind, server)]
            rates = [r["rate"] for r in rs]
            scpu = statistics.median(r["server_cpu"] for r in rs)
            ratio = f"**{_ratio(results, kind):.2f}**" if server == "lwsbridge" else ""
            print(
                f"| {label} | {server} | {statistics.median(rates):,.0f} | {min(rates):,.0f} | "
                f"{max(rates):,.0f} | {100 * scpu:.0f}% | {ratio} |"
            )
    print()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--role", choices=["echo-client", "setup-client"], default=None)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--ca", default=None)
    p.add_argument("-c", "--conns", type=int, default=50)
    p.add_argument("-w", "--window", type=int, default=8)
    p.add_argument("-s", "--size", type=int, default=32)
    p.add_argument("-d", "--duration", type=float, default=3.0)
    p.add_argument("--setup-duration", type=float, default=2.0)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("-a", "--warmup", type=float, default=1.0)
    p.add_argument("-r", "--rounds", type=int, default=3)
    p.add_argument("--ws-python", default="/tmp/wsbench/venv/bin/python")
    p.add_argument("--profile", action="store_true", help="cProfile the lwsbridge server")
    p.add_argument("--check", action="store_true", help="exit 1 if lwsbridge echo is slower")
    args = p.parse_args(argv)
    if args.role == "echo-client":
        print(json.dumps(echo_client(args)))
        return 0
    if args.role == "setup-client":
        print(json.dumps(setup_client(args)))
        return 0
    if not os.path.exists(args.ws_python):
        print(f"{args.ws_python} not found: run shared/bench/setup.sh", file=sys.stderr)
        return 2
    return drive(args)


if __name__ == "__main__":
    raise SystemExit(main())
