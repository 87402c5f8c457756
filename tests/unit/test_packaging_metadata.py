"""glue/pyproject.toml ships what exists: every package-data glob matches a file."""

from __future__ import annotations

import tomllib
from pathlib import Path

GLUE = Path(__file__).resolve().parents[2] / "glue"


def test_every_package_data_glob_matches_a_file():
    project = tomllib.loads((GLUE / "pyproject.toml").read_text())
    for package, globs in project["tool"]["setuptools"]["package-data"].items():
        directory = GLUE / package.replace(".", "/")
        for pattern in globs:
            assert list(directory.glob(pattern)), f"{package}: {pattern} matches nothing"
