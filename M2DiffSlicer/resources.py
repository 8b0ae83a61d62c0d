"""Locate the project's Resources/ (models, sample data, atlas) from a source checkout or an installed wheel."""

from __future__ import annotations

import os
from pathlib import Path

_ENV_VAR = "M2DIFF_RESOURCES"


def resources_root() -> Path:
    """The Resources folder: $M2DIFF_RESOURCES, else the installed copy, else the repository's."""
    override = os.environ.get(_ENV_VAR)
    if override:
        return Path(override)
    package_dir = Path(__file__).resolve().parent
    installed = package_dir / "_resources"  # wheels map Resources/ here (see pyproject.toml)
    if installed.is_dir():
        return installed
    return package_dir.parent / "Resources"


def resource_path(*parts: str) -> Path:
    """Path of a file or folder inside Resources/, e.g. resource_path("Models", "models.json")."""
    return resources_root().joinpath(*parts)
