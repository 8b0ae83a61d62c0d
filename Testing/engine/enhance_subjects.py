"""Small PET/T1 pairs on awkward grids and a tiny untrained checkpoint, for the pipeline and worker tests.

The checkpoint's meta puts the model grid at 32^3 voxels of 6 mm (the tiny preset is built for 32 x 32 slices), so
a whole enhance job runs in seconds on one CPU core.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk

import synthetic_brain as sb

TEST_GRID = {"grid_spacing_mm": 6.0, "grid_size": [32, 32, 32]}


def tiny_checkpoint(path: Path, seed: int = 0) -> Path:
    """Save an untrained tiny-preset M2DiffNet whose meta names the 6 mm test grid."""
    import torch

    from M2DiffSlicer.model.checkpoint import save_checkpoint
    from M2DiffSlicer.model.config import model_config
    from M2DiffSlicer.model.unet import build_model

    torch.manual_seed(seed)
    config = model_config("tiny")
    save_checkpoint(path, build_model(config), config, meta={"step": 0, "train_config": TEST_GRID})
    return path


def oblique_grid(image: sitk.Image, spacing_mm=(3.0, 2.5, 3.5), angle_deg: float = 20.0,
                 extent_mm: float = 200.0) -> sitk.Image:
    """`image` resampled onto an anisotropic grid rotated by `angle_deg` about z, centred on the image centre."""
    centre = np.array(image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in image.GetSize()]))
    a = np.deg2rad(angle_deg)
    direction = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    size = [int(np.ceil(extent_mm / s)) for s in spacing_mm]
    origin = centre - direction @ ((np.array(size) - 1) / 2 * np.array(spacing_mm))
    return sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, origin.tolist(), list(spacing_mm),
                         direction.ravel().tolist(), 0.0, sitk.sitkFloat32)


def write_subject(folder: Path) -> dict[str, Path]:
    """PET (oblique, anisotropic, Bq/ml-like) and T1 (2 mm, axis-aligned) files in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"pet": folder / "pet.nii.gz", "t1": folder / "t1.nii.gz"}
    sitk.WriteImage(oblique_grid(sb.pet_like((2.0, 2.0, 2.0))), str(paths["pet"]))
    sitk.WriteImage(sb.t1_like((2.0, 2.0, 2.0)), str(paths["t1"]))
    return paths


def digest(path: Path) -> str:
    """sha256 of a file (to prove inputs are untouched)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
