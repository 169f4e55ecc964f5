"""``make install`` is quiet: no setuptools deprecation or editable-install warning blocks."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def pyproject() -> dict:  # type: ignore[type-arg]
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_the_license_is_an_spdx_expression_not_a_deprecated_table() -> None:
    assert pyproject()["project"]["license"] == "Apache-2.0"


def test_the_build_backend_understands_spdx_licenses() -> None:
    # setuptools 77 is the first to read `license = "<SPDX>"` (PEP 639) without warnings.
    assert pyproject()["build-system"]["requires"] == ["setuptools>=77"]


def test_editable_installs_use_a_plain_path_entry() -> None:
    # With package-dir {"": "."} setuptools writes a .pth file instead of its meta path
    # finder, which prints a ten-line "Editable installation" warning on every install.
    assert pyproject()["tool"]["setuptools"]["package-dir"] == {"": "."}
