"""Packaging facts that need no build: one version source, the license, classifiers,
extras, the files the wheel must carry, and a stub that matches the C module.

The built artefacts themselves (sdist and wheel contents, ``twine check``, a fresh
install with and without the speedups) are checked by ``.ci/package-check``.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path
from typing import Any

import pytest

import lwsbridge

ROOT = Path(__file__).resolve().parent.parent
tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def _pyproject() -> dict[str, Any]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        data: dict[str, Any] = tomllib.load(f)
    return data


def test_one_version_source() -> None:
    project = _pyproject()["project"]
    assert "version" not in project, "pyproject.toml must not repeat the version"
    assert "version" in project["dynamic"]
    dynamic = _pyproject()["tool"]["setuptools"]["dynamic"]
    assert dynamic["version"] == {"attr": "lwsbridge.__version__"}
    # The installed metadata was made from that one source.
    assert importlib.metadata.version("lwsbridge") == lwsbridge.__version__
    # The changelog has the released version, and the version looks like one.
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+|(a|b|rc)\d+)?", lwsbridge.__version__)
    changelog = (ROOT / "CHANGELOG.md").read_text("utf-8")
    assert "## Unreleased" in changelog or f"## {lwsbridge.__version__}" in changelog


def test_license_expression_and_file() -> None:
    project = _pyproject()["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text("utf-8").startswith("MIT License")
    # setuptools >= 77 refuses a License :: classifier beside an SPDX expression.
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]
    requires = _pyproject()["build-system"]["requires"]
    assert any(
        re.fullmatch(r"setuptools>=(\d+)", r) and int(r.split(">=")[1]) >= 77 for r in requires
    )
    meta = importlib.metadata.metadata("lwsbridge")
    assert meta["License-Expression"] == "MIT"


def test_classifiers_python_versions_and_os() -> None:
    classifiers = set(_pyproject()["project"]["classifiers"])
    for minor in (10, 11, 12, 13):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers
    assert "Operating System :: POSIX :: Linux" in classifiers
    assert "Typing :: Typed" in classifiers
    assert _pyproject()["project"]["requires-python"] == ">=3.10"


def test_project_urls_are_real_https_addresses() -> None:
    urls = _pyproject()["project"]["urls"]
    assert urls
    for label, url in urls.items():
        assert re.fullmatch(r"https://[a-z0-9.-]+\.[a-z]+/\S*", url), (label, url)
    # They reach the installed metadata (Project-URL), which twine check and PyPI show.
    meta = importlib.metadata.metadata("lwsbridge").get_all("Project-URL") or []
    assert {m.split(", ", 1)[1] for m in meta} == set(urls.values())


def test_extras() -> None:
    extras = _pyproject()["project"]["optional-dependencies"]
    assert [r for r in extras["uvloop"] if r.startswith("uvloop")]
    assert {"mkdocs", "mkdocs-material"} <= {re.split(r"[<>=\[]", r)[0] for r in extras["docs"]}
    assert "mkdocstrings[python]" in {re.split(r"[<>=]", r)[0] for r in extras["docs"]}


def test_package_data_files_exist() -> None:
    data = _pyproject()["tool"]["setuptools"]["package-data"]["lwsbridge"]
    pkg = ROOT / "lwsbridge"
    for pattern in ("py.typed", "core/_speedups.pyi", "apps/www/*"):
        assert pattern in data
        assert list(pkg.glob(pattern)), f"package-data {pattern!r} matches no file"


def _method_names(c_source: str, table: str) -> set[str]:
    """The names in the C PyMethodDef array ``table``."""
    body = re.search(rf"PyMethodDef {table}\[\] = \{{(.*?)\n\}};", c_source, re.S)
    assert body, f"no PyMethodDef {table}[] in _speedups.c"
    return set(re.findall(r'^\s*\{"(\w+)",', body.group(1), re.M))


def test_stub_matches_the_c_module() -> None:
    c_source = (ROOT / "lwsbridge" / "core" / "_speedups.c").read_text("utf-8")
    stub = (ROOT / "lwsbridge" / "core" / "_speedups.pyi").read_text("utf-8")
    c_functions = _method_names(c_source, "methods")
    stub_functions = set(re.findall(r"^def (\w+)\(", stub, re.M))
    assert c_functions, "no PyMethodDef entries found in _speedups.c"
    assert stub_functions == c_functions
    # Types: each one added to the module has a stub class with the same methods.
    c_types = set(re.findall(r'PyModule_AddObject\(m, "(\w+)"', c_source))
    stub_classes = dict(re.findall(r"^class (\w+):\n((?:[ \t]+.*\n|\n)*)", stub, re.M))
    assert set(stub_classes) == c_types
    for name in c_types:
        stub_methods = set(re.findall(r"^    def (\w+)\(", stub_classes[name], re.M))
        dunder = {m for m in stub_methods if m.startswith("__")}
        assert stub_methods - dunder == _method_names(c_source, f"{name}_methods")
