"""Suite-wide policy: long reliability runs belong to ``make chaos``, not ``make test``.

Tests marked ``slow`` are deselected unless ``EVENTSOURCE_CHAOS`` is set or ``-m`` names
``slow`` explicitly (``make chaos`` does both).
"""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("EVENTSOURCE_CHAOS") or "slow" in (config.getoption("markexpr") or ""):
        return
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if item.get_closest_marker("slow") is None]
