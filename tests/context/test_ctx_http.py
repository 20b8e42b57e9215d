"""Plain HTTP: serve_file, traversal refusal, keep-alive, the URI in the HTTP callback."""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import threading

import pytest
from support.servicing import pump, settle, stepper
from wsclient import wait_eof

from lwsbridge.context import Protocol, Reason

SIZE = 3 * 1024 * 1024


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    r.mkdir()
    data = os.urandom(SIZE)
    (r / "big.bin").write_bytes(data)
    (r / "small.txt").write_bytes(b"small file\n")
    (r / "sub").mkdir()
    (r / "sub" / "index.html").write_bytes(b"<p>sub index</p>")
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"outside the root")
    (r / "escape").symlink_to(secret)
    (r / "escapedir").symlink_to(tmp_path)
    (r / "inner").symlink_to(r / "small.txt")
    return r, data


class Files:
    def __init__(self, sndbuf: int | None = None) -> None:
        self.sndbuf = sndbuf
        self.uris: list[str] = []
        self.results: list[bool] = []
        self.completions = 0

    def callback(self, conn, reason, user, payload):
        if reason is Reason.HTTP:
            self.uris.append(payload)
            if self.sndbuf:
                conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
            self.results.append(conn.serve_file(payload, "application/octet-stream"))
        elif reason is Reason.HTTP_FILE_COMPLETION:
            self.completions += 1
        return 0


def test_serve_file_3mb_with_http_client(make_ctx, root) -> None:
    r, data = root
    files = Files()
    ctx = make_ctx([Protocol("http", files.callback)], resource_root=str(r))
    out: dict[str, object] = {}

    def fetch() -> None:
        try:
            hc = http.client.HTTPConnection("127.0.0.1", ctx.port, timeout=5)
            hc.request("GET", "/big.bin")
            resp = hc.getresponse()
            out["status"] = resp.status
            out["length"] = resp.getheader("Content-Length")
            out["type"] = resp.getheader("Content-Type")
            out["body"] = resp.read()
            # Keep-alive: a second request on the same connection.
            hc.request("GET", "/small.txt")
            resp2 = hc.getresponse()
            out["status2"] = resp2.status
            out["body2"] = resp2.read()
            out["sock_same"] = hc.sock is not None
            hc.close()
        except BaseException as exc:
            out["error"] = exc

    t = threading.Thread(target=fetch, daemon=True)
    t.start()
    pump(stepper(ctx), lambda: not t.is_alive(), "the HTTP client")
    assert "error" not in out, out
    assert out["status"] == 200
    assert out["length"] == str(SIZE)
    assert out["type"] == "application/octet-stream"
    body = out["body"]
    assert len(body) == SIZE
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    assert out["status2"] == 200 and out["body2"] == b"small file\n"
    assert files.uris == ["/big.bin", "/small.txt"]
    assert files.results == [True, True]
    assert files.completions == 2
    # Both on one connection: one CLOSED_HTTP at most, one connection accepted.
    settle(stepper(ctx), 0.05)
    assert ctx.connection_count <= 1


def test_serve_file_streams_not_whole(make_ctx, client, root) -> None:
    """A client that does not read: the server holds only a chunk, not the 3 MB file."""
    r, data = root
    files = Files(sndbuf=65536)
    ctx = make_ctx([Protocol("http", files.callback)], resource_root=str(r))
    c = client(ctx.port, rcvbuf=65536)
    c.send_get("/big.bin")
    pump(stepper(ctx), lambda: files.uris, "the request")
    settle(stepper(ctx), 0.2)
    conn = ctx.all_connections()[0]
    # Still streaming, at most about one chunk held in user space, and the file not read
    # to its end (HTTP_FILE_COMPLETION comes when serving reaches EOF).
    assert conn.serving_file and conn.buffered_bytes <= 64 * 1024 + 1024
    assert files.completions == 0
    resp = pump(stepper(ctx), c.take_response, "the whole response")
    assert resp.status == 200 and resp.body == data


def test_keepalive_two_requests_raw(make_ctx, client, root) -> None:
    r, _ = root
    files = Files()
    ctx = make_ctx([Protocol("http", files.callback)], resource_root=str(r))
    c = client(ctx.port)
    # Pipelined: both requests in one write.
    c.send(b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\nGET /sub/ HTTP/1.1\r\nHost: x\r\n\r\n")
    r1 = pump(stepper(ctx), c.take_response, "response 1")
    r2 = pump(stepper(ctx), c.take_response, "response 2")
    assert (r1.status, r1.body) == (200, b"small file\n")
    assert (r2.status, r2.body) == (200, b"<p>sub index</p>")
    assert files.uris == ["/small.txt", "/sub/"]
    assert not c.eof
    # A third one later on the same socket, asking to close.
    c.send_get("/small.txt", close=True)
    r3 = pump(stepper(ctx), c.take_response, "response 3")
    assert r3.status == 200 and r3.headers.get("connection") == "close"
    wait_eof(ctx, c)
    pump(stepper(ctx), lambda: ctx.connection_count == 0, "the connection to go")


@pytest.mark.parametrize(
    "uri",
    [
        "/../etc/passwd",
        "/sub/../../etc/passwd",
        "/%2e%2e/",
        "/%2e%2e/secret.txt",
        "/..\\secret.txt",
        "/..\\..\\etc\\passwd",
        "/escape",
        "/escapedir/secret.txt",
        "/missing.txt",
        "/sub",  # a directory without its trailing slash: redirected to /sub/
    ],
)
def test_traversal_and_missing_are_404(make_ctx, client, root, uri) -> None:
    r, _ = root
    files = Files()
    ctx = make_ctx([Protocol("http", files.callback)], resource_root=str(r))
    c = client(ctx.port)
    c.send_get(uri)
    resp = pump(stepper(ctx), c.take_response, f"the response to {uri}")
    assert files.uris == [uri], "the HTTP callback sees the raw, undecoded URI"
    if uri == "/sub":
        assert resp.status == 301 and resp.headers["location"] == "/sub/", resp
        c.send_get("/sub/")
        resp = pump(stepper(ctx), c.take_response, "the response to /sub/")
        assert (resp.status, resp.body) == (200, b"<p>sub index</p>")
        return
    assert resp.status == 404, (uri, resp)
    assert b"outside the root" not in resp.body
    assert b"root:" not in resp.body
    assert files.results == [False]


def test_symlink_inside_root_is_served(make_ctx, client, root) -> None:
    r, _ = root
    files = Files()
    ctx = make_ctx([Protocol("http", files.callback)], resource_root=str(r))
    c = client(ctx.port)
    c.send_get("/inner?x=1")
    resp = pump(stepper(ctx), c.take_response, "the response")
    assert (resp.status, resp.body) == (200, b"small file\n")
    assert files.uris == ["/inner?x=1"]


def test_no_response_gives_404(make_ctx, client) -> None:
    uris: list[str] = []

    def cb(conn, reason, user, payload):
        if reason is Reason.HTTP:
            uris.append(payload)
        return 0

    ctx = make_ctx([Protocol("http", cb)])
    c = client(ctx.port)
    c.send_get("/anything?q=1")
    resp = pump(stepper(ctx), c.take_response, "the response")
    assert resp.status == 404
    assert uris == ["/anything?q=1"]
