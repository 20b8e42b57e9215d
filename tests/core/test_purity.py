"""The core is sans-IO: importing it pulls in no socket, clock, loop or framework."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import lwsbridge.core

FORBIDDEN = ["socket", "select", "selectors", "time", "asyncio", "trio", "gevent", "zmq"]
CORE_DIR = Path(lwsbridge.core.__file__).parent

PROBE = """
import sys
sys.path.insert(0, sys.argv[1])
before = set(sys.modules)
import lwsbridge.core
after = set(sys.modules)
import json
print(json.dumps({"before": sorted(before), "new": sorted(after - before),
                  "builtin": sorted(sys.builtin_module_names)}))
"""


def probe() -> dict[str, list[str]]:
    # -I: isolated (no user site, no PYTHON* env); -S: no site module.
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", PROBE, str(CORE_DIR.parent.parent)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_import_pulls_in_no_io_modules() -> None:
    result = probe()
    assert "lwsbridge.core.connection" in result["new"]
    for name in FORBIDDEN:
        imported = [m for m in result["new"] if m == name or m.startswith(name + ".")]
        assert not imported, f"importing lwsbridge.core imported {imported}"


def test_preloaded_forbidden_modules_come_from_interpreter_startup() -> None:
    """``time`` is in sys.modules of a bare ``python -I -S`` before any user import (the
    import system loads the built-in module at startup), so "not in sys.modules" cannot
    hold for it.  Check precisely instead: anything forbidden that is already present
    was there before lwsbridge was imported, and is a built-in (not a file we loaded)."""
    result = probe()
    preloaded = [m for m in FORBIDDEN if m in result["before"]]
    assert set(preloaded) <= {"time"}, preloaded
    for name in preloaded:
        assert name in result["builtin"]


IMPORT_RE = re.compile(
    r"^\s*(?:import\s+(?:socket|select|selectors|time|asyncio)\b"
    r"|from\s+(?:socket|select|selectors|time|asyncio)(?:\.\w+)*\s+import\b)",
    re.MULTILINE,
)


def test_no_io_imports_in_core_sources() -> None:
    files = sorted(CORE_DIR.glob("*.py"))
    assert len(files) >= 11
    offenders = {f.name: IMPORT_RE.findall(f.read_text()) for f in files}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_static_check_catches_offenders() -> None:
    assert IMPORT_RE.search("import time\n")
    assert IMPORT_RE.search("    import socket  # lazy\n")
    assert IMPORT_RE.search("from asyncio import Queue\n")
    assert IMPORT_RE.search("from select import poll\n")
    assert not IMPORT_RE.search("import timeit\n")
    assert not IMPORT_RE.search("# no import of anything\nx = 'import selectorsx'\n")
