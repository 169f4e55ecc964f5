"""The public facade stays small, sorted and importable."""

from __future__ import annotations

import ast
import pathlib

import eventsource

PACKAGE = pathlib.Path(eventsource.__file__).parent
LAYER_RULES = {
    # package -> packages it must never import (imports point one way, DESIGN.md)
    "domain": (
        "confluent_kafka",
        "fastavro",
        "sqlalchemy",
        "eventsource.codec",
        "eventsource.store",
        "eventsource.projection",
        "eventsource.kafka",
        "eventsource.service",
        "eventsource.cli",
    ),
    "codec": (
        "confluent_kafka",
        "sqlalchemy",
        "eventsource.store",
        "eventsource.projection",
        "eventsource.service",
        "eventsource.cli",
    ),
    "store": ("sqlalchemy", "eventsource.projection", "eventsource.service", "eventsource.cli"),
    "projection": ("eventsource.store", "eventsource.service", "eventsource.cli"),
}


def test_all_is_sorted_and_small() -> None:
    assert list(eventsource.__all__) == sorted(eventsource.__all__)
    assert len(eventsource.__all__) <= 16


def test_every_exported_name_exists() -> None:
    missing = [name for name in eventsource.__all__ if not hasattr(eventsource, name)]
    assert missing == []


def _imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_imports_point_one_way() -> None:
    violations = []
    for layer, forbidden in LAYER_RULES.items():
        for path in (PACKAGE / layer).rglob("*.py"):
            for name in _imports(path):
                # The codec may use confluent-kafka's schema-registry client (registry mode).
                if layer == "codec" and name.startswith("confluent_kafka.schema_registry"):
                    continue
                if name.startswith(forbidden):
                    violations.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert violations == []


def _module_imports(path: pathlib.Path, module: str) -> set[str]:
    """Modules of eventsource that ``path`` imports at run time (TYPE_CHECKING excluded)."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(sub)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for sub in ast.walk(node)
    }
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _module_graph() -> dict[str, set[str]]:
    files: dict[str, pathlib.Path] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join(parts)] = path
    packages = {m for m, p in files.items() if p.name == "__init__.py"}
    # edges into packages (facades) are left out: a package importing its own modules is
    # not a cycle; its modules must still never import each other in a circle
    return {
        module: {
            m
            for m in _module_imports(path, module)
            if m in files and m != module and m not in packages
        }
        for module, path in files.items()
    }


def test_no_module_imports_itself_through_others() -> None:
    graph = _module_graph()
    cycles: list[list[str]] = []
    done: set[str] = set()

    def visit(module: str, stack: list[str]) -> None:
        if module in stack:
            cycles.append([*stack[stack.index(module) :], module])
            return
        if module in done:
            return
        for imported in sorted(graph[module]):
            visit(imported, [*stack, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    assert [" -> ".join(c) for c in cycles] == []


def test_the_failure_path_types_import_nothing_else_from_projection() -> None:
    graph = _module_graph()
    assert {m for m in graph["eventsource.projection.types"] if ".projection" in m} == set()
