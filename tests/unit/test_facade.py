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
