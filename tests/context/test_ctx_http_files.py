"""Static files as users rely on them (issue 15.6): decoding, redirects, types, HEAD, 405,
conditional requests and ranges, over real sockets with the standard library's client."""

from __future__ import annotations

import email.utils
import http.client
import os
import threading
from collections.abc import Callable
from typing import Any

import pytest
from support.servicing import pump, stepper

from lwsbridge.context import Context, Protocol, Reason

BIG = 200_000


@pytest.fixture
def site(tmp_path, make_ctx):
    r = tmp_path / "site"
    r.mkdir()
    (r / "a b.txt").write_bytes(b"spaced\n")
    (r / "caf\u00e9.txt").write_bytes(b"accent\n")
    (r / "index.html").write_bytes(b"<h1>home</h1>")
    (r / "app.js").write_bytes(b"1;")
    (r / "data.json").write_bytes(b"{}")
    (r / "style.css").write_bytes(b"p{}")
    (r / "pic.png").write_bytes(b"\x89PNG")
    (r / "docs").mkdir()
    (r / "docs" / "index.html").write_bytes(b"<h1>docs</h1>")
    big = os.urandom(BIG)
    (r / "big.bin").write_bytes(big)
    (tmp_path / "secret.txt").write_bytes(b"outside")

    def cb(conn, reason, user, payload):  # type: ignore[no-untyped-def]
        if reason is Reason.HTTP:
            conn.serve_file(payload)  # the type from the name
        return 0

    ctx = make_ctx([Protocol("http", cb)], resource_root=str(r))
    return ctx, big


def fetch(
    ctx: Context, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request with http.client on a thread while this thread services ``ctx``."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            hc = http.client.HTTPConnection("127.0.0.1", ctx.port, timeout=5)
            hc.request(method, path, headers=headers or {})
            resp = hc.getresponse()
            out["r"] = (resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
            hc.close()
        except BaseException as exc:  # handed to the test
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    pump(stepper(ctx), lambda: not t.is_alive(), f"{method} {path}")
    assert "error" not in out, out
    r: tuple[int, dict[str, str], bytes] = out["r"]
    return r


Fetch = Callable[..., tuple[int, dict[str, str], bytes]]


def test_percent_decoded_before_the_checks(site) -> None:
    ctx, _ = site
    assert fetch(ctx, "GET", "/a%20b.txt")[::2] == (200, b"spaced\n")
    assert fetch(ctx, "GET", "/caf%C3%A9.txt")[::2] == (200, b"accent\n")
    for bad in ("/%2e%2e/secret.txt", "/%2E%2E%2Fsecret.txt", "/a%00b.txt", "/%ff.txt"):
        status, _, body = fetch(ctx, "GET", bad)
        assert status == 404 and b"outside" not in body, bad


def test_directory_redirect_and_typed_index(site) -> None:
    ctx, _ = site
    status, headers, _ = fetch(ctx, "GET", "/docs?x=1")
    assert status == 301 and headers["location"] == "/docs/?x=1"
    status, headers, body = fetch(ctx, "GET", "/docs/")
    assert (status, body) == (200, b"<h1>docs</h1>")
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert fetch(ctx, "GET", "/")[1]["content-type"] == "text/html; charset=utf-8"


@pytest.mark.parametrize(
    ("path", "ctype"),
    [
        ("/a%20b.txt", "text/plain; charset=utf-8"),
        ("/app.js", "; charset=utf-8"),
        ("/data.json", "application/json; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
        ("/pic.png", "image/png"),
        ("/big.bin", "application/octet-stream"),
    ],
)
def test_types_and_charsets(site, path: str, ctype: str) -> None:
    ctx, _ = site
    got = fetch(ctx, "GET", path)[1]["content-type"]
    assert got.endswith(ctype) if ctype.startswith(";") else got == ctype


def test_head_has_the_headers_and_no_body(site) -> None:
    ctx, big = site
    status, headers, body = fetch(ctx, "HEAD", "/big.bin")
    assert (status, body) == (200, b"")
    assert headers["content-length"] == str(BIG)
    assert headers["accept-ranges"] == "bytes" and headers["etag"]
    # and the connection is still usable for a GET afterwards (keep-alive framing right)
    assert fetch(ctx, "GET", "/big.bin")[2] == big


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
def test_other_methods_get_405_with_allow(site, method: str) -> None:
    ctx, _ = site
    status, headers, _ = fetch(ctx, method, "/index.html")
    assert status == 405 and headers["allow"] == "GET, HEAD"


def test_etag_and_last_modified_give_304(site) -> None:
    ctx, _ = site
    _, headers, _ = fetch(ctx, "GET", "/index.html")
    etag, modified = headers["etag"], headers["last-modified"]
    status, h304, body = fetch(ctx, "GET", "/index.html", {"If-None-Match": etag})
    assert (status, body) == (304, b"") and h304["etag"] == etag
    assert fetch(ctx, "GET", "/index.html", {"If-None-Match": f'"x", W/{etag}'})[0] == 304
    assert fetch(ctx, "GET", "/index.html", {"If-None-Match": '"other"'})[0] == 200
    assert fetch(ctx, "GET", "/index.html", {"If-Modified-Since": modified})[0] == 304
    past = email.utils.formatdate(0, usegmt=True)
    assert fetch(ctx, "GET", "/index.html", {"If-Modified-Since": past})[0] == 200
    # If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2)
    both = {"If-None-Match": '"other"', "If-Modified-Since": modified}
    assert fetch(ctx, "GET", "/index.html", both)[0] == 200


def test_single_ranges(site) -> None:
    ctx, big = site
    status, headers, body = fetch(ctx, "GET", "/big.bin", {"Range": "bytes=100-199"})
    assert (status, body) == (206, big[100:200])
    assert headers["content-range"] == f"bytes 100-199/{BIG}"
    assert headers["content-length"] == "100"
    assert fetch(ctx, "GET", "/big.bin", {"Range": "bytes=-10"})[2] == big[-10:]
    assert fetch(ctx, "GET", "/big.bin", {"Range": f"bytes={BIG - 5}-"})[2] == big[-5:]
    # past the end is clipped; a large range streams like a whole file
    assert fetch(ctx, "GET", "/big.bin", {"Range": "bytes=1000-999999999"})[2] == big[1000:]


def test_unsatisfiable_and_ignored_ranges(site) -> None:
    ctx, big = site
    status, headers, _ = fetch(ctx, "GET", "/big.bin", {"Range": f"bytes={BIG}-"})
    assert status == 416 and headers["content-range"] == f"bytes */{BIG}"
    # several ranges, another unit, or garbage: the whole file (RFC 9110 §14.2 allows it)
    for spec in ("bytes=0-1,5-6", "items=0-1", "bytes=x-y"):
        status, _, body = fetch(ctx, "GET", "/big.bin", {"Range": spec})
        assert (status, len(body)) == (200, BIG), spec
    # If-Range with a stale validator: the whole file
    stale = {"Range": "bytes=0-9", "If-Range": '"stale"'}
    assert fetch(ctx, "GET", "/big.bin", stale)[0] == 200
    etag = fetch(ctx, "HEAD", "/big.bin")[1]["etag"]
    fresh = {"Range": "bytes=0-9", "If-Range": etag}
    assert fetch(ctx, "GET", "/big.bin", fresh)[::2] == (206, big[:10])
