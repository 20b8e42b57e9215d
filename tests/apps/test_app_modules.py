"""The apps' module layout: no import cycle among them, no product module named like a
test, and every console script points at a ``main`` that exists."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import tomllib

import lwsbridge
import lwsbridge.apps

PACKAGE = Path(lwsbridge.__file__).parent
APPS = Path(lwsbridge.apps.__file__).parent
PYPROJECT = PACKAGE.parent / "pyproject.toml"


def _apps_imports(path: Path) -> set[str]:
    """Names of the ``lwsbridge.apps`` modules ``path`` imports, lazy imports included
    (a cycle through a function-level import is a cycle all the same)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            # ``from lwsbridge.apps import x`` imports module x; ``from lwsbridge.apps.x
            # import f`` imports module x as well.
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            in_apps = parts[:2] == ["lwsbridge", "apps"] and len(parts) > 2
            if in_apps and (APPS / f"{parts[2]}.py").exists():
                found.add(parts[2])
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path of module names, or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for nxt in sorted(graph[node]):
            if found := visit(nxt, [*path, node]):
                return found
        done.add(node)
        return None

    for start in sorted(graph):
        if found := visit(start, []):
            return found
    return None


def test_cycle_finder_finds_a_cycle() -> None:
    # The check below is only worth something if the finder reports a real cycle.
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"b"}}) is None


def test_no_import_cycle_among_the_apps() -> None:
    graph = {p.stem: _apps_imports(p) for p in APPS.glob("*.py") if p.stem != "__init__"}
    graph = {name: deps - {name} for name, deps in graph.items()}
    assert graph["echo_client"] >= {"echo_protocol"}
    assert graph["echo_server"] >= {"echo_protocol"}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_no_product_module_is_named_like_a_test() -> None:
    named = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("test_*.py"))
    assert named == []


def test_console_scripts_point_at_an_existing_main() -> None:
    scripts = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]
    assert set(scripts) >= {"lwsbridge-test-server", "lwsbridge-test-echo", "lwsbridge-test-client"}
    for name, target in scripts.items():
        module, _, attr = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), name
