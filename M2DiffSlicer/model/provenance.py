"""Which weights a run used, for the records derived outputs carry (DICOM DerivationDescription, BIDS sidecars)."""

from __future__ import annotations

import os
from pathlib import Path

from .catalogue import load_catalogue, resolve_weights


def weights_provenance(weights: str | os.PathLike | None = None) -> dict[str, str | None]:
    """{"id", "version", "sha256", "file"} of the weights `weights` resolves to (as resolve_weights does).

    A checkpoint given by path has no catalogue id or version unless its sha256 matches a catalogue entry.
    :raises ModelError: as resolve_weights.
    """
    path, expected = resolve_weights(weights)
    if expected is None:
        from .checkpoint import file_sha256  # imports torch: only for a file given by path, not a catalogue id

        expected = file_sha256(path)
    sha256 = expected
    entry = next((e for e in load_catalogue() if e.sha256 == sha256), None)
    return {"id": entry.id if entry else None, "version": entry.version if entry else None, "sha256": sha256,
            "file": Path(path).name}


def describe_weights(provenance: dict[str, str | None]) -> str:
    """One line naming the weights, e.g. 'm2diff-small-sim 0.6.0 (sha256 5910...)'."""
    name = f"{provenance['id']} {provenance['version']}" if provenance["id"] else provenance["file"]
    return f"{name} (sha256 {provenance['sha256']})"
