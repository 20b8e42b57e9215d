"""TLS against real peers: libwebsockets' C test client and server, headless Chromium.

Skipped when a peer is missing, failed instead with ``LWSBRIDGE_REQUIRE_PEERS=1``.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from support.peers import chromium_browser, require_executable
from support.procs import console_script, free_port, run_server, stop_process, wait_accepting
from tlsutil import openssl_selfsigned

pytestmark = pytest.mark.peers

RX_LINE = re.compile(r"\] I: rx (\d+) '([^']*)'")


@pytest.fixture
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The apps make their default self-signed certificate here, not in ~/.cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


def test_lws_client_against_lwsbridge_ssl_server(tmp_path: Path, own_cache: Path) -> None:
    client_exe = require_executable("libwebsockets-test-client")
    with run_server("lwsbridge-test-server", tmp_path, "--ssl") as srv:
        assert (own_cache / "lwsbridge" / "test-server-cert.pem").is_file()
        log_path = tmp_path / "lws-client.log"
        with open(log_path, "wb") as log:
            client = subprocess.Popen(
                [client_exe, "127.0.0.1", "--port", str(srv.port), "--ssl", "-s", "-d", "15"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            time.sleep(3)
            assert client.poll() is None, "libwebsockets-test-client exited early"
        finally:
            stop_process(client)
        srv.assert_alive()
        text = log_path.read_text(errors="replace")
        server_log = srv.log()
    rx = [(int(n), k) for n, k in RX_LINE.findall(text)]
    numbers = [int(k) for _, k in rx]
    context = f"client log tail:\n{text[-2000:]}\nserver log:\n{server_log[-2000:]}"
    assert len(numbers) >= 20, f"only {len(numbers)} numbers\n{context}"
    assert numbers == list(range(len(numbers))), f"not consecutive from 0: {numbers[:50]}"
    assert all(n == len(k) for n, k in rx)


def test_lwsbridge_client_against_lws_ssl_server(tmp_path: Path) -> None:
    server_exe = require_executable("libwebsockets-test-server")
    # Debian's bundled test certificate is RSA-1024, which OpenSSL 3 refuses: make one.
    cert, key = openssl_selfsigned(tmp_path, "lws")
    client = [*console_script("lwsbridge-test-client"), "127.0.0.1"]
    for _attempt in range(3):
        port = free_port()
        log_path = tmp_path / f"lws-server-{port}.log"
        with open(log_path, "wb") as log:
            server = subprocess.Popen(
                [server_exe, "--ssl", "-C", cert, "-K", key, "-p", str(port), "-i", "lo"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=tmp_path,
            )
        try:
            if not wait_accepting(server, port, time.monotonic() + 10):
                continue
            out = subprocess.run(
                [*client, "-p", str(port), "--ssl", "--ca", cert, "-n", "10"],
                capture_output=True,
                text=True,
                timeout=20,
            )
            assert server.poll() is None, log_path.read_text(errors="replace")
        finally:
            stop_process(server)
        assert out.returncode == 0, f"{out.stdout}\n{out.stderr}"
        assert [int(x) for x in out.stdout.split()][:10] == list(range(10)), out.stdout
        return
    pytest.fail(f"libwebsockets-test-server did not start:\n{log_path.read_text()[-2000:]}")


def test_chromium_https_and_wss(tmp_path: Path, own_cache: Path) -> None:
    with (
        chromium_browser(["--ignore-certificate-errors"]) as browser,
        run_server("lwsbridge-test-server", tmp_path, "--ssl") as srv,
    ):
        page: Any = browser.new_context(ignore_https_errors=True).new_page()
        page.set_default_timeout(10_000)
        ws_urls: list[str] = []
        page.on("websocket", lambda ws: ws_urls.append(ws.url))
        resp = page.goto(f"https://127.0.0.1:{srv.port}/", wait_until="load")
        assert resp is not None and resp.status == 200
        assert page.url.startswith("https://")
        for status in ("#wsdi_statustd", "#wsm_statustd"):
            page.wait_for_function(
                "sel => document.querySelector(sel).textContent === 'websocket connection opened'",
                arg=status,
            )
        page.wait_for_function("window.lastNumber !== null")
        first = page.evaluate("window.lastNumber")
        time.sleep(0.5)
        second = page.evaluate("window.lastNumber")
        assert second > first, f"counter did not increase: {first} -> {second}"
        # both of the page's sockets went over wss
        assert len(ws_urls) >= 2, ws_urls
        assert all(u.startswith(f"wss://127.0.0.1:{srv.port}/") for u in ws_urls), ws_urls
        srv.assert_alive()
