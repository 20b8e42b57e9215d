"""wss echo on every adapter: text and binary messages of the RFC 6455 length edges."""

from __future__ import annotations

import ssl
import threading

import pytest
from adapterkit import DRIVERS, Driver, have

from lwsbridge.apps.echo_server import build_context as build_echo
from lwsbridge.tls import ServerTLS

SIZES = (0, 125, 126, 65535, 65536, 1 << 20)


@pytest.fixture(params=list(DRIVERS))
def adapter(request: pytest.FixtureRequest) -> Driver:
    factory, module = DRIVERS[request.param]
    if module is not None and not have(module):
        pytest.skip(f"{module} is not installed")
    return factory()


def test_wss_echo_sizes(adapter: Driver, certs) -> None:
    from websockets.sync.client import connect

    ctx = build_echo(0, "127.0.0.1", 2 << 20, tls=ServerTLS(certs.cert, certs.key))
    client_ssl = ssl.create_default_context(cafile=certs.ca_pem)
    errors: list[BaseException] = []
    checked: list[tuple[str, int]] = []

    def client() -> None:
        try:
            url = f"wss://127.0.0.1:{ctx.port}/"
            with connect(url, ssl=client_ssl, max_size=None, open_timeout=10) as ws:
                assert ws.socket.getpeername()[0] == "127.0.0.1"
                for n in SIZES:
                    t = "é" * (n // 2) + "a" * (n % 2)
                    ws.send(t)
                    assert ws.recv(timeout=10) == t
                    checked.append(("text", n))
                    b = bytes(i & 0xFF for i in range(n)) if n < 70000 else b"\x5a" * n
                    ws.send(b)
                    assert ws.recv(timeout=10) == b
                    checked.append(("binary", n))
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=client, daemon=True)
    t.start()
    try:
        adapter.run(ctx, lambda: not t.is_alive(), 30, "the wss echo client")
        t.join(5)
        if errors:
            raise errors[0]
        assert len(checked) == 2 * len(SIZES)
        adapter.run(ctx, lambda: len(ctx.fds) == 2, 5, "the connection to close")
    finally:
        ctx.destroy()
