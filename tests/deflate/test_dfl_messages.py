"""Compressed messages through lwsbridge-test-echo over real sockets.

Round trips of text and binary messages 0..1 MiB (websockets' client, compression on,
with and without context takeover), fragmented compressed messages (websockets'
fragments, and raw frames splitting one deflate stream at arbitrary bytes), the
decompression bomb (close 1009, server memory stays low) and inflate output held back
and delivered by forced service, with no further client data.
"""

from __future__ import annotations

import random
import time
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from dflutil import (
    BINARY,
    CONT,
    TEXT,
    RawDeflateClient,
    compress,
    frame,
    payload,
    proc_status,
    prose,
    run,
)
from support.procs import Server, run_server
from websockets.asyncio.client import connect
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

SIZES = [0, 1, 125, 126, 4096, 65535, 65536, 256 * 1024, 256 * 1024 + 1, 1 << 20]
MODES = {
    "takeover": {},
    "no_takeover": {"server_no_context_takeover": True, "client_no_context_takeover": True},
    "small_windows": {"server_max_window_bits": 9, "client_max_window_bits": 9},
}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("kind", ["text", "binary", "random"])
def test_round_trips(echo: Server, mode: str, kind: str) -> None:
    msgs: list[str | bytes] = [payload(kind, n, seed=n) for n in SIZES]
    if kind == "text":
        msgs.append("aé€😀" * 5000)  # multi-byte UTF-8 across inflate chunks
    factory = ClientPerMessageDeflateFactory(**MODES[mode])

    async def main() -> list[Any]:
        async with connect(
            echo.ws_url, max_size=None, ping_interval=None, compression=None, extensions=[factory]
        ) as ws:
            assert ws.protocol.extensions, "permessage-deflate not negotiated"
            got = []
            for m in msgs:  # one at a time, then all in flight
                await ws.send(m)
                got.append(await ws.recv())
            for m in msgs:
                await ws.send(m)
            for _ in msgs:
                got.append(await ws.recv())
            return got

    got = run(main, 30)
    assert len(got) == 2 * len(msgs)
    for i, g in enumerate(got):
        m = msgs[i % len(msgs)]
        assert type(g) is type(m) and g == m, f"message {i} ({len(m)} bytes) differs"


def _fragments(data: str | bytes, sizes: list[int]) -> Iterator[str | bytes]:
    i = 0
    for n in sizes:
        yield data[i : i + n]
        i += n
    yield data[i:]


@pytest.mark.parametrize("mode", ["takeover", "no_takeover"])
def test_fragmented_websockets(echo: Server, mode: str) -> None:
    """websockets sends each fragment compressed and sync-flushed; RSV1 on the first."""
    cases: list[tuple[str | bytes, list[int]]] = [
        (prose(1000, 1), [1, 0, 10, 100]),
        (prose(300_000, 2).encode(), [100_000, 0, 150_000]),
        ("é" * 200_000, [1, 99_999, 50_000]),
        (random.Random(3).randbytes(600_000), [262_144, 262_145]),
        (b"", [0, 0]),
    ]
    factory = ClientPerMessageDeflateFactory(**MODES[mode])

    async def main() -> list[Any]:
        async with connect(
            echo.ws_url, max_size=None, ping_interval=None, compression=None, extensions=[factory]
        ) as ws:
            got = []
            for data, sizes in cases:
                await ws.send(_fragments(data, sizes))
                got.append(await ws.recv())
                await ws.send(data)  # and whole, on the same compression context
                got.append(await ws.recv())
            return got

    got = run(main, 30)
    assert got == [d for d, _s in cases for _ in (0, 1)]


@pytest.mark.parametrize("split", [1, 7, 4096, "random"])
def test_fragmented_raw_split_stream(echo: Server, split: int | str) -> None:
    """One deflate stream cut at arbitrary bytes into frames (RSV1 on the first only)."""
    c = RawDeflateClient(echo.port, "permessage-deflate; client_no_context_takeover")
    try:
        rnd = random.Random(11)
        for n in (3000, 300_000):
            msg = prose(n, n).encode()
            z = compress(msg)
            if split == 1 and n > 3000:
                continue  # one frame per byte: keep it short
            pieces: list[bytes] = []
            i = 0
            while i < len(z):
                step = rnd.randrange(1, 5000) if split == "random" else int(split)
                pieces.append(z[i : i + step])
                i += step
            pieces.append(b"")  # an empty final continuation
            out = b"".join(
                frame(
                    TEXT if k == 0 else CONT,
                    p,
                    fin=k == len(pieces) - 1,
                    rsv1=k == 0,
                )
                for k, p in enumerate(pieces)
            )
            c.send_raw(out)
            op, data, compressed = c.recv_message()
            assert (op, compressed) == (TEXT, True)
            assert data == msg
    finally:
        c.close()


def test_interleaved_control_frames_in_compressed_message(echo: Server) -> None:
    c = RawDeflateClient(echo.port, "permessage-deflate")
    try:
        msg = prose(50_000, 5).encode()
        z = compress(msg)
        half = len(z) // 2
        c.send_raw(
            frame(BINARY, z[:half], fin=False, rsv1=True)
            + frame(0x9, b"ping!")
            + frame(CONT, z[half:])
        )
        op, _fin, _rsv1, data = c.recv_frame()
        assert (op, data) == (0xA, b"ping!")
        assert c.recv_message() == (BINARY, msg, True)
    finally:
        c.close()


# ---------------------------------------------------------------------------- limits


@pytest.fixture(scope="module")
def echo_1mib(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """lwsbridge-test-echo with max_message_size 1 MiB."""
    with run_server(
        "lwsbridge-test-echo", tmp_path_factory.mktemp("e1"), "--max-size", str(1 << 20)
    ) as srv:
        yield srv
        srv.assert_alive()


def _wait_rss_settled(pid: int) -> dict[str, int]:
    time.sleep(0.2)
    return proc_status(pid)


@pytest.mark.parametrize("fragmented", [False, True])
def test_decompression_bomb(echo_1mib: Server, fragmented: bool) -> None:
    """16 MiB of zeros in ~16 KiB: close 1009, and the server never holds the 16 MiB."""
    pid = echo_1mib.proc.pid
    # a legitimate message first, so that the baseline includes the zlib objects
    c = RawDeflateClient(echo_1mib.port)
    c.send_raw(frame(BINARY, compress(prose(200_000).encode()), rsv1=True))
    assert c.recv_message()[1] == prose(200_000).encode()
    c.close()
    before = _wait_rss_settled(pid)
    bomb = compress(bytes(16 << 20), level=9)
    assert len(bomb) < 20_000
    c = RawDeflateClient(echo_1mib.port)
    try:
        if fragmented:
            k = len(bomb) // 3
            c.send_raw(
                frame(BINARY, bomb[:k], fin=False, rsv1=True)
                + frame(CONT, bomb[k : 2 * k], fin=False)
                + frame(CONT, bomb[2 * k :])
            )
        else:
            c.send_raw(frame(BINARY, bomb, rsv1=True))
        assert c.close_code() == 1009
    finally:
        c.close()
    after = proc_status(pid)
    grown = after["VmHWM"] - before["VmHWM"]
    # 1 MiB allowance + one 256 KiB inflate piece + echo-app parts: far below 16 MiB
    assert grown < 6 * 1024, f"server peak RSS grew by {grown} kB (before {before}, after {after})"
    # the server still serves
    c = RawDeflateClient(echo_1mib.port)
    try:
        c.send_raw(frame(TEXT, compress(b"still here"), rsv1=True))
        assert c.recv_message() == (TEXT, b"still here", True)
    finally:
        c.close()


def test_just_under_and_over_limit(echo_1mib: Server) -> None:
    c = RawDeflateClient(echo_1mib.port)
    try:
        ok = bytes(1 << 20)
        c.send_raw(frame(BINARY, compress(ok), rsv1=True))
        assert c.recv_message() == (BINARY, ok, True)
        c.send_raw(frame(BINARY, compress(bytes((1 << 20) + 1)), rsv1=True))
        assert c.close_code() == 1009
    finally:
        c.close()


@pytest.mark.parametrize("size_mib", [3, 9])
def test_forced_service_delivers_held_back_output(echo: Server, size_mib: int) -> None:
    """One small compressed frame that inflates to several MiB (many 256 KiB pieces) is
    the LAST thing the client sends: all of it must come back with no further input."""
    msg = (prose(16 * 1024, 7).encode() * (64 * size_mib))[: size_mib << 20]
    z = compress(msg, level=9)
    assert len(z) < (size_mib << 20) // 50  # arrives in one or two reads
    c = RawDeflateClient(echo.port, "permessage-deflate")
    try:
        c.send_raw(frame(BINARY, z, rsv1=True))
        # nothing else is sent until the whole echo has arrived
        c.sock.settimeout(10)
        op, data, compressed = c.recv_message()
        assert (op, compressed, len(data)) == (BINARY, True, len(msg))
        assert data == msg
        # and a second time, in a text message with the tail in its own frame
        c.send_raw(frame(TEXT, z, fin=False, rsv1=True) + frame(CONT, b""))
        assert c.recv_message() == (TEXT, msg, True)
    finally:
        c.close()


def test_bad_compressed_data_closes_1007(echo: Server) -> None:
    c = RawDeflateClient(echo.port, "permessage-deflate")
    try:
        c.send_raw(frame(BINARY, b"\xff\xff\xff\xff garbage", rsv1=True))
        assert c.close_code() == 1007
    finally:
        c.close()


def test_rsv1_without_negotiation_closes_1002(echo: Server) -> None:
    c = RawDeflateClient(echo.port, None)
    try:
        assert c.extensions is None
        c.send_raw(frame(BINARY, compress(b"hello"), rsv1=True))
        assert c.close_code() == 1002
    finally:
        c.close()


def test_rsv1_on_continuation_closes_1002(echo: Server) -> None:
    c = RawDeflateClient(echo.port, "permessage-deflate")
    try:
        z = compress(b"hello hello hello")
        c.send_raw(frame(BINARY, z[:3], fin=False, rsv1=True) + frame(CONT, z[3:], rsv1=True))
        assert c.close_code() == 1002
    finally:
        c.close()


def test_zlib_level_sanity() -> None:
    assert zlib.ZLIB_RUNTIME_VERSION
