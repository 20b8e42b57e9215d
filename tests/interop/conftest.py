"""Shared helpers for the interop tests: peers, server subprocesses, free ports.

Every server runs as a subprocess on a free loopback port and is always stopped by PID
(SIGTERM, then SIGKILL after 3 s).  A missing peer skips the test, unless
``LWSBRIDGE_REQUIRE_PEERS=1``, which turns the skip into a failure (CI sets it).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
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


def peers_required() -> bool:
    return os.environ.get("LWSBRIDGE_REQUIRE_PEERS", "") == "1"


def missing_peer(what: str, hint: str = "") -> NoReturn:
    """Skip because ``what`` is missing, or fail if LWSBRIDGE_REQUIRE_PEERS=1."""
    msg = f"interop peer missing: {what}"
    if hint:
        msg += f" ({hint})"
    if peers_required():
        pytest.fail(f"{msg}; LWSBRIDGE_REQUIRE_PEERS=1 makes this a failure", pytrace=False)
    pytest.skip(msg)


def require_executable(name: str, hint: str = "") -> str:
    """Path of executable ``name`` (a name on PATH or an absolute path), else skip/fail."""
    path = shutil.which(name)
    if path is None:
        missing_peer(name, hint)
    return path


@pytest.fixture
def test_server(tmp_path: Path) -> Iterator[Server]:
    with run_server("lwsbridge-test-server", tmp_path) as srv:
        yield srv


@pytest.fixture
def echo_server(tmp_path: Path) -> Iterator[Server]:
    with run_server("lwsbridge-test-echo", tmp_path) as srv:
        yield srv


@pytest.fixture(scope="module")
def module_echo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One lwsbridge-test-echo for all the tests of a module."""
    with run_server("lwsbridge-test-echo", tmp_path_factory.mktemp("echo")) as srv:
        yield srv


# ---------------------------------------------------------------------------- Chromium


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """Headless Debian Chromium driven by Playwright's sync API (never downloads a browser)."""
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


# ---------------------------------------------------------------------------- shared/ tools


def shared_dir() -> Path | None:
    """The shared tools: ``$LWSBRIDGE_SHARED`` or ``<repo>/../shared``."""
    env = os.environ.get("LWSBRIDGE_SHARED")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared")
    for c in candidates:
        if (c / "autobahn" / "run_server_suite.sh").is_file():
            return c
    return None


@pytest.fixture
def shared() -> Path:
    """The shared tools directory (Autobahn), else skip/fail."""
    path = shared_dir()
    if path is None:
        missing_peer(
            "shared tools with autobahn/run_server_suite.sh",
            "set LWSBRIDGE_SHARED or put shared/ beside the clone",
        )
    return path


@pytest.fixture
def lws_test_client() -> str:
    """Path of Debian's libwebsockets-test-client, else skip/fail."""
    return require_executable(
        "libwebsockets-test-client", "apt-get install libwebsockets-test-server"
    )
