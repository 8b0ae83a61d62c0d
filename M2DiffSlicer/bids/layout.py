"""A small PET-BIDS reader: participants, sessions, PET runs with their (inherited) sidecars and the session's T1w.

Enough BIDS for a PET BIDS App, tested against the bids-examples PET layouts (pet001-pet006): entities parsed
from file names, `sub-*/[ses-*/]pet/*_pet.nii[.gz]`, JSON sidecars merged by the inheritance principle (from
the dataset root down to the file's folder, each level's sidecar applying when its entities are a subset of the
file's), and `anat/*_T1w.nii[.gz]` of the same session. pybids does this and much more but costs ~140 MB of
extra packages and 0.3 s of import (docs/DEVELOPING.md "BIDS App").
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from ..errors import BadInputError

# BIDS 1.10 schema, rules.sidecars.pet: REQUIRED for every *_pet.nii[.gz].
PET_REQUIRED_FIELDS: tuple[str, ...] = (
    "Manufacturer", "ManufacturersModelName", "Units", "TracerName", "TracerRadionuclide", "InjectedRadioactivity",
    "InjectedRadioactivityUnits", "InjectedMass", "InjectedMassUnits", "SpecificRadioactivity",
    "SpecificRadioactivityUnits", "ModeOfAdministration", "TimeZero", "ScanStart", "InjectionStart",
    "FrameTimesStart", "FrameDuration", "AcquisitionMode", "ImageDecayCorrected", "ImageDecayCorrectionTime",
    "ReconMethodName", "ReconMethodParameterLabels", "ReconFilterType", "AttenuationCorrection",
)
# Required when present-conditions hold (bolus-infusion, reconstruction parameters, a filter): carried when given.
PET_CONDITIONAL_FIELDS: tuple[str, ...] = (
    "ReconMethodParameterUnits", "ReconMethodParameterValues", "ReconFilterSize", "InfusionRadioactivity",
    "InfusionStart", "InfusionSpeed", "InfusionSpeedUnits", "InjectedVolume", "BodyPart",
)
_BOLUS_INFUSION_FIELDS = ("InfusionRadioactivity", "InfusionStart", "InfusionSpeed", "InfusionSpeedUnits",
                          "InjectedVolume")
_NAME = re.compile(r"^(?P<entities>(?:[a-zA-Z]+-[a-zA-Z0-9]+_)*)(?P<suffix>[a-zA-Z0-9]+)(?P<extension>\..+)?$")
NIFTI_EXTENSIONS = (".nii.gz", ".nii")


@dataclasses.dataclass(frozen=True)
class PetRun:
    """One PET image of the dataset: where it is, its entities (in file-name order) and its merged sidecar."""

    path: Path
    entities: tuple[tuple[str, str], ...]
    sidecar: dict[str, Any]
    t1w: Path | None

    @property
    def subject(self) -> str:
        return dict(self.entities)["sub"]

    @property
    def session(self) -> str | None:
        return dict(self.entities).get("ses")

    @property
    def stem(self) -> str:
        """The entity part of the name, e.g. 'sub-01_ses-01_trc-FDG'."""
        return "_".join(f"{key}-{value}" for key, value in self.entities)

    def relative_folder(self) -> Path:
        """sub-<label>/[ses-<label>/]pet, as in the raw dataset and its derivatives."""
        return Path(f"sub-{self.subject}", *([f"ses-{self.session}"] if self.session else []), "pet")


def parse_name(name: str) -> tuple[tuple[tuple[str, str], ...], str, str]:
    """(entities, suffix, extension) of a BIDS file name; BadInputError when it is not one."""
    match = _NAME.match(name)
    if not match:
        raise BadInputError(f"{name} is not a BIDS file name (key-value_..._suffix.extension)")
    pairs = tuple(tuple(part.split("-", 1)) for part in match["entities"].rstrip("_").split("_") if part)
    return pairs, match["suffix"], match["extension"] or ""


def read_dataset_description(bids_dir: str | Path) -> dict[str, Any]:
    """dataset_description.json of a BIDS dataset; BadInputError when the folder is not one."""
    bids_dir = Path(bids_dir)
    if not bids_dir.is_dir():
        raise BadInputError(f"BIDS dataset folder not found: {bids_dir}")
    description = bids_dir / "dataset_description.json"
    if not description.is_file():
        raise BadInputError(f"{bids_dir} is not a BIDS dataset: it has no dataset_description.json")
    data = _read_json(description)
    if not isinstance(data.get("Name"), str) or not isinstance(data.get("BIDSVersion"), str):
        raise BadInputError(f"{description} must give Name and BIDSVersion")
    return data


def participants(bids_dir: str | Path) -> list[str]:
    """The participant labels (without 'sub-') that have a folder, sorted."""
    return sorted(p.name[4:] for p in Path(bids_dir).glob("sub-*") if p.is_dir())


def select_participants(bids_dir: str | Path, labels: list[str] | None) -> list[str]:
    """The labels asked for (with or without 'sub-'), or every participant; BadInputError naming unknown ones."""
    known = participants(bids_dir)
    if not labels:
        if not known:
            raise BadInputError(f"{bids_dir} holds no sub-* participant folders")
        return known
    wanted = [label[4:] if label.startswith("sub-") else label for label in labels]
    unknown = [label for label in wanted if label not in known]
    if unknown:
        raise BadInputError(f"participant label(s) not in {bids_dir}: {', '.join(unknown)} "
                            f"(present: {', '.join(known) or 'none'})")
    return list(dict.fromkeys(wanted))


def pet_runs(bids_dir: str | Path, subject: str, sessions: list[str] | None = None) -> list[PetRun]:
    """The PET images of one participant (optionally only the given session labels), with sidecars and T1w.

    :raises BadInputError: a sidecar is missing, unreadable or lacks required PET fields.
    """
    bids_dir = Path(bids_dir)
    wanted = None if not sessions else {s[4:] if s.startswith("ses-") else s for s in sessions}
    runs = []
    for path in sorted((bids_dir / f"sub-{subject}").glob("**/pet/*_pet.nii*")):
        entities, _, extension = parse_name(path.name)
        if extension not in NIFTI_EXTENSIONS:
            continue
        session = dict(entities).get("ses")
        if wanted is not None and session not in wanted:
            continue
        sidecar = inherited_sidecar(bids_dir, path)
        check_pet_sidecar(sidecar, path)
        runs.append(PetRun(path, entities, sidecar, session_t1w(path.parent.parent, subject, session)))
    return runs


def inherited_sidecar(bids_dir: Path, path: Path) -> dict[str, Any]:
    """The JSON sidecar of `path` merged from the dataset root down to its folder (inheritance principle)."""
    entities, suffix, _ = parse_name(path.name)
    own = set(entities)
    merged: dict[str, Any] = {}
    parts = path.parent.relative_to(bids_dir).parts
    for folder in [bids_dir / Path(*parts[:depth]) for depth in range(len(parts) + 1)]:
        for candidate in sorted(folder.glob(f"*{suffix}.json"), key=lambda p: len(p.name)):
            keys, candidate_suffix, _ = parse_name(candidate.name)
            if candidate_suffix == suffix and set(keys) <= own:
                merged.update(_read_json(candidate))
    if not merged:
        raise BadInputError(f"{path} has no JSON sidecar ({path.name.split('.')[0]}.json)")
    return merged


def check_pet_sidecar(sidecar: dict[str, Any], path: Path) -> None:
    """BadInputError listing the REQUIRED PET fields the sidecar of `path` lacks (BIDS 1.10)."""
    missing = [field for field in PET_REQUIRED_FIELDS if field not in sidecar]
    if sidecar.get("ModeOfAdministration") == "bolus-infusion":
        missing += [field for field in _BOLUS_INFUSION_FIELDS if field not in sidecar]
    if missing:
        raise BadInputError(f"the PET sidecar of {path} lacks required field(s): {', '.join(missing)}")


def session_t1w(session_folder: Path, subject: str, session: str | None) -> Path | None:
    """The session's T1w (anat/*_T1w.nii[.gz]); the shortest name (fewest extra entities) when several."""
    prefix = f"sub-{subject}" + (f"_ses-{session}" if session else "")
    found = [p for p in (session_folder / "anat").glob(f"{prefix}*_T1w.nii*") if p.name.endswith(NIFTI_EXTENSIONS)]
    return min(found, key=lambda p: (len(p.name), p.name)) if found else None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise BadInputError(f"cannot read {path} as JSON: {error}") from None
    if not isinstance(data, dict):
        raise BadInputError(f"{path} must hold a JSON object")
    return data
