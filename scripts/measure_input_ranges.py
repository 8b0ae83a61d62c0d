"""Measure the input profile (enhance/input_check.py) of subject folders, and record a model's trained ranges.

    python scripts/measure_input_ranges.py --subjects data/train/sub-1000 ... --drf 100 [--record m2diff-small-sim]
    python scripts/measure_input_ranges.py --subjects data/rand_train/sub-10* --every-dose   # a model trained so

prints each subject's statistics (noise level, brain contrast, registration NMI) as the pipeline measures them;
with --record ID, writes their [min, max] into that catalogue entry's training.input_ranges. Run it on the
subjects (and DRFs) the model was trained on, never on test subjects.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import SimpleITK as sitk

from M2DiffSlicer.atomic import write_text_atomic
from M2DiffSlicer.imaging.input_profile import input_profile
from M2DiffSlicer.imaging.model_grid import prepare_inputs
from M2DiffSlicer.imaging.registration import register_rigid
from M2DiffSlicer.model.catalogue import validate_catalogue
from M2DiffSlicer.resources import resource_path
from M2DiffSlicer.subject_files import ld_file
from M2DiffSlicer.training.data import low_dose_levels


def subject_profile(folder: str, drf: float) -> dict[str, float]:
    """The statistics the pipeline measures for one subject's LD-PET at `drf` with its T1."""
    pet = sitk.ReadImage(f"{folder}/{ld_file(drf)}", sitk.sitkFloat32)
    t1 = sitk.ReadImage(f"{folder}/t1.nii.gz", sitk.sitkFloat32)
    registration = register_rigid(pet, t1)
    profile = input_profile(prepare_inputs(pet, t1, registration.transform).pet)
    return {**profile, "registration_nmi": registration.nmi_after}


def record_ranges(model_id: str, ranges: dict[str, list[float]]) -> None:
    """Write `ranges` into the catalogue entry `model_id` (validated, atomically)."""
    path = resource_path("Models", "models.json")
    catalogue = json.loads(path.read_text(encoding="utf-8"))
    entry = next((item for item in catalogue if item["id"] == model_id), None)
    if entry is None:
        raise SystemExit(f"no catalogue entry {model_id!r}")
    entry["training"]["input_ranges"] = ranges
    validate_catalogue(catalogue)
    write_text_atomic(path, json.dumps(catalogue, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", nargs="+", required=True, help="subject folders (m2diff simulate output)")
    parser.add_argument("--drf", type=float, nargs="+", default=[100.0], help="dose reduction factors to measure")
    parser.add_argument("--every-dose", action="store_true",
                        help="measure every low-dose image each subject has instead (as m2diff train --every-dose)")
    parser.add_argument("--record", default=None, metavar="ID", help="catalogue entry to record the ranges in")
    args = parser.parse_args(argv)
    rows = []
    for folder in args.subjects:
        for drf in low_dose_levels(folder) if args.every_dose else args.drf:
            row = subject_profile(folder, drf)
            rows.append(row)
            print(json.dumps({"subject": folder, "drf": drf, **{k: round(v, 4) for k, v in row.items()}}))
    ranges = {name: [round(float(np.min([r[name] for r in rows])), 4), round(float(np.max([r[name] for r in rows])), 4)]
              for name in rows[0]}
    print(json.dumps({"ranges": ranges}))
    if args.record:
        record_ranges(args.record, ranges)
    return 0


if __name__ == "__main__":
    sys.exit(main())
