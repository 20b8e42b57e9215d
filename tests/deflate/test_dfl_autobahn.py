"""Autobahn|Testsuite permessage-deflate cases (42 of 12.* and 13.*) against
lwsbridge-test-echo, so that CI exercises deflate conformance (~20-40 s).

The full 12.*/13.* runs (server and client) are in docs/conformance.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.peers

# 12.*: 1000 messages per case with the default offer, per data set (12.1 JSON, 12.2
# bitmap, 12.3 German text, 12.4 HTML, 12.5 PDF), sizes 16 B - 64 KiB, and from x.11 on
# auto-fragmented to 256-byte frames.  13.*: the JSON data with each of the suite's 7
# offer/accept combinations (no context takeover, window bits 9 and 15, fallbacks).
# Explicit ids (wstest only expands "*"); the 128 KiB cases are left to the full run.
_IDS = [f"12.1.{i}" for i in (*range(1, 10), 11, 12, 13, 14)]
_IDS += [f"12.{j}.{i}" for j in range(2, 6) for i in (1, 11)]
_IDS += [f"13.{j}.{i}" for j in range(1, 8) for i in (1, 5, 11)]
CASES = json.dumps(_IDS)
SUITE_TIMEOUT = 300


def _stop_group(proc: subprocess.Popen[str]) -> None:
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


def test_autobahn_deflate_subset(shared: Path, echo: Any, tmp_path: Path) -> None:
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
        f"ws://127.0.0.1:{echo.port}",
        CASES,
    ]
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
        _stop_group(proc)
        stdout, stderr = proc.communicate(timeout=10)
        pytest.fail(f"Autobahn did not finish within {SUITE_TIMEOUT} s:\n{stdout}{stderr}")
    finally:
        _stop_group(proc)
    summary = f"{stdout}{stderr}\n(reports: {report}/index.html)"
    assert proc.returncode == 0, summary
    assert re.search(r"^\s*FAILED\s+0\s*$", stdout, re.M), summary
    assert re.search(r"^\s*UNIMPLEMENTED\s+0\s*$", stdout, re.M), summary  # negotiated
    counts = re.search(r"(\d+) cases reported \((\d+) requested\)", stdout)
    assert counts and counts.group(1) == counts.group(2) == str(len(_IDS)), summary
    echo.assert_alive()
