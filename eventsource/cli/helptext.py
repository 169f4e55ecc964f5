"""How ``--help`` renders options: the one adjustment made to Typer's rich help.

Typer 0.29 prints a type beside every option, flags included (``--json <bool>``), which
reads as if the flag took a value. Flags (and ``--help``) show no type here; options that
take a value keep theirs (``--http-port <int>``).
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperOption

_display_type_rich = TyperOption.display_type_rich


def _display_type_without_flags(self: TyperOption, ctx: Any) -> str | None:
    if self.is_flag or self.count:
        return None
    return _display_type_rich(self, ctx)


def install() -> None:
    """Make flags show no type in ``--help`` (idempotent)."""
    TyperOption.display_type_rich = _display_type_without_flags  # type: ignore[method-assign]
