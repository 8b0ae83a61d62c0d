"""A small, valid PET-BIDS dataset from the bundled simulated subject (sub-0007), for the BIDS App tests.

sub-01 has a session (ses-01) with an FDG PET and a T1w; sub-02 has a PET only (no session, MRI-free). The
volumes are the simulated subject's LD-PET resampled to 4 mm (sub-02: at 5 mm, standing in for a second scan)
and its T1 at 2.5 mm (the coarsest the input checks take for a T1), so a tiny-model enhance takes seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import SimpleITK as sitk

import synthetic_brain as sb
from M2DiffSlicer.resources import resource_path

SUBJECT = ("SampleData", "sub-0007")
SPACING_MM = (4.0, 4.0, 4.0)
T1_SPACING_MM = (2.5, 2.5, 2.5)
FDG_SIDECAR = {
    "Manufacturer": "Siemens", "ManufacturersModelName": "Biograph mCT (simulated)", "Units": "Bq/mL",
    "BodyPart": "Brain", "TracerName": "FDG", "TracerRadionuclide": "F18", "InjectedRadioactivity": 2.5,
    "InjectedRadioactivityUnits": "MBq", "InjectedMass": "n/a", "InjectedMassUnits": "n/a",
    "SpecificRadioactivity": "n/a", "SpecificRadioactivityUnits": "n/a", "ModeOfAdministration": "bolus",
    "TimeZero": "10:15:00", "ScanStart": 2700, "InjectionStart": 0, "FrameTimesStart": [2700],
    "FrameDuration": [900], "AcquisitionMode": "list mode", "ImageDecayCorrected": True,
    "ImageDecayCorrectionTime": 0, "ReconMethodName": "OSEM", "ReconMethodParameterLabels": ["subsets", "iterations"],
    "ReconMethodParameterUnits": ["none", "none"], "ReconMethodParameterValues": [8, 4],
    "ReconFilterType": "none", "AttenuationCorrection": "CT-based (simulated)",
}


def _sample(name: str, spacing_mm: tuple[float, float, float] = SPACING_MM) -> sitk.Image:
    return sb.resample_to_spacing(sitk.ReadImage(str(resource_path(*SUBJECT, f"{name}.nii.gz")), sitk.sitkFloat32),
                                  spacing_mm)


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _write_image(path: Path, image: sitk.Image) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True)


def build_dataset(root: Path) -> Path:
    """Write the dataset under `root`; returns `root`."""
    _write_json(root / "dataset_description.json",
                {"Name": "M2Diff BIDS App test", "BIDSVersion": "1.10.0", "DatasetType": "raw", "License": "CC0",
                 "Authors": ["M2Diff for 3D Slicer developers"]})
    (root / "README").write_text("Simulated FDG-PET (m2diff simulate, seed 7) for the BIDS App tests.\n")
    (root / "participants.tsv").write_text("participant_id\tgroup\nsub-01\tCN\nsub-02\tCN\n")
    pet01 = root / "sub-01" / "ses-01" / "pet" / "sub-01_ses-01_trc-FDG_pet"
    _write_image(pet01.with_name(pet01.name + ".nii.gz"), _sample("pet_ld_drf100"))
    _write_json(pet01.with_name(pet01.name + ".json"), FDG_SIDECAR)
    _write_image(root / "sub-01" / "ses-01" / "anat" / "sub-01_ses-01_T1w.nii.gz", _sample("t1", T1_SPACING_MM))
    pet02 = root / "sub-02" / "pet" / "sub-02_trc-FDG_pet"
    _write_image(pet02.with_name(pet02.name + ".nii.gz"), _sample("pet_ld_drf100", (5.0, 5.0, 5.0)))
    _write_json(pet02.with_name(pet02.name + ".json"), FDG_SIDECAR)
    return root
