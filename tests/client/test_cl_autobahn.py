"""Autobahn|Testsuite fuzzingserver cases 1.*-10.* with lwsbridge as the client under test.

``lwsbridge-test-echo --autobahn-client`` is the testee (getCaseCount, runCase for each,
updateReports).  Uses the shared tools (``$LWSBRIDGE_SHARED`` or ``<repo>/../shared``);
their ``setup.sh`` builds /tmp/autobahn-venv from PyPI on first use (~20 s).
See docs/conformance.md, "Client (fuzzingserver)", for the command and the latest results.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
from clientutil import console_script, free_port, missing_peer, shared_dir

pytestmark = pytest.mark.peers

CASES = '{"cases":["*"],"exclude-cases":["12.*","13.*"]}'
SUITE_TIMEOUT = 600


def stop_group(proc: subprocess.Popen[str]) -> None:
    """Terminate the suite's process group by its leader's PID; kill it after 3 s."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=3)


def test_autobahn_client_cases_1_to_10(tmp_path: Path) -> None:
    shared = shared_dir()
    if shared is None:
        missing_peer(
            "shared tools with autobahn/run_client_suite.sh",
            "set LWSBRIDGE_SHARED or put shared/ beside the clone",
        )
    report = tmp_path / "abc"
    cmd = [
        "bash",
        str(shared / "autobahn" / "run_client_suite.sh"),
        "-o",
        str(report),
        "-p",
        str(free_port()),
        "-a",
        "lwsbridge",
        "-t",
        str(SUITE_TIMEOUT - 30),
        "-c",
        CASES,
        "--",
        *console_script("lwsbridge-test-echo"),
        "--autobahn-client",
        "{url}",
        "--agent",
        "{agent}",
    ]
    # own process group, so that a timeout stops wstest and the testee too
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=SUITE_TIMEOUT)
    except subprocess.TimeoutExpired:
        stop_group(proc)
        stdout, stderr = proc.communicate(timeout=10)
        pytest.fail(f"Autobahn suite did not finish within {SUITE_TIMEOUT} s:\n{stdout}{stderr}")
    finally:
        stop_group(proc)
    summary = f"{stdout}{stderr[-6000:]}\n(reports: {report}/index.html)"
    assert proc.returncode == 0, summary
    assert re.search(r"^\s*FAILED\s+0\s*$", stdout, re.M), summary
    assert re.search(r"^autobahn client: \d+ ok, 0 failed", stdout, re.M), summary
    counts = re.search(r"(\d+) cases reported \((\d+) requested\)", stdout)
    assert counts and counts.group(1) == counts.group(2), summary
    assert int(counts.group(1)) >= 300, summary
    assert "Traceback" not in stderr, summary
