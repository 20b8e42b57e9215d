"""One way to run the shared Autobahn|Testsuite scripts and check their summary.

``run_server_suite.sh`` (fuzzingclient: lwsbridge is the server under test) and
``run_client_suite.sh`` (fuzzingserver: lwsbridge is the client under test) come from the
shared tools (``$LWSBRIDGE_SHARED`` or ``<repo>/../shared``, see ``support.peers``).  Each
run is started in its own process group, so that a timeout stops wstest (and a client
testee) too, not just the script; the group is always stopped by the leader's PID.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.procs import stop_group

CASES_1_TO_10 = '{"cases":["*"],"exclude-cases":["12.*","13.*"]}'
SUITE_TIMEOUT = 600  # seconds for the whole script; wstest itself gets 30 s less


@dataclass
class SuiteRun:
    returncode: int
    stdout: str
    stderr: str
    report: Path  # the -o directory (index.html)
    seconds: float  # wall time of the script


def run_suite(cmd: list[str], report: Path, timeout: float, label: str = "") -> SuiteRun:
    """Run a suite script ``cmd`` in its own process group; fail after ``timeout`` s."""
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_group(proc)
        stdout, stderr = proc.communicate(timeout=10)
        pytest.fail(f"{label}Autobahn suite did not finish within {timeout} s:\n{stdout}{stderr}")
    finally:
        stop_group(proc)
    return SuiteRun(proc.returncode, stdout, stderr, report, time.monotonic() - start)


def run_server_suite(
    shared: Path,
    url: str,
    cases: str,
    report: Path,
    *,
    agent: str = "lwsbridge",
    timeout: float = SUITE_TIMEOUT,
    label: str = "",
) -> SuiteRun:
    """fuzzingclient ``cases`` (a JSON spec or list of ids) against the server at ``url``."""
    cmd = [
        "bash",
        str(shared / "autobahn" / "run_server_suite.sh"),
        "-o",
        str(report),
        "-a",
        agent,
        "-t",
        str(int(timeout) - 30),
        url,
        cases,
    ]
    return run_suite(cmd, report, timeout, label)


def run_client_suite(
    shared: Path,
    testee: Sequence[str],
    cases: str,
    report: Path,
    *,
    port: int,
    agent: str = "lwsbridge",
    timeout: float = SUITE_TIMEOUT,
    label: str = "",
) -> SuiteRun:
    """fuzzingserver on ``port`` with ``testee`` (a command with ``{url}`` / ``{agent}``
    placeholders) as the client under test, for ``cases``."""
    cmd = [
        "bash",
        str(shared / "autobahn" / "run_client_suite.sh"),
        "-o",
        str(report),
        "-p",
        str(port),
        "-a",
        agent,
        "-t",
        str(int(timeout) - 30),
        "-c",
        cases,
        "--",
        *testee,
    ]
    return run_suite(cmd, report, timeout, label)


def summary(run: SuiteRun, label: str = "", stderr_tail: int | None = None) -> str:
    """The script's output and where the reports are, for assertion messages."""
    err = run.stderr if stderr_tail is None else run.stderr[-stderr_tail:]
    return f"{label}{run.stdout}{err}\n(reports: {run.report}/index.html)"


def assert_suite_passed(
    run: SuiteRun,
    role: str,
    *,
    requested: int | None = None,
    min_cases: int | None = None,
    label: str = "",
    stderr_tail: int | None = None,
) -> int:
    """The run exited 0 with ``FAILED 0``, a final ``autobahn ROLE: N ok, 0 failed``
    line, and every requested case reported (``requested`` of them, at least
    ``min_cases``, when given).  Returns the number of cases reported."""
    why = summary(run, label, stderr_tail)
    out = run.stdout
    assert run.returncode == 0, why
    assert re.search(r"^\s*FAILED\s+0\s*$", out, re.M), why
    assert re.search(rf"^autobahn {role}: \d+ ok, 0 failed", out, re.M), why
    counts = re.search(r"(\d+) cases reported \((\d+) requested\)", out)
    assert counts and counts.group(1) == counts.group(2), why
    n = int(counts.group(1))
    if requested is not None:
        assert n == requested, why
    if min_cases is not None:
        assert n >= min_cases, why
    return n
