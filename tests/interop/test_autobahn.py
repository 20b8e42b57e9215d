"""Autobahn|Testsuite (fuzzingclient) cases 1.*-10.* against lwsbridge-test-echo.

Uses the shared tools (``$LWSBRIDGE_SHARED`` or ``<repo>/../shared``), which are read-only
in CI: the run script writes only under /tmp and the report directory given with ``-o``.
Its ``setup.sh`` builds /tmp/autobahn-venv from PyPI on first use (~20 s).
See docs/conformance.md for the command and the latest results.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

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


def test_autobahn_server_cases_1_to_10(shared: Path, echo_server: Any, tmp_path: Path) -> None:
    report = tmp_path / "ab"
    cmd = [
        "bash",
        str(shared / "autobahn" / "run_server_suite.sh"),
        "-o",
        str(report),
        "-a",
        "lwsbridge",
        "-t",
        str(SUITE_TIMEOUT - 30),
        f"ws://127.0.0.1:{echo_server.port}",
        CASES,
    ]
    # own process group, so that a timeout stops wstest too, not just the script
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
    summary = f"{stdout}{stderr}\n(reports: {report}/index.html)"
    assert proc.returncode == 0, summary
    assert re.search(r"^\s*FAILED\s+0\s*$", stdout, re.M), summary
    assert re.search(r"^autobahn server: \d+ ok, 0 failed", stdout, re.M), summary
    counts = re.search(r"(\d+) cases reported \((\d+) requested\)", stdout)
    assert counts and counts.group(1) == counts.group(2), summary
    echo_server.assert_alive()
