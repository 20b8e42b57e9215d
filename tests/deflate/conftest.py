"""Fixtures for the permessage-deflate tests: lwsbridge apps as subprocesses, peers.

Servers run as subprocesses on free loopback ports (``tests/interop/peerutil.py``) and
are stopped by PID.  Peer tests (Chromium, Autobahn) skip when the peer is missing,
unless ``LWSBRIDGE_REQUIRE_PEERS=1``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "interop"))

from peerutil import Server, run_server

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """lwsbridge-test-echo (permessage-deflate on by default), one per module."""
    with run_server("lwsbridge-test-echo", tmp_path_factory.mktemp("echo")) as srv:
        yield srv
        srv.assert_alive()


@pytest.fixture(scope="module")
def test_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """lwsbridge-test-server (deflate on lws-mirror-protocol only), one per module."""
    with run_server("lwsbridge-test-server", tmp_path_factory.mktemp("ts")) as srv:
        yield srv
        srv.assert_alive()


def missing_peer(what: str, hint: str = "") -> NoReturn:
    msg = f"interop peer missing: {what}" + (f" ({hint})" if hint else "")
    if os.environ.get("LWSBRIDGE_REQUIRE_PEERS", "") == "1":
        pytest.fail(f"{msg}; LWSBRIDGE_REQUIRE_PEERS=1 makes this a failure", pytrace=False)
    pytest.skip(msg)


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """Headless Debian Chromium via Playwright's sync API (never downloads a browser)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing_peer("the playwright Python package", "pip install playwright")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        missing_peer(CHROMIUM, "apt-get install chromium")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=30_000
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def shared() -> Path:
    """The shared tools (``$LWSBRIDGE_SHARED`` or ``<repo>/../shared``) with Autobahn."""
    env = os.environ.get("LWSBRIDGE_SHARED")
    for c in [*([Path(env)] if env else []), REPO.parent / "shared"]:
        if (c / "autobahn" / "run_server_suite.sh").is_file():
            return c
    missing_peer(
        "shared tools with autobahn/run_server_suite.sh",
        "set LWSBRIDGE_SHARED or put shared/ beside the clone",
    )
