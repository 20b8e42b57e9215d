"""The ``websockets`` library's asyncio client against lwsbridge-test-echo.

No external peer needed (websockets is a test dependency), so these always run.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from websockets.asyncio.client import ClientConnection, connect

T = TypeVar("T")
TIMEOUT = 20.0  # seconds, for each test's whole conversation
SIZES = [0, 125, 126, 65535, 65536, 1 << 20]
MIXED = "aé€😀Zж語𝄞0"  # 1-, 2-, 3- and 4-byte UTF-8 characters


def utf8_text(n: int) -> str:
    """A str whose UTF-8 encoding is exactly ``n`` bytes, mixing character widths."""
    out: list[str] = []
    size = 0
    i = 0
    while True:
        ch = MIXED[i % len(MIXED)]
        w = len(ch.encode())
        if size + w > n:
            break
        out.append(ch)
        size += w
        i += 1
    out.append("x" * (n - size))
    text = "".join(out)
    assert len(text.encode()) == n
    return text


def run(url: str, conversation: Callable[[ClientConnection], Awaitable[T]], **kw: Any) -> T:
    """Connect to ``url``, run ``conversation``, close; all bounded by TIMEOUT."""

    async def main() -> T:
        async with connect(url, max_size=None, open_timeout=5, close_timeout=5, **kw) as ws:
            return await conversation(ws)

    async def bounded() -> T:
        return await asyncio.wait_for(main(), TIMEOUT)

    return asyncio.run(bounded())


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", ["text", "binary"])
def test_echo_sizes(module_echo_server: Any, kind: str, size: int) -> None:
    msg: str | bytes = utf8_text(size) if kind == "text" else os.urandom(size)

    async def talk(ws: ClientConnection) -> str | bytes:
        await ws.send(msg)
        return await ws.recv()

    echo = run(module_echo_server.ws_url, talk)
    assert type(echo) is type(msg)
    assert echo == msg


def test_fragmented_sends(module_echo_server: Any) -> None:
    text = utf8_text(200_000)
    raw = text.encode()
    rng = random.Random(6455)
    cuts = sorted(rng.sample(range(1, len(raw)), 40))
    byte_pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    blob = os.urandom(300_000)

    async def talk(ws: ClientConnection) -> list[str | bytes]:
        got: list[str | bytes] = []
        # str fragments: each one valid UTF-8 on its own
        str_pieces = [text[i : i + 7001] for i in range(0, len(text), 7001)]
        await ws.send(str_pieces)
        got.append(await ws.recv())
        # UTF-8 bytes cut at arbitrary offsets (mid-character), sent as text frames
        await ws.send(byte_pieces, text=True)
        got.append(await ws.recv())
        # binary fragments, including empty ones
        await ws.send([blob[:1], b"", blob[1:100_000], b"", blob[100_000:]])
        got.append(await ws.recv())
        # many tiny text fragments, one character each
        await ws.send(list(MIXED * 50))
        got.append(await ws.recv())

        # an async iterable of fragments
        async def agen() -> Any:
            for i in range(0, len(blob), 4096):
                yield blob[i : i + 4096]
                await asyncio.sleep(0)

        await ws.send(agen())
        got.append(await ws.recv())
        return got

    got = run(module_echo_server.ws_url, talk)
    assert got == [text, text, blob, MIXED * 50, blob]
    assert isinstance(got[1], str)


def test_pipelined_messages_keep_order(module_echo_server: Any) -> None:
    msgs: list[str | bytes] = []
    for i in range(300):
        msgs.append(f"{i} {MIXED * (i % 7)}" if i % 2 else os.urandom(i * 37))

    async def talk(ws: ClientConnection) -> list[str | bytes]:
        async def reader() -> list[str | bytes]:
            return [await ws.recv() for _ in msgs]

        task = asyncio.create_task(reader())
        for m in msgs:
            await ws.send(m)
        return await task

    assert run(module_echo_server.ws_url, talk) == msgs


def test_ping_pong(module_echo_server: Any) -> None:
    async def talk(ws: ClientConnection) -> list[float]:
        latencies = []
        for payload in (b"", b"lwsbridge", os.urandom(125), "ping €"):
            pong = await ws.ping(payload)
            latencies.append(await pong)
        # a ping between the fragments of a message: answered, message still whole
        pongs: list[Awaitable[float]] = []

        async def fragments() -> Any:
            yield b"first half, "
            pongs.append(await ws.ping(b"in-between"))
            yield b"second half"

        await ws.send(fragments())
        assert len(pongs) == 1
        latencies.append(await pongs[0])
        assert await ws.recv() == b"first half, second half"
        return latencies

    latencies = run(module_echo_server.ws_url, talk)
    assert len(latencies) == 5
    assert all(0 <= t < TIMEOUT for t in latencies)


def test_clean_close_1000(module_echo_server: Any) -> None:
    async def talk(ws: ClientConnection) -> ClientConnection:
        await ws.send("last words")
        assert await ws.recv() == "last words"
        await ws.close(1000, "done")
        await ws.wait_closed()
        return ws

    ws = run(module_echo_server.ws_url, talk)
    assert ws.close_code == 1000
    rcvd = ws.protocol.close_rcvd
    sent = ws.protocol.close_sent
    assert sent is not None and sent.code == 1000 and sent.reason == "done"
    assert rcvd is not None and rcvd.code == 1000, rcvd
    assert rcvd.reason == "done", "the reply echoes the reason"
    assert ws.protocol.close_rcvd_then_sent is False


@pytest.mark.parametrize(("code", "reason"), [(1001, ""), (4001, "bye é€ " + "x" * 100)])
def test_close_code_and_reason_echoed(module_echo_server: Any, code: int, reason: str) -> None:
    async def talk(ws: ClientConnection) -> ClientConnection:
        await ws.close(code, reason)
        await ws.wait_closed()
        return ws

    ws = run(module_echo_server.ws_url, talk)
    rcvd = ws.protocol.close_rcvd
    assert rcvd is not None and (rcvd.code, rcvd.reason) == (code, reason), rcvd


def test_subprotocol_negotiated(module_echo_server: Any) -> None:
    async def talk(ws: ClientConnection) -> str | None:
        await ws.send("hi")
        assert await ws.recv() == "hi"
        return ws.subprotocol

    assert run(module_echo_server.ws_url, talk, subprotocols=["lws-echo"]) == "lws-echo"
    assert run(module_echo_server.ws_url, talk) is None


def test_echo_server_still_healthy(module_echo_server: Any) -> None:
    """After all of the above: still running, no traceback in its log."""
    module_echo_server.assert_alive()
