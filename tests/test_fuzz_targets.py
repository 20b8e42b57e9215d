"""The fuzz targets of fuzz/ stay runnable: each runs its seed corpus once, both ways.

Fuzzing itself (atheris, ``python fuzz/run.py --seconds 60``) runs in .ci/run after the
tests; this keeps the targets from rotting between runs and replays every input that
once broke something (fuzz/crashes/<target>/) on every test run.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lwsbridge_fuzz_targets", FUZZ / "targets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


targets = _load()


@pytest.fixture(autouse=True)
def _every_input_both_ways(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Fuzzing runs the byte-by-byte comparison on a sample of inputs; here on all.
    monkeypatch.setattr(targets, "SPLIT_EVERY", 1)
    yield


def _inputs(kind: str, name: str) -> list[Path]:
    d = FUZZ / kind / name
    return sorted(d.iterdir()) if d.is_dir() else []


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_seed_corpus_and_fixed_crashes(name: str) -> None:
    target = targets.TARGETS[name]
    seeds = _inputs("corpus", name)
    assert len(seeds) >= 10, f"fuzz/corpus/{name} lost its seeds"
    for path in [*seeds, *_inputs("crashes", name)]:
        data = path.read_bytes()
        assert len(data) <= target.max_len, f"{path} is longer than the fuzzer's max_len"
        target.fn(data)
    target.fn(b"")


def test_runner_summary_line() -> None:
    """fuzz/run.py runs a target under atheris and ends with the summary CI reads."""
    pytest.importorskip("atheris")
    proc = subprocess.run(
        [sys.executable, str(FUZZ / "run.py"), "--runs", "50", "--targets", "http_head"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    last = proc.stdout.strip().splitlines()[-1]
    m = re.fullmatch(r"fuzz: (\d+) executions, (\d+) crashes", last)
    assert m is not None, proc.stdout[-2000:]
    assert int(m.group(1)) >= 50 and m.group(2) == "0"
    assert proc.returncode == 0
