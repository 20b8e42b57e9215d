"""Micro-benchmarks of the sans-IO core against wsproto and websockets' sans-IO layer.

Run from the repository root (peers: ``pip install wsproto websockets h11``)::

    python benchmarks/bench_core.py            # full run, ~1-2 minutes
    python benchmarks/bench_core.py --quick    # smoke run, a few seconds

Prints one markdown table.  Every case runs all libraries interleaved, round after
round, so that a noisy machine slows them all alike; the figure shown is the median
over the rounds of the time per operation, and ratios are taken between medians of
the same run.  ``vs websockets`` is ``time(library) / time(websockets)``: below 1 is
faster than websockets.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from importlib import metadata

import h11
import websockets.frames
import websockets.utils
import wsproto
import wsproto.events
import wsproto.frame_protocol
from websockets.protocol import State as WsState
from websockets.server import ServerProtocol

import lwsbridge.core.mask as lws_mask
from lwsbridge.core import DataReceived, Role, State, UpgradeRequest, WSConnection
from lwsbridge.core.events import Headers
from lwsbridge.core.handshake import validate_upgrade
from lwsbridge.core.http11 import parse_request_head

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
MASK = b"\x37\xfa\x21\x3d"

# What Chrome sends (12 header fields), permessage-deflate offered but declined by all.
REQUEST = (
    b"GET /chat?room=1 HTTP/1.1\r\n"
    b"Host: example.com:8080\r\n"
    b"Connection: Upgrade\r\n"
    b"Pragma: no-cache\r\n"
    b"Cache-Control: no-cache\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
    b"(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\r\n"
    b"Upgrade: websocket\r\n"
    b"Origin: https://example.com\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Accept-Encoding: gzip, deflate, br, zstd\r\n"
    b"Accept-Language: en-US,en;q=0.9\r\n"
    b"Sec-WebSocket-Key: " + KEY + b"\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    b"\r\n"
)


def masked_frame(payload: bytes, opcode: int = 2) -> bytes:
    """A client->server frame: FIN, ``opcode``, masked with MASK."""
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
    return head + MASK + websockets.utils.apply_mask(payload, MASK)


# ---------------------------------------------------------------- timing


def calibrate(fn: Callable[[], object], target: float) -> int:
    """Calls per round so that one round lasts about ``target`` seconds."""
    number = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        dt = time.perf_counter() - t0
        if dt >= target / 4 or number >= 1 << 22:
            return max(1, int(number * target / max(dt, 1e-9)))
        number *= 4


def bench(cases: dict[str, Callable[[], object]], rounds: int, target: float) -> dict[str, float]:
    """Median seconds per call of each case; the cases run interleaved, round by round."""
    numbers = {name: calibrate(fn, target) for name, fn in cases.items()}
    samples: dict[str, list[float]] = {name: [] for name in cases}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            for name, fn in cases.items():
                number = numbers[name]
                t0 = time.perf_counter()
                for _ in range(number):
                    fn()
                samples[name].append((time.perf_counter() - t0) / number)
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: statistics.median(s) for name, s in samples.items()}


# ---------------------------------------------------------------- receivers in OPEN state


def lws_server() -> WSConnection:
    conn = WSConnection(Role.SERVER, max_message_size=0)
    conn.receive_data(REQUEST)
    assert isinstance(conn.events()[0], UpgradeRequest)
    conn.accept()
    conn.data_to_send()
    conn.events()
    assert conn.state is State.OPEN
    return conn


def websockets_server() -> ServerProtocol:
    proto = ServerProtocol(max_size=None)
    proto.receive_data(REQUEST)
    request = proto.events_received()[0]
    proto.send_response(proto.accept(request))
    proto.data_to_send()
    assert proto.state is WsState.OPEN
    return proto


def wsproto_server() -> wsproto.WSConnection:
    conn = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
    conn.receive_data(REQUEST)
    assert isinstance(next(conn.events()), wsproto.events.Request)
    conn.send(wsproto.events.AcceptConnection())
    return conn


def receivers(data: bytes) -> dict[str, Callable[[], bytes]]:
    """One callable per library: feed ``data``, return the joined payload(s) received."""
    lws = lws_server()
    wsp = wsproto_server()
    fp = wsproto.frame_protocol.FrameProtocol(client=False, extensions=[])
    wss = websockets_server()

    def run_lws() -> bytes:
        lws.receive_data(data)
        return b"".join([e.data for e in lws.events() if type(e) is DataReceived])

    def run_wsproto() -> bytes:
        wsp.receive_data(data)
        return b"".join([bytes(e.data) for e in wsp.events()])

    def run_frame_protocol() -> bytes:
        fp.receive_bytes(data)
        return b"".join([bytes(f.payload) for f in fp.received_frames()])

    def run_websockets() -> bytes:
        wss.receive_data(data)
        return b"".join([f.data for f in wss.events_received()])

    return {
        "lwsbridge": run_lws,
        "wsproto (WSConnection)": run_wsproto,
        "wsproto (FrameProtocol)": run_frame_protocol,
        "websockets": run_websockets,
    }


# ---------------------------------------------------------------- handshakes


def hs_lws() -> bytes:
    conn = WSConnection(Role.SERVER)
    conn.receive_data(REQUEST)
    conn.events()
    conn.accept()
    return b"".join(conn.data_to_send())


def hs_wsproto() -> bytes:
    conn = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
    conn.receive_data(REQUEST)
    next(conn.events())
    return conn.send(wsproto.events.AcceptConnection())


def hs_websockets() -> bytes:
    proto = ServerProtocol()
    proto.receive_data(REQUEST)
    request = proto.events_received()[0]
    proto.send_response(proto.accept(request))
    return b"".join(proto.data_to_send())


def head_own() -> bytes:
    """Our parser: parse the head, then the RFC 6455 §4.2.1 checks."""
    method, _target, version, headers = parse_request_head(REQUEST)
    return validate_upgrade(method, version, headers)[0]


def head_h11() -> bytes:
    """The same on h11: Connection.receive_data + next_event, then the same checks."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(REQUEST)
    event = conn.next_event()
    assert type(event) is h11.Request
    version = (int(event.http_version[:1]), int(event.http_version[2:]))
    headers = Headers(event.headers)  # h11 already lower-cases the names
    return validate_upgrade(event.method.decode("ascii"), version, headers)[0]


# ---------------------------------------------------------------- report


def size_label(size: int) -> str:
    if size >= 1 << 20:
        return f"{size >> 20} MiB"
    if size >= 1024:
        return f"{size >> 10} KiB"
    return f"{size} B"


def fmt_us(seconds: float) -> str:
    us = seconds * 1e6
    if us < 10:
        return f"{us:.2f}"
    if us < 1000:
        return f"{us:.1f}"
    return f"{us:,.0f}"


def fmt_mbs(nbytes: int, seconds: float) -> str:
    mbs = nbytes / seconds / 1e6
    return f"{mbs:,.0f}" if mbs >= 10 else f"{mbs:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few short rounds (smoke test)")
    args = parser.parse_args()
    rounds, target = (5, 0.005) if args.quick else (25, 0.04)

    speedups = websockets.frames.apply_mask is not websockets.utils.apply_mask
    lws_c = lws_mask.apply_mask is not lws_mask.apply_mask_py
    print(f"# lwsbridge core micro-benchmarks ({'quick' if args.quick else 'full'} run)")
    print()
    print(f"- date: {datetime.date.today().isoformat()}")
    print(
        f"- Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.machine()}, {os.cpu_count()} CPUs"
    )
    versions = ", ".join(
        f"{name} {metadata.version(name)}" for name in ("lwsbridge", "wsproto", "websockets", "h11")
    )
    print(f"- {versions}")
    print(f"- websockets.speedups (C apply_mask) loaded: {'yes' if speedups else 'no'}")
    print(f"- lwsbridge.core._speedups (C apply_mask) loaded: {'yes' if lws_c else 'no'}")
    print(f"- {rounds} interleaved rounds of ~{target * 1e3:g} ms per case; medians shown")
    print()
    print("| benchmark | library | µs/op | µs/frame | MB/s | vs websockets |")
    print("|---|---|--:|--:|--:|--:|")

    def rows(
        label: str,
        results: dict[str, float],
        ref: str | None,
        frames: int = 1,
        nbytes: int = 0,
    ) -> None:
        base = results[ref] if ref else None
        for name, t in results.items():
            per_frame = fmt_us(t / frames) if nbytes else ""
            mbs = fmt_mbs(nbytes, t) if nbytes else ""
            ratio = f"{t / base:.2f}" if base else ""
            print(f"| {label} | {name} | {fmt_us(t)} | {per_frame} | {mbs} | {ratio} |")
        sys.stdout.flush()

    # a. parse + unmask of masked client frames, server side, OPEN state.
    for size, count in ((32, 1), (4096, 1), (1 << 20, 1), (32, 100)):
        label = f"recv {count} × {size_label(size)} frame" + (" in one read" if count > 1 else "")
        payload = bytes(range(256)) * (size // 256) if size >= 256 else os.urandom(size)
        data = masked_frame(payload) * count
        cases = receivers(data)
        for name, fn in cases.items():
            got = fn()
            assert got == payload * count, (name, label, len(got))
        rows(label, bench(cases, rounds, target), "websockets", count, size * count)

    # b. opening handshake, server side: request bytes -> 101 response bytes.
    hs = {"lwsbridge": hs_lws, "wsproto": hs_wsproto, "websockets": hs_websockets}
    for name, fn in hs.items():
        assert fn().startswith(b"HTTP/1.1 101 "), name
    rows("handshake: request → 101 bytes", bench(hs, rounds, target), "websockets")

    # b'. the design decision: our HTTP parser versus h11, both + validate_upgrade.
    heads = {"own http11 + validate": head_own, "h11 + validate": head_h11}
    assert head_own() == head_h11() == KEY
    res = bench(heads, rounds, target)
    rows("head parse + validate", res, None)
    own, h = res["own http11 + validate"], res["h11 + validate"]
    print(f"| head parse + validate | ratio h11 / own | {h / own:.2f} |  |  |  |")

    # c. masking.
    mask_fns: dict[str, Callable[[bytes], object]] = {
        "lwsbridge apply_mask" + (" (C)" if lws_c else " (pure Python)"): (
            lambda d: lws_mask.apply_mask(d, MASK)
        ),
        "websockets.utils.apply_mask (pure Python)": (
            lambda d: websockets.utils.apply_mask(d, MASK)
        ),
        "websockets apply_mask" + (" (C speedups)" if speedups else " (pure Python)"): (
            lambda d: websockets.frames.apply_mask(d, MASK)
        ),
        "wsproto XorMaskerSimple": (
            lambda d: wsproto.frame_protocol.XorMaskerSimple(MASK).process(d)
        ),
    }
    ref_name = next(n for n in mask_fns if n.startswith("websockets apply_mask"))
    for size in (32, 4096, 1 << 20):
        data = os.urandom(size)
        expected = websockets.utils.apply_mask(data, MASK)
        cases = {}
        for name, fn in mask_fns.items():
            cases[name] = lambda d=data, f=fn: f(d)
            assert bytes(cases[name]()) == expected, name
        rows(f"mask {size_label(size)}", bench(cases, rounds, target), ref_name, 1, size)


if __name__ == "__main__":
    main()
