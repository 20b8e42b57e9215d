"""Real peers for the interop-style tests: skip-or-fail, executables, shared/, Chromium.

A missing peer skips the test, unless ``LWSBRIDGE_REQUIRE_PEERS=1``, which turns the
skip into a failure (CI sets it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NoReturn

import pytest

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


# ---------------------------------------------------------------------------- shared/ tools


def shared_dir(script: str = "run_server_suite.sh") -> Path | None:
    """The shared tools (``$LWSBRIDGE_SHARED`` or ``<repo>/../shared``) that have
    ``autobahn/<script>``, else None."""
    env = os.environ.get("LWSBRIDGE_SHARED")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared")
    for c in candidates:
        if (c / "autobahn" / script).is_file():
            return c
    return None


def require_shared(script: str = "run_server_suite.sh") -> Path:
    """The shared tools directory with ``autobahn/<script>``, else skip/fail."""
    path = shared_dir(script)
    if path is None:
        missing_peer(
            f"shared tools with autobahn/{script}",
            "set LWSBRIDGE_SHARED or put shared/ beside the clone",
        )
    return path


@pytest.fixture
def shared() -> Path:
    """The shared tools directory (Autobahn), else skip/fail."""
    return require_shared("run_server_suite.sh")


# ---------------------------------------------------------------------------- Chromium


@contextlib.contextmanager
def chromium_browser(extra_args: Sequence[str] = ()) -> Iterator[object]:
    """Headless Debian Chromium driven by Playwright's sync API (never downloads a
    browser), else skip/fail.  Closed on exit."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing_peer("the playwright Python package", "pip install playwright")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        missing_peer(CHROMIUM, "apt-get install chromium")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[*CHROMIUM_ARGS, *extra_args],
            timeout=30_000,
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """One headless Chromium for the module (see ``chromium_browser``)."""
    with chromium_browser() as browser:
        yield browser
