"""The TLS server side: cipher list, handshake timeout, record framing, wrong protocol."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from typing import Any

import pytest

from lwsbridge.apps.echo_server import build_context as build_echo
from lwsbridge.log import NOTICE
from lwsbridge.tls import ServerTLS

HOST = "127.0.0.1"
WANTED = "ECDHE-RSA-AES128-GCM-SHA256"
OTHER = "ECDHE-RSA-AES256-GCM-SHA384"


def echo_server(serve, tls: ServerTLS | None, **kw: Any):
    return serve(build_echo(0, HOST, 2 << 20, tls=tls, **kw))


def client_ctx(certs, ciphers: str | None = None) -> ssl.SSLContext:
    c = ssl.create_default_context(cafile=certs.ca_pem)
    if ciphers:
        c.set_ciphers(ciphers)
        c.maximum_version = ssl.TLSVersion.TLSv1_2
    return c


def wss_echo(port: int, certs, msg: str = "hello", n: int = 1) -> None:
    from websockets.sync.client import connect

    with connect(f"wss://{HOST}:{port}/", ssl=client_ctx(certs), open_timeout=5) as ws:
        for i in range(n):
            ws.send(f"{msg} {i}")
            assert ws.recv(timeout=5) == f"{msg} {i}"


# ---------------------------------------------------------------------------- cipher list


@pytest.fixture
def rsa_certs(certs, tmp_path):
    """The ECDHE-RSA suites need an RSA key: the openssl self-signed RSA-2048 pair."""
    return certs.selfsigned_cert, certs.selfsigned_key


def test_cipher_list_is_applied(serve, rsa_certs) -> None:
    cert, key = rsa_certs
    tls = ServerTLS(cert, key, cipher_list=WANTED, max_version=ssl.TLSVersion.TLSv1_2)
    srv = echo_server(serve, tls)

    def handshake(cipher: str) -> tuple[str, str, int]:
        c = ssl.create_default_context(cafile=cert)
        c.set_ciphers(cipher)
        c.maximum_version = ssl.TLSVersion.TLSv1_2
        with (
            socket.create_connection((HOST, srv.port), timeout=5) as raw,
            c.wrap_socket(raw, server_hostname="localhost") as s,
        ):
            got = s.cipher()
            assert got is not None
            return got

    with pytest.raises(ssl.SSLError) as info:
        handshake(OTHER)
    assert "HANDSHAKE_FAILURE" in str(info.value) or "NO_SHARED_CIPHER" in str(info.value)
    with pytest.raises(ssl.SSLError):
        handshake("ECDHE-RSA-CHACHA20-POLY1305")
    name, version, _bits = handshake(f"{OTHER}:{WANTED}")
    assert (name, version) == (WANTED, "TLSv1.2")
    name, version, _bits = handshake(WANTED)
    assert (name, version) == (WANTED, "TLSv1.2")
    # and the server still echoes over the chosen suite
    from websockets.sync.client import connect

    c = ssl.create_default_context(cafile=cert)
    c.maximum_version = ssl.TLSVersion.TLSv1_2
    with connect(f"wss://{HOST}:{srv.port}/", ssl=c, server_hostname="localhost") as ws:
        assert ws.socket.cipher()[0] == WANTED  # type: ignore[attr-defined]
        ws.send(b"\x00\x01")
        assert ws.recv(timeout=5) == b"\x00\x01"


def test_default_cipher_list_negotiates_tls13(serve, certs) -> None:
    srv = echo_server(serve, ServerTLS(certs.cert, certs.key))
    with (
        socket.create_connection((HOST, srv.port), timeout=5) as raw,
        client_ctx(certs).wrap_socket(raw, server_hostname=HOST) as s,
    ):
        assert s.version() == "TLSv1.3"
        assert s.selected_alpn_protocol() is None  # the client offered none


# ---------------------------------------------------------------------------- handshake timeout


def test_stalled_handshakes_are_dropped_while_others_are_served(serve, certs) -> None:
    # 1 s leaves the good clients' handshakes room on a loaded machine.
    srv = echo_server(serve, ServerTLS(certs.cert, certs.key), handshake_timeout=1.0)
    # A real ClientHello, cut in half.
    bio_in, bio_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_ctx(certs).wrap_bio(bio_in, bio_out, server_hostname=HOST)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    hello = bio_out.read()
    assert hello[0] == 0x16 and len(hello) > 100
    silent = socket.create_connection((HOST, srv.port), timeout=5)
    half = socket.create_connection((HOST, srv.port), timeout=5)
    half.sendall(hello[: len(hello) // 2])
    t0 = time.monotonic()
    # other TLS clients are served meanwhile
    served = 0
    while time.monotonic() - t0 < 0.6:
        wss_echo(srv.port, certs, "meanwhile")
        served += 1
    assert served >= 1
    for s in (silent, half):
        try:
            data = s.recv(100)
        except ConnectionResetError:
            data = b""
        assert data == b"", data  # closed by the server: EOF, no alert for a half hello
    dt = time.monotonic() - t0
    assert 0.9 <= dt < 3.0, dt
    silent.close()
    half.close()
    wss_echo(srv.port, certs, "after")
    assert srv.call(lambda: srv.ctx.connection_count) == 0


# ---------------------------------------------------------------------------- record framing


class RawTLS:
    """A WebSocket client whose TLS runs through MemoryBIOs, so the test owns every byte."""

    def __init__(self, port: int, certs, trickle: bool = False) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.trickle = trickle
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = client_ctx(certs).wrap_bio(self.incoming, self.outgoing, server_hostname=HOST)
        self.sent_writes = 0
        self.plain = bytearray()
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.flush()
                self.fill()
        self.flush()
        key = "dGhlIHNhbXBsZSBub25jZQ=="
        self.write(
            (
                f"GET / HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self.flush()
        while b"\r\n\r\n" not in self.plain:
            self.fill()
        head, _, rest = bytes(self.plain).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        self.plain = bytearray(rest)

    def write(self, data: bytes) -> None:
        self.obj.write(data)  # one TLS record (or more for > 16 KiB)

    def flush(self) -> None:
        data = self.outgoing.read()
        if not data:
            return
        if self.trickle:
            for i in range(len(data)):
                self.sock.sendall(data[i : i + 1])
                self.sent_writes += 1
                time.sleep(0.0002)
        else:
            self.sock.sendall(data)
            self.sent_writes += 1

    def fill(self) -> None:
        data = self.sock.recv(1 << 16)
        if not data:
            raise EOFError("server closed")
        self.incoming.write(data)
        while True:
            try:
                self.plain += self.obj.read(1 << 16)
            except ssl.SSLWantReadError:
                return

    @staticmethod
    def frame(payload: bytes, opcode: int = 0x2) -> bytes:
        n = len(payload)
        if n < 126:
            head = bytes([0x80 | opcode, 0x80 | n])
        else:
            head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
        return head + b"\0\0\0\0" + payload  # zero mask key

    def recv(self) -> bytes:
        while True:
            p = self.plain
            if len(p) >= 2:
                n, pos = p[1] & 0x7F, 2
                if n == 126 and len(p) >= 4:
                    n, pos = int.from_bytes(p[2:4], "big"), 4
                if (n < 126 or pos == 4) and len(p) >= pos + n:
                    msg = bytes(p[pos : pos + n])
                    del p[: pos + n]
                    return msg
            self.fill()

    def close(self) -> None:
        self.sock.close()


def test_record_split_across_many_reads(serve, certs) -> None:
    srv = echo_server(serve, ServerTLS(certs.cert, certs.key))
    c = RawTLS(srv.port, certs, trickle=True)  # handshake too, 1 byte per send
    try:
        msg = bytes(range(200))
        c.write(c.frame(msg))
        c.flush()
        assert c.recv() == msg
        assert c.sent_writes > 300
    finally:
        c.close()


@pytest.mark.parametrize("size", [16, 2000])
def test_many_records_in_one_read_forced_service(serve, certs, size: int) -> None:
    """100 records in one TCP write, then silence: every echo still comes back."""
    srv = echo_server(serve, ServerTLS(certs.cert, certs.key))
    c = RawTLS(srv.port, certs)
    try:
        msgs = [i.to_bytes(2, "big") * (size // 2) for i in range(100)]
        for m in msgs:
            c.write(c.frame(m))  # one record each
        before = c.sent_writes
        c.flush()
        assert c.sent_writes == before + 1
        c.sock.settimeout(5)
        got = [c.recv() for _ in msgs]
        assert got == msgs
    finally:
        c.close()


# ---------------------------------------------------------------------------- wrong protocol


def _no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    for r in caplog.records:
        assert r.exc_info is None, r.getMessage()
        assert "Traceback" not in r.getMessage()


def test_plain_http_on_tls_port(serve, certs, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(NOTICE, logger="lwsbridge")
    srv = echo_server(serve, ServerTLS(certs.cert, certs.key))
    with socket.create_connection((HOST, srv.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    assert b"HTTP/1.1" not in data  # at most a TLS alert, never plaintext HTTP
    wss_echo(srv.port, certs)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [r for r in caplog.records if r.levelno == NOTICE and "TLS" in r.getMessage()]
        if lines:
            break
        time.sleep(0.02)
    assert len(lines) == 1, [r.getMessage() for r in caplog.records]
    assert "TLS handshake failed" in lines[0].getMessage()
    assert "HTTP_REQUEST" in lines[0].getMessage() or "WRONG_VERSION" in lines[0].getMessage()
    _no_traceback(caplog)


def _tls_hello_on_plain_port(serve, certs) -> float:
    """A TLS ClientHello to a plain server; returns seconds until the server closed."""
    srv = echo_server(serve, None, handshake_timeout=0.5)
    t0 = time.monotonic()
    with (
        socket.create_connection((HOST, srv.port), timeout=5) as raw,
        pytest.raises((ssl.SSLError, ConnectionError)),
    ):
        client_ctx(certs).wrap_socket(raw, server_hostname=HOST)
    dt = time.monotonic() - t0
    from websockets.sync.client import connect

    with connect(f"ws://{HOST}:{srv.port}/", open_timeout=5) as ws:
        ws.send("plain")
        assert ws.recv(timeout=5) == "plain"
    return dt


def test_tls_on_plain_port(serve, certs, caplog: pytest.LogCaptureFixture) -> None:
    """A ClientHello is refused at its first byte, not at the handshake timeout."""
    caplog.set_level(logging.DEBUG, logger="lwsbridge")
    dt = _tls_hello_on_plain_port(serve, certs)
    assert dt < 2.0, dt
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        if any("TLS handshake on a plain" in r.getMessage() for r in caplog.records):
            break
        time.sleep(0.02)
    else:
        pytest.fail(f"no close logged: {[r.getMessage() for r in caplog.records]}")
    _no_traceback(caplog)


def test_tls_on_plain_port_logs_notice(serve, certs, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(NOTICE, logger="lwsbridge")
    _tls_hello_on_plain_port(serve, certs)
    time.sleep(0.2)
    lines = [r.getMessage() for r in caplog.records if r.levelno >= NOTICE]
    assert [m for m in lines if "connection limit" not in m], lines


def test_server_survives_many_failed_handshakes(serve, certs) -> None:
    srv = echo_server(serve, ServerTLS(certs.cert, certs.key))
    bad = ssl.create_default_context()  # trusts the system store, not our CA

    def one() -> None:
        with (
            socket.create_connection((HOST, srv.port), timeout=5) as raw,
            pytest.raises(ssl.SSLCertVerificationError),
        ):
            bad.wrap_socket(raw, server_hostname=HOST)

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    wss_echo(srv.port, certs, n=3)


def test_session_tickets_off_by_default_and_configurable(certs) -> None:
    assert ServerTLS(certs.cert, certs.key).build().num_tickets == 0
    assert ServerTLS(certs.cert, certs.key, session_tickets=2).build().num_tickets == 2


def test_close_notify_on_an_open_tcp_connection_is_closed_by_the_close_timeout(
    serve, certs
) -> None:
    """A peer that sends close_notify and keeps TCP open: the server's TLS read says EOF,
    but no later read will, so the close timer must close the connection (a plain
    server needs no timer after EOF, since the EOF is read again; a TLS one does)."""
    srv = echo_server(serve, ServerTLS(certs.cert, certs.key), close_timeout=0.2)
    raw = socket.create_connection((HOST, srv.port), timeout=10)
    s = client_ctx(certs).wrap_socket(raw, server_hostname="localhost")
    try:
        s.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            assert chunk, "EOF before the 101"
            head += chunk
        assert head.startswith(b"HTTP/1.1 101")
        # unwrap() sends close_notify and waits for the server's answer or its TCP
        # close; a socket timeout (10 s, 50 times the close timeout) means it never came.
        try:
            s.unwrap()
        except TimeoutError:
            pytest.fail("the server never closed a connection whose peer sent close_notify")
        except (ssl.SSLError, OSError):
            pass  # the server closed TCP without a close_notify of its own: closed
        assert srv.call(lambda: srv.ctx.connection_count) == 0
    finally:
        s.close()
