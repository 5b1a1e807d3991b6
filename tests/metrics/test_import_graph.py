"""The modules of genlab.metrics import each other one way only, and only at module top level."""

from __future__ import annotations

import ast
from pathlib import Path

import genlab.metrics

PACKAGE = "genlab.metrics"
FOLDER = Path(genlab.metrics.__file__).parent


def metrics_imports() -> tuple[dict[str, set[str]], list[str]]:
    """{module: the genlab.metrics modules it imports} (nested imports included) and the nested ones found."""
    modules = {PACKAGE if p.stem == "__init__" else f"{PACKAGE}.{p.stem}": p for p in FOLDER.glob("*.py")}
    graph: dict[str, set[str]] = {}
    nested: list[str] = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text())
        top_level = {id(node) for node in tree.body}
        graph[module] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            targets = {name for name in names if name in modules and name != module}
            targets = {name for name in targets if name != PACKAGE} or targets
            if targets and id(node) not in top_level:
                nested.append(f"{module}:{node.lineno}")
            graph[module] |= targets
    return graph, nested


def test_metrics_modules_import_one_way_at_top_level():
    graph, nested = metrics_imports()
    assert not nested
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import cycle: {' -> '.join(path + (module,))}"
        if module not in done:
            for dependency in sorted(graph[module]):
                visit(dependency, path + (module,))
            done.add(module)

    for module in sorted(graph):
        visit(module, ())
    assert graph[f"{PACKAGE}.inception_net"] == set()
