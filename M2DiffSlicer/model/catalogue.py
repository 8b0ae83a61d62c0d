"""The model catalogue Resources/Models/models.json: which trained weights exist and which one is the default.

Each entry is `{id, version, preset, variant, file, sha256, default, training, metrics}` as described by
Resources/Models/models-schema.json; `file` lives next to the catalogue and `sha256` is checked when the weights
are loaded (checkpoint.load_checkpoint).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import jsonschema

from ..errors import ModelError
from .presets import PRESETS, VARIANTS
from ..resources import resource_path

CATALOGUE_FILE = "models.json"
SCHEMA_FILE = "models-schema.json"


@dataclasses.dataclass(frozen=True)
class CatalogueEntry:
    """One trained model of the catalogue."""

    id: str
    version: str
    preset: str
    variant: str
    file: str
    sha256: str
    training: dict[str, Any]
    metrics: dict[str, Any]
    default: bool = False

    @property
    def path(self) -> Path:
        """Where the weights are installed."""
        return resource_path("Models", self.file)


def load_catalogue(path: str | os.PathLike | None = None) -> list[CatalogueEntry]:
    """The validated entries of the catalogue (Resources/Models/models.json unless `path` is given).

    :raises ModelError: the catalogue is missing, not JSON or does not follow the schema.
    """
    path = Path(path) if path is not None else resource_path("Models", CATALOGUE_FILE)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"model catalogue not found: {path}") from None
    except (OSError, ValueError) as error:
        raise ModelError(f"model catalogue {path} is unreadable: {error}") from None
    validate_catalogue(data, source=str(path))
    return [CatalogueEntry(**item) for item in data]


def validate_catalogue(data: Any, source: str = "models.json") -> None:
    """Check catalogue JSON against models-schema.json (jsonschema), then that ids are unique and presets/variants
    exist.

    :raises ModelError: naming the source, the entry and the problem.
    """
    schema = json.loads(resource_path("Models", SCHEMA_FILE).read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    problems = [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(top level)'}: {error.message}"
        for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    ]
    if not problems:
        ids = [item["id"] for item in data]
        problems = [f"duplicate id {model_id!r}" for model_id in sorted({i for i in ids if ids.count(i) > 1})]
        for index, item in enumerate(data):
            if item["preset"] not in PRESETS:
                problems.append(f"{index}/preset: unknown preset {item['preset']!r} (known: {', '.join(PRESETS)})")
            if item["variant"] not in VARIANTS:
                problems.append(f"{index}/variant: unknown variant {item['variant']!r} (known: {', '.join(VARIANTS)})")
    if problems:
        raise ModelError(f"invalid model catalogue {source}: " + "; ".join(problems))


def default_entry(entries: list[CatalogueEntry] | None = None) -> CatalogueEntry:
    """The first entry marked default (of `entries`, or of the installed catalogue).

    :raises ModelError: no entry is marked default.
    """
    entries = load_catalogue() if entries is None else entries
    for entry in entries:
        if entry.default:
            return entry
    raise ModelError(
        "no default model in the catalogue (Resources/Models/models.json): install weights or pass --weights PATH"
    )


def resolve_weights(weights: str | os.PathLike | None = None) -> tuple[Path, str | None]:
    """Where to load weights from, and the sha256 they must have.

    :param weights: None (the catalogue's default model), a catalogue id, or a checkpoint path. An id wins over
        a same-named file.
    :return: (path, expected sha256); the sha256 is None for a path given by the user.
    :raises ModelError: no default model, a catalogued file that is not installed, or an unknown id/path.
    """
    if weights is None:
        entry = default_entry()
    else:
        entries = load_catalogue()
        entry = next((e for e in entries if e.id == str(weights)), None)
        if entry is None:
            path = Path(weights)
            if path.is_file():
                return path, None
            known = ", ".join(e.id for e in entries) or "none installed"
            raise ModelError(f"weights {str(weights)!r} are neither a file nor a catalogue id (ids: {known})")
    if not entry.path.is_file():
        raise ModelError(f"model {entry.id!r} is in the catalogue but its weights are not installed: {entry.path}")
    return entry.path, entry.sha256
