"""Autobahn|Testsuite fuzzingserver cases 1.*-10.* with lwsbridge as the client under test.

``lwsbridge-test-echo --autobahn-client`` is the testee (getCaseCount, runCase for each,
updateReports).  Uses the shared tools (``$LWSBRIDGE_SHARED`` or ``<repo>/../shared``);
their ``setup.sh`` builds /tmp/autobahn-venv from PyPI on first use (~20 s).
See docs/conformance.md, "Client (fuzzingserver)", for the command and the latest results.
The run and its checks are in ``tests/support/autobahn.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support import autobahn
from support.peers import require_shared
from support.procs import console_script, free_port

pytestmark = pytest.mark.peers


def test_autobahn_client_cases_1_to_10(tmp_path: Path) -> None:
    shared = require_shared("run_client_suite.sh")
    run = autobahn.run_client_suite(
        shared,
        [
            *console_script("lwsbridge-test-echo"),
            "--autobahn-client",
            "{url}",
            "--agent",
            "{agent}",
        ],
        autobahn.CASES_1_TO_10,
        tmp_path / "abc",
        port=free_port(),
        agent="lwsbridge",
        timeout=autobahn.SUITE_TIMEOUT,
    )
    autobahn.assert_suite_passed(run, "client", min_cases=300, stderr_tail=6000)
    assert "Traceback" not in run.stderr, autobahn.summary(run, stderr_tail=6000)
