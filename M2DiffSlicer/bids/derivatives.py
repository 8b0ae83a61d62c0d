"""The BIDS-Derivatives dataset `m2diff bids` writes: names, sidecars, ROI tables, dataset_description.json.

Layout (per PET run of the raw dataset, same entities, same space, so no `space-` entity):
  OUTPUT_DIR/dataset_description.json, .bidsignore
  OUTPUT_DIR/sub-<l>/[ses-<l>/]pet/<entities>_desc-m2diff_pet.nii.gz + .json        enhanced PET
  OUTPUT_DIR/sub-<l>/[ses-<l>/]pet/<entities>_desc-m2diffstd_pet.nii.gz + .json     uncertainty (when asked)
  OUTPUT_DIR/sub-<l>/[ses-<l>/]pet/<entities>_desc-m2diff_roi.tsv + .json          ROI table and its columns
  OUTPUT_DIR/group/...                                                             group level (group.py)
Every file is written atomically (temporary name beside it, then rename), and files shared by participants
(dataset_description.json, .bidsignore) only ever get the same content, so many participant jobs may write one
output folder at once.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path
from typing import Any

from .. import __version__
from ..atomic import atomic_path, write_text_atomic
from .layout import PET_CONDITIONAL_FIELDS, PET_REQUIRED_FIELDS, PetRun

CODE_URL = "https://github.com/m2diff/SlicerM2Diff"
BIDS_VERSION = "1.10.0"
DESC = "m2diff"
UNCERTAINTY_DESC = "m2diffstd"
# Not BIDS-defined suffixes or folders: the ROI tables and the group level (fMRIPrep does the same for its own).
BIDSIGNORE = "*_roi.tsv\n*_roi.json\n/group\n"
ROI_COLUMNS: dict[str, str] = {
    "label": "Label value of the region in the labelmap (the built-in lobar atlas brought to the subject).",
    "name": "Region name.",
    "volume_ml": "Region volume in millilitres.",
    "input_mean": "Mean of the input (low-dose) PET in the region, in the PET's Units.",
    "enhanced_mean": "Mean of the M2Diff-enhanced PET in the region, in the PET's Units.",
    "input_suvr": "Input region mean divided by the reference-region (cerebellum) mean.",
    "enhanced_suvr": "Enhanced region mean divided by the reference-region (cerebellum) mean.",
    "change_pct_mean": "100 x (enhanced_mean - input_mean) / input_mean.",
    "change_pct_suvr": "100 x (enhanced_suvr - input_suvr) / input_suvr.",
}


@dataclasses.dataclass(frozen=True)
class RunOutputs:
    """The derivative files of one PET run."""

    pet: Path
    pet_json: Path
    uncertainty: Path
    uncertainty_json: Path
    roi_tsv: Path
    roi_json: Path

    def required(self, uncertainty: bool) -> list[Path]:
        """The files a finished run has; the enhanced PET comes last, as it is written last."""
        extra = [self.uncertainty_json, self.uncertainty] if uncertainty else []
        return [self.roi_json, self.roi_tsv, self.pet_json, *extra, self.pet]

    def finished(self, uncertainty: bool) -> bool:
        return all(path.is_file() for path in self.required(uncertainty))


def run_outputs(output_dir: Path, run: PetRun) -> RunOutputs:
    folder = output_dir / run.relative_folder()
    base = f"{run.stem}_desc-{DESC}"
    return RunOutputs(pet=folder / f"{base}_pet.nii.gz", pet_json=folder / f"{base}_pet.json",
                      uncertainty=folder / f"{run.stem}_desc-{UNCERTAINTY_DESC}_pet.nii.gz",
                      uncertainty_json=folder / f"{run.stem}_desc-{UNCERTAINTY_DESC}_pet.json",
                      roi_tsv=folder / f"{base}_roi.tsv", roi_json=folder / f"{base}_roi.json")


def dataset_description(bids_dir: Path, raw: dict[str, Any]) -> dict[str, Any]:
    """dataset_description.json of the derivative dataset, pointing at the raw one."""
    source = {"URL": bids_dir.resolve().as_uri()}
    if raw.get("DatasetDOI"):
        source["DOI"] = raw["DatasetDOI"]
    return {"Name": f"M2Diff-enhanced PET of {raw.get('Name', bids_dir.name)}", "BIDSVersion": BIDS_VERSION,
            "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "M2Diff", "Version": __version__, "CodeURL": CODE_URL,
                             "Description": "MRI-guided multi-modality multi-task diffusion enhancement of "
                                            "low-dose PET (research use only)"}],
            "SourceDatasets": [source], "DatasetLinks": {"raw": bids_dir.resolve().as_uri()}}


def write_dataset_files(output_dir: Path, bids_dir: Path, raw: dict[str, Any]) -> None:
    """dataset_description.json and .bidsignore, each written only when absent or different (atomically)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    _write_if_changed(output_dir / "dataset_description.json",
                      json.dumps(dataset_description(bids_dir, raw), indent=2) + "\n")
    _write_if_changed(output_dir / ".bidsignore", BIDSIGNORE)


def pet_sidecar(run: PetRun, timing: dict[str, list[float]], provenance: dict[str, Any], warnings: list[str],
                bids_dir: Path, uncertainty: bool = False) -> dict[str, Any]:
    """The derivative PET sidecar: the raw required PET fields, then provenance (Sources, model, warnings).

    :param timing: {"FrameTimesStart": [...], "FrameDuration": [...]} of the static image enhanced.
    :param provenance: model id/version/sha256 (model.provenance.weights_provenance) and "Frames" averaged.
    """
    carried = {key: run.sidecar[key] for key in (*PET_REQUIRED_FIELDS, *PET_CONDITIONAL_FIELDS)
               if key in run.sidecar}
    sources = [_bids_uri(run.path, bids_dir)] + ([_bids_uri(run.t1w, bids_dir)] if run.t1w else [])
    what = ("Per-voxel standard deviation of the M2Diff estimates across slice orientations and decoders"
            if uncertainty else "Low-dose PET enhanced by M2Diff")
    mode = "MRI-guided (T1w of the session)" if run.t1w else "MRI-free (no T1w in the session)"
    return {**carried, **timing, "Sources": sources, "SkullStripped": False,
            "Description": f"{what}, {mode}; on the input's grid and in its units. Research use only.",
            "M2DiffMode": "mri-guided" if run.t1w else "mri-free",
            "M2DiffModel": {"Id": provenance["id"], "Version": provenance["version"],
                            "Sha256": provenance["sha256"], "File": provenance["file"]},
            "M2DiffFramesAveraged": provenance["frames"], "M2DiffWarnings": list(warnings)}


def roi_rows(table: dict[str, Any]) -> list[dict[str, Any]]:
    """The ROI JSON table (imaging.roi) as TSV rows with ROI_COLUMNS."""
    rows = []
    for row in table["rows"]:
        change = row.get("change_pct", {})
        rows.append({"label": row["label"], "name": row["name"], "volume_ml": row["volume_ml"],
                     "input_mean": row["input"]["mean"], "enhanced_mean": row["enhanced"]["mean"],
                     "input_suvr": row["input"]["suvr"], "enhanced_suvr": row["enhanced"]["suvr"],
                     "change_pct_mean": change.get("mean"), "change_pct_suvr": change.get("suvr")})
    return rows


def roi_columns_sidecar() -> dict[str, Any]:
    """The JSON sidecar of an ROI table: a description per column."""
    return {column: {"Description": text} for column, text in ROI_COLUMNS.items()}


def tsv_text(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Tab-separated text with a header; missing and non-finite values as BIDS's n/a."""
    lines = ["\t".join(columns)]
    lines += ["\t".join(_tsv_value(row.get(column)) for column in columns) for row in rows]
    return "\n".join(lines) + "\n"


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def copy_atomic(source: Path, destination: Path) -> None:
    """Copy a finished file into the derivative dataset under a temporary name, then rename it into place."""
    with atomic_path(destination) as temp:
        shutil.copyfile(source, temp)


def _tsv_value(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _bids_uri(path: Path, bids_dir: Path) -> str:
    return f"bids:raw:{path.resolve().relative_to(bids_dir.resolve()).as_posix()}"


def _write_if_changed(path: Path, text: str) -> None:
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        write_text_atomic(path, text)
