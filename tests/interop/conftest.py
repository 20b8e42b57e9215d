"""Fixtures for the interop tests: peers and lwsbridge apps as server subprocesses.

Every server runs as a subprocess on a free loopback port and is always stopped by PID
(SIGTERM, then SIGKILL after 3 s; ``tests/support/procs.py``).  A missing peer skips the
test, unless ``LWSBRIDGE_REQUIRE_PEERS=1``, which turns the skip into a failure (CI sets
it; ``tests/support/peers.py``, which also has the ``shared`` and ``chromium`` fixtures).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.peers import chromium, require_executable, shared  # noqa: F401 (fixtures)
from support.procs import Server, run_server


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


@pytest.fixture
def lws_test_client() -> str:
    """Path of Debian's libwebsockets-test-client, else skip/fail."""
    return require_executable(
        "libwebsockets-test-client", "apt-get install libwebsockets-test-server"
    )
