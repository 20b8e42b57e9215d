"""The TLS client side: each verify failure is one CLIENT_CONNECTION_ERROR with the reason."""

from __future__ import annotations

import time
from typing import Any

import pytest

from lwsbridge.apps.certs import default_cert
from lwsbridge.apps.echo_server import build_context as build_echo
from lwsbridge.context import ClientConnectInfo, Context, Protocol, Reason, WriteKind
from lwsbridge.tls import ClientTLS, ServerTLS

HOST = "127.0.0.1"


def run_client(port: int, tls: bool | ClientTLS, host: str | None = None) -> list[Any]:
    """Connect, send one message, and return the events seen (bounded: 5 s)."""
    events: list[Any] = []

    def cb(conn: Any, reason: Reason, user: Any, payload: Any) -> int:
        if reason is Reason.CLIENT_CONNECTION_ERROR:
            events.append(("error", payload))
        elif reason is Reason.CLIENT_ESTABLISHED:
            events.append(("established", None))
            conn.callback_on_writable()
        elif reason is Reason.CLIENT_WRITEABLE:
            conn.write(b"ping over tls", WriteKind.BINARY)
        elif reason is Reason.CLIENT_RECEIVE:
            events.append(("echo", bytes(payload)))
            return -1  # done: close
        elif reason is Reason.CLOSED:
            events.append(("closed", None))
        return 0

    ctx = Context([Protocol("tls-client", cb)], port=None)
    try:
        ctx.client_connect(ClientConnectInfo(HOST, port, "/", host=host, ssl=tls))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            ctx.service(20)
            if any(e[0] in ("error", "closed") for e in events):
                break
        for _ in range(10):  # anything that would follow an error
            ctx.service(10)
    finally:
        ctx.destroy()
    return events


@pytest.fixture
def server(serve, certs):
    def start(cert: str, key: str) -> int:
        ctx = build_echo(0, HOST, 1 << 20, tls=ServerTLS(cert, key))
        port = serve(ctx).port
        assert port is not None
        return port

    return start


def one_error(events: list[Any]) -> str:
    assert len(events) == 1 and events[0][0] == "error", events
    return str(events[0][1])


def succeeded(events: list[Any]) -> None:
    assert events == [
        ("established", None),
        ("echo", b"ping over tls"),
        ("closed", None),
    ], events


def test_trusted_ca_succeeds(server, certs) -> None:
    port = server(certs.cert, certs.key)
    succeeded(run_client(port, ClientTLS(ca_file=certs.ca_pem)))
    # the Host header / SNI name "localhost" is in the certificate too
    succeeded(run_client(port, ClientTLS(ca_file=certs.ca_pem), host="localhost"))


def test_wrong_host_name(server, certs) -> None:
    port = server(certs.cert, certs.key)
    why = one_error(run_client(port, ClientTLS(ca_file=certs.ca_pem), host="wrong.example"))
    assert "certificate verify failed" in why, why
    assert "Hostname mismatch" in why or "hostname" in why.lower(), why


def test_unknown_ca(server, certs) -> None:
    port = server(certs.cert, certs.key)
    why = one_error(run_client(port, ClientTLS()))
    assert "unable to get local issuer certificate" in why, why
    why = one_error(run_client(port, True))  # ssl=True: the same default verification
    assert "unable to get local issuer certificate" in why, why


def test_expired_certificate(server, certs) -> None:
    port = server(certs.expired_cert, certs.expired_key)
    why = one_error(run_client(port, ClientTLS(ca_file=certs.ca_pem)))
    assert "certificate has expired" in why, why


def test_allow_self_signed_accepts_self_signed(server, certs, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cert, key = default_cert()  # the apps' default: made in tmp_path
    assert cert.startswith(str(tmp_path))
    port = server(cert, key)
    succeeded(run_client(port, ClientTLS(allow_self_signed=True)))
    # without the flag it is an unknown issuer
    why = one_error(run_client(port, ClientTLS()))
    assert "self-signed certificate" in why or "self signed certificate" in why, why
    # the openssl-made pair too
    port2 = server(certs.selfsigned_cert, certs.selfsigned_key)
    succeeded(run_client(port2, ClientTLS(allow_self_signed=True)))


def test_allow_self_signed_refuses_unknown_ca(server, certs) -> None:
    port = server(certs.other_ca_cert, certs.other_ca_key)
    why = one_error(run_client(port, ClientTLS(allow_self_signed=True)))
    assert "not self-signed" in why, why
    assert "certificate verify failed" in why, why


def test_insecure_accepts_anything(server, certs) -> None:
    for cert, key in (
        (certs.other_ca_cert, certs.other_ca_key),
        (certs.expired_cert, certs.expired_key),
        (certs.selfsigned_cert, certs.selfsigned_key),
    ):
        port = server(cert, key)
        succeeded(run_client(port, ClientTLS(insecure=True), host="wrong.example"))


def test_plain_server_gives_one_error(serve) -> None:
    ctx = build_echo(0, HOST, 1 << 20, handshake_timeout=0.5)
    port = serve(ctx).port
    assert port is not None
    why = one_error(run_client(port, ClientTLS(insecure=True)))
    assert "TLS" in why or "closed" in why, why
