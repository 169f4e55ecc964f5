"""Find user objects (projections, aggregates) by import path ``module:attribute``."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from typing import Any, TypeVar

from eventsource.errors import ConfigurationError

T = TypeVar("T")

_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def load_object(path: str) -> Any:
    """Import ``module:attribute`` (the attribute may be dotted) and return it.

    The current directory is importable, as it is for ``python -m``, so
    ``eventsource run app.projections:Balances`` works from a project's root.
    Raises :class:`ConfigurationError` naming the path and what to fix.
    """
    if not _PATH.match(path):
        raise ConfigurationError(
            f"import path {path!r} is not of the form 'package.module:attribute' "
            "(e.g. 'examples.bank.projections:AccountBalances')"
        )
    module_name, _, attribute = path.partition(":")
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigurationError(
            f"cannot import module {module_name!r} of {path!r}: {exc}; check the spelling "
            "and that the package is installed or the command runs from the project's root"
        ) from exc
    except Exception as exc:  # a user module that fails while importing
        raise ConfigurationError(
            f"importing module {module_name!r} of {path!r} failed with {type(exc).__name__}: {exc}"
        ) from exc
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise ConfigurationError(
                f"module {module_name!r} has no attribute {attribute!r} (import path {path!r})"
            ) from exc
    return obj


def load_typed(path: str, kind: type[T], what: str) -> T | type[T]:
    """Load ``path`` and check it is an instance or a subclass of ``kind``."""
    obj = load_object(path)
    if isinstance(obj, kind) or (isinstance(obj, type) and issubclass(obj, kind)):
        return obj
    raise ConfigurationError(
        f"{path!r} is {obj!r}, which is not {what}: point it at a "
        f"{kind.__module__}.{kind.__qualname__} subclass or instance"
    )
