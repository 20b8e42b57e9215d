"""The documentation site's pages stay true: their programs run, and the reference
tables name every Context option and every callback reason.

Each ```python block of the site's own pages is a complete program; it runs in a
subprocess (servers on loopback port 0) and must exit 0 within a bound.
"""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lwsbridge.context import Context
from lwsbridge.vocabulary import Reason

DOCS = Path(__file__).resolve().parent.parent / "docs"
# The pages written for the site; api.md, architecture.md and conformance.md predate it.
PAGES = ["index.md", "tutorial.md", *sorted(p.name for p in (DOCS / "reference").glob("*.md"))]
RUN_TIMEOUT = 120.0  # seconds for one program: a hang fails instead of stalling CI


def _page(name: str) -> Path:
    return DOCS / name if (DOCS / name).exists() else DOCS / "reference" / name


def _python_blocks() -> list[tuple[str, int, str]]:
    found = []
    for name in PAGES:
        text = _page(name).read_text(encoding="utf-8")
        for i, m in enumerate(re.finditer(r"^```python\n(.*?)^```", text, re.S | re.M)):
            found.append((name, i, m.group(1)))
    return found


BLOCKS = _python_blocks()


def test_the_pages_have_programs() -> None:
    # The tutorial's four sections each have their program.
    assert sum(1 for name, _i, _code in BLOCKS if name == "tutorial.md") == 4


@pytest.mark.parametrize(("page", "index", "code"), BLOCKS, ids=[f"{p}#{i}" for p, i, _ in BLOCKS])
def test_program_runs(page: str, index: int, code: str, tmp_path: Path) -> None:
    script = tmp_path / f"block{index}.py"
    script.write_text(code, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert proc.returncode == 0, f"{page} block {index} failed:\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr


def _first_column(page: Path) -> set[str]:
    """The backquoted names in the first column of the page's tables."""
    return set(re.findall(r"^\| `([A-Za-z_]+)` \|", page.read_text(encoding="utf-8"), re.M))


def test_every_context_option_is_in_the_table() -> None:
    options = set(inspect.signature(Context.__init__).parameters) - {"self"}
    missing = options - _first_column(DOCS / "reference" / "context.md")
    assert not missing, f"Context options missing from docs/reference/context.md: {missing}"


def test_every_reason_is_in_the_tables() -> None:
    page = DOCS / "reference" / "reasons.md"
    rows = {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"^\| `([A-Z_]+)` \| (\d+) \|", page.read_text("utf-8"), re.M)
    }
    missing = {r.name for r in Reason} - set(rows)
    assert not missing, f"reasons missing from docs/reference/reasons.md: {missing}"
    wrong = {name: n for name, n in rows.items() if Reason[name] != n}
    assert not wrong, f"wrong numbers in docs/reference/reasons.md: {wrong}"
