"""Negotiation through the context: websockets' client offering permessage-deflate.

lwsbridge-test-echo negotiates it (Protocol(deflate=True)); lwsbridge-test-server only
on lws-mirror-protocol, not on dumb-increment-protocol (as libwebsockets' test server).
"""

from __future__ import annotations

import zlib
from typing import Any

import pytest
from dflutil import BINARY, TEXT, RawDeflateClient, compress, frame, prose, run
from websockets.asyncio.client import connect
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
)

OFFERS: dict[str, dict[str, Any]] = {
    "default": {},
    "server_nct": {"server_no_context_takeover": True},
    "client_nct": {"client_no_context_takeover": True},
    "both_nct": {"server_no_context_takeover": True, "client_no_context_takeover": True},
    "server_bits_10": {"server_max_window_bits": 10},
    "client_bits_9": {"client_max_window_bits": 9},
    "server_bits_8": {"server_max_window_bits": 8},
    "all": {
        "server_no_context_takeover": True,
        "client_no_context_takeover": True,
        "server_max_window_bits": 9,
        "client_max_window_bits": 9,
    },
}


def _talk(url: str, msgs: list[str | bytes], **kw: Any) -> tuple[str | None, list[Any], list[Any]]:
    async def main() -> tuple[str | None, list[Any], list[Any]]:
        async with connect(url, max_size=None, ping_interval=None, **kw) as ws:
            got = []
            for m in msgs:
                await ws.send(m)
                got.append(await ws.recv())
            assert ws.response is not None
            return (
                ws.response.headers.get("Sec-WebSocket-Extensions"),
                list(ws.protocol.extensions),
                got,
            )

    return run(main)


@pytest.mark.parametrize("name", list(OFFERS))
def test_echo_negotiates_offer(echo: Any, name: str) -> None:
    factory = ClientPerMessageDeflateFactory(**OFFERS[name])
    msgs: list[str | bytes] = [prose(5000, i) for i in range(3)]
    msgs.append(prose(70000, 9).encode())
    header, exts, got = _talk(echo.ws_url, msgs, compression=None, extensions=[factory])
    assert header is not None and header.startswith("permessage-deflate"), header
    assert len(exts) == 1 and isinstance(exts[0], PerMessageDeflate)
    params = OFFERS[name]
    if params.get("server_no_context_takeover"):
        assert "server_no_context_takeover" in header
    if params.get("client_no_context_takeover"):
        assert "client_no_context_takeover" in header
    bits = params.get("server_max_window_bits")
    if bits:
        assert f"server_max_window_bits={bits}" in header
    assert got == msgs


def test_echo_default_client_compression(echo: Any) -> None:
    header, _exts, got = _talk(echo.ws_url, ["hello " * 100], compression="deflate")
    assert header is not None and header.startswith("permessage-deflate")
    assert got == ["hello " * 100]


def test_echo_no_offer_no_extension(echo: Any) -> None:
    header, exts, got = _talk(echo.ws_url, ["x" * 1000, b"\0" * 1000], compression=None)
    assert header is None and exts == []
    assert got == ["x" * 1000, b"\0" * 1000]


def test_echo_declines_bad_offer_takes_fallback(echo: Any) -> None:
    offer = (
        "permessage-deflate; bogus=1, permessage-deflate; server_max_window_bits=16, "
        "permessage-deflate; client_max_window_bits; server_max_window_bits=11"
    )
    c = RawDeflateClient(echo.port, offer)
    try:
        assert c.extensions == "permessage-deflate; server_max_window_bits=11"
    finally:
        c.close()
    c = RawDeflateClient(echo.port, "permessage-deflate; bogus, x-webkit-deflate-frame")
    try:
        assert c.extensions is None
        c.send_raw(frame(TEXT, b"plain"))
        assert c.recv_message() == (TEXT, b"plain", False)
    finally:
        c.close()


def test_server_frames_really_compressed(echo: Any) -> None:
    """The echo goes out with RSV1 and smaller than the message (raw client check)."""
    c = RawDeflateClient(echo.port, "permessage-deflate")
    try:
        msg = prose(20000, 3).encode()
        c.send_raw(frame(BINARY, compress(msg), rsv1=True))
        opcode, fin, rsv1, data = c.recv_frame()
        assert (opcode, fin, rsv1) == (BINARY, True, True)
        assert len(data) < len(msg) // 2
        c.inflater = zlib.decompressobj(-15)  # context takeover: keep it for the next one
        assert c.inflater.decompress(data + b"\0\0\xff\xff") == msg
        # an uncompressed message (RSV1 clear) is fine too; the echo is compressed
        c.send_raw(frame(TEXT, b"not compressed"))
        op, raw, _compressed = c.recv_message()
        assert (op, raw) == (TEXT, b"not compressed")
    finally:
        c.close()


def test_no_deflate_option(tmp_path: Any) -> None:
    from support.procs import run_server

    with run_server("lwsbridge-test-echo", tmp_path, "--no-deflate") as srv:
        header, exts, got = _talk(srv.ws_url, ["abc" * 300], compression="deflate")
        assert header is None and exts == []
        assert got == ["abc" * 300]
        srv.assert_alive()


def test_test_server_mirror_yes_dumb_increment_no(test_server: Any) -> None:
    async def main() -> tuple[str | None, str | None]:
        async with connect(
            test_server.ws_url, subprotocols=["dumb-increment-protocol"], ping_interval=None
        ) as ws:
            assert ws.subprotocol == "dumb-increment-protocol"
            n = int(await ws.recv())
            assert int(await ws.recv()) >= n
            assert ws.response is not None
            dumb = ws.response.headers.get("Sec-WebSocket-Extensions")
            assert list(ws.protocol.extensions) == []
        async with connect(
            test_server.ws_url, subprotocols=["lws-mirror-protocol"], ping_interval=None
        ) as ws:
            assert ws.subprotocol == "lws-mirror-protocol"
            assert ws.response is not None
            mirror = ws.response.headers.get("Sec-WebSocket-Extensions")
            line = "d #ff0000 1 2 3 4;" * 50
            await ws.send(line)
            assert await ws.recv() == line  # the mirror sends it to every member
            return dumb, mirror

    dumb, mirror = run(main)
    assert dumb is None
    assert mirror is not None and mirror.startswith("permessage-deflate")
