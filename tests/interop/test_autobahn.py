"""Autobahn|Testsuite (fuzzingclient) cases 1.*-10.* against lwsbridge-test-echo.

Uses the shared tools (``$LWSBRIDGE_SHARED`` or ``<repo>/../shared``), which are read-only
in CI: the run script writes only under /tmp and the report directory given with ``-o``.
Its ``setup.sh`` builds /tmp/autobahn-venv from PyPI on first use (~20 s).
See docs/conformance.md for the command and the latest results.
The run and its checks are in ``tests/support/autobahn.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support import autobahn

pytestmark = pytest.mark.peers


def test_autobahn_server_cases_1_to_10(shared: Path, echo_server: Any, tmp_path: Path) -> None:
    run = autobahn.run_server_suite(
        shared,
        f"ws://127.0.0.1:{echo_server.port}",
        autobahn.CASES_1_TO_10,
        tmp_path / "ab",
        agent="lwsbridge",
        timeout=autobahn.SUITE_TIMEOUT,
    )
    autobahn.assert_suite_passed(run, "server")
    echo_server.assert_alive()
