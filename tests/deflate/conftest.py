"""Fixtures for the permessage-deflate tests: lwsbridge apps as subprocesses, peers.

Servers run as subprocesses on free loopback ports (``tests/support/procs.py``) and are
stopped by PID.  Peer tests (Chromium, Autobahn) skip when the peer is missing, unless
``LWSBRIDGE_REQUIRE_PEERS=1`` (``tests/support/peers.py``, which also has the ``shared``
and ``chromium`` fixtures).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.peers import chromium, shared  # noqa: F401 (fixtures)
from support.procs import Server, run_server


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
