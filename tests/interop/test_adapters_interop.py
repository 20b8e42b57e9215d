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
import time
from pathlib import Path
from typing import Any

import pytest
import test_chromium
from support import autobahn
from support.procs import run_server

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
    label = f"[{loop}] "
    with run_server("lwsbridge-test-echo", tmp_path, "--loop", loop) as srv:
        run = autobahn.run_server_suite(
            shared,
            srv.ws_url.rstrip("/"),
            autobahn.CASES_1_TO_10,
            tmp_path / "ab",
            agent=f"lwsbridge-{loop}",
            timeout=autobahn.SUITE_TIMEOUT,
            label=label,
        )
        # one line per adapter for docs/conformance.md (shown with pytest -s / -rA)
        last = [ln for ln in run.stdout.splitlines() if ln.startswith("autobahn server:")]
        kinds = re.findall(
            r"^\s*(OK|NON-STRICT|INFORMATIONAL|UNIMPLEMENTED|FAILED)\s+(\d+)\s*$",
            run.stdout,
            re.M,
        )
        print(
            f"\nPER-ADAPTER {loop}: {last[-1] if last else '?'}; "
            f"{' '.join(f'{k}={n}' for k, n in kinds)}; wall {run.seconds:.1f} s"
        )
        autobahn.assert_suite_passed(run, "server", label=label)
        srv.assert_alive()


@pytest.mark.parametrize("loop", LOOPS)
def test_chromium_test_page_on_adapter(loop: str, chromium: Any, tmp_path: Path) -> None:
    need_loop(loop)
    with run_server("lwsbridge-test-server", tmp_path, "--loop", loop) as srv:
        start = time.monotonic()
        test_chromium.test_chromium_test_page(chromium, srv)
        took = time.monotonic() - start
    assert took < 10, f"[{loop}] the page checks took {took:.1f} s"
