"""Real peers against the apps on every adapter (``--loop L``).

* Autobahn|Testsuite cases 1.*-10.* against ``lwsbridge-test-echo --loop L`` (agent
  ``lwsbridge-L``): exit 0, ``FAILED 0``, every requested case reported; ~15 s each.
* Headless Chromium on ``lwsbridge-test-server --loop L``: the demo page's checks of
  ``test_chromium.py::test_chromium_test_page`` (counter climbs, reset, mirror both ways
  between two tabs); one browser for the whole module.

Both skip when the peer is missing, unless ``LWSBRIDGE_REQUIRE_PEERS=1`` (see conftest).
Per-adapter results are in docs/conformance.md, "Per adapter".
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import test_autobahn
import test_chromium
from peerutil import run_server

from lwsbridge.adapters import LOOPS

pytestmark = pytest.mark.peers

_MODULES = {"zmq": "zmq", "gevent": "gevent", "trio": "trio"}


def need_loop(loop: str) -> None:
    module = _MODULES.get(loop)
    if module is not None and importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (needed by --loop {loop})")


@pytest.mark.parametrize("loop", LOOPS)
def test_autobahn_server_on_adapter(loop: str, shared: Path, tmp_path: Path) -> None:
    need_loop(loop)
    report = tmp_path / "ab"
    with run_server("lwsbridge-test-echo", tmp_path, "--loop", loop) as srv:
        cmd = [
            "bash",
            str(shared / "autobahn" / "run_server_suite.sh"),
            "-o",
            str(report),
            "-a",
            f"lwsbridge-{loop}",
            "-t",
            str(test_autobahn.SUITE_TIMEOUT - 30),
            srv.ws_url.rstrip("/"),
            test_autobahn.CASES,
        ]
        start = time.monotonic()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a timeout stops wstest too
        )
        try:
            stdout, stderr = proc.communicate(timeout=test_autobahn.SUITE_TIMEOUT)
        except subprocess.TimeoutExpired:
            test_autobahn.stop_group(proc)
            stdout, stderr = proc.communicate(timeout=10)
            pytest.fail(f"[{loop}] Autobahn suite did not finish:\n{stdout}{stderr}")
        finally:
            test_autobahn.stop_group(proc)
        took = time.monotonic() - start
        summary = f"[{loop}] {stdout}{stderr}\n(reports: {report}/index.html)"
        # one line per adapter for docs/conformance.md (shown with pytest -s / -rA)
        last = [ln for ln in stdout.splitlines() if ln.startswith("autobahn server:")]
        kinds = re.findall(
            r"^\s*(OK|NON-STRICT|INFORMATIONAL|UNIMPLEMENTED|FAILED)\s+(\d+)\s*$", stdout, re.M
        )
        print(
            f"\nPER-ADAPTER {loop}: {last[-1] if last else '?'}; "
            f"{' '.join(f'{k}={n}' for k, n in kinds)}; wall {took:.1f} s"
        )
        assert proc.returncode == 0, summary
        assert re.search(r"^\s*FAILED\s+0\s*$", stdout, re.M), summary
        assert re.search(r"^autobahn server: \d+ ok, 0 failed", stdout, re.M), summary
        counts = re.search(r"(\d+) cases reported \((\d+) requested\)", stdout)
        assert counts and counts.group(1) == counts.group(2), summary
        srv.assert_alive()


@pytest.mark.parametrize("loop", LOOPS)
def test_chromium_test_page_on_adapter(loop: str, chromium: Any, tmp_path: Path) -> None:
    need_loop(loop)
    with run_server("lwsbridge-test-server", tmp_path, "--loop", loop) as srv:
        start = time.monotonic()
        test_chromium.test_chromium_test_page(chromium, srv)
        took = time.monotonic() - start
    assert took < 10, f"[{loop}] the page checks took {took:.1f} s"
