"""Realistic-looking PET/T1 pairs built from the MNI152 2009a template that ships inside the nilearn wheel.

Used by the validation, registration and atlas tests; plain functions (not fixtures) so each test module picks
its own grid. PET ~ 4 * GM + WM + a faint scalp-free background, smoothed by a PET-like PSF; T1 = the template.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import SimpleITK as sitk

_NILEARN_DATA = "datasets/data/mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"


def _nilearn_file(kind: str) -> Path:
    import nilearn

    return Path(nilearn.__file__).parent / _NILEARN_DATA.format(kind)


@functools.lru_cache(maxsize=None)
def template(kind: str) -> sitk.Image:
    """The 1 mm MNI template image `kind` in {"t1", "gm", "wm"} as float32 (cached; never mutate it)."""
    return sitk.Cast(sitk.ReadImage(str(_nilearn_file(kind))), sitk.sitkFloat32)


def resample_to_spacing(image: sitk.Image, spacing_mm: tuple[float, float, float]) -> sitk.Image:
    """Smooth-free linear resampling of `image` onto a grid with the same extent and the given spacing."""
    size = [int(round(n * s / t)) for n, s, t in zip(image.GetSize(), image.GetSpacing(), spacing_mm)]
    return sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), spacing_mm,
                         image.GetDirection(), 0.0, sitk.sitkFloat32)


def pet_like(spacing_mm: tuple[float, float, float] = (3.0, 3.0, 3.0), fwhm_mm: float = 6.0) -> sitk.Image:
    """FDG-like PET in MNI space: 4 * GM + WM, Gaussian PSF of `fwhm_mm`, Bq/ml-like scale (WM = 5000)."""
    gm, wm = template("gm"), template("wm")
    activity = (4.0 * gm + wm) * (5000.0 / 255.0)  # the nilearn maps are probabilities x 255
    # The recursive Gaussian rings slightly below 0 at the brain edge; activity is never negative.
    smoothed = sitk.Clamp(sitk.SmoothingRecursiveGaussian(activity, fwhm_mm / 2.3548), lowerBound=0.0)
    return resample_to_spacing(smoothed, spacing_mm)


def t1_like(spacing_mm: tuple[float, float, float] = (2.0, 2.0, 2.0)) -> sitk.Image:
    """The template T1 (skull-stripped, WM brightest) on a grid of `spacing_mm`."""
    return resample_to_spacing(template("t1"), spacing_mm)


def known_rigid(rotation_deg: tuple[float, float, float], translation_mm: tuple[float, float, float],
                centre: tuple[float, float, float] = (0.0, -18.0, 18.0)) -> sitk.Euler3DTransform:
    """An Euler3D transform rotating about `centre` (mm, near the MNI brain centre) then translating."""
    transform = sitk.Euler3DTransform()
    transform.SetCenter(centre)
    transform.SetRotation(*np.deg2rad(rotation_deg))
    transform.SetTranslation(translation_mm)
    return transform


def misaligned_t1(truth: sitk.Transform, spacing_mm: tuple[float, float, float] = (2.0, 2.0, 2.0)) -> sitk.Image:
    """A T1 such that sitk.Resample(t1, pet, truth) lands on the template, i.e. `truth` is the true T1->PET map.

    The grid is padded by 20 mm so the moved head stays inside it.
    """
    base = t1_like(spacing_mm)
    pad = [int(np.ceil(20.0 / s)) for s in spacing_mm]
    size = [n + 2 * p for n, p in zip(base.GetSize(), pad)]
    origin = [o - p * s for o, p, s in zip(base.GetOrigin(), pad, spacing_mm)]
    return sitk.Resample(template("t1"), size, truth.GetInverse(), sitk.sitkLinear, origin, spacing_mm,
                         base.GetDirection(), 0.0, sitk.sitkFloat32)


def brain_points(pet: sitk.Image, fraction_of_max: float = 0.2, max_points: int = 4000) -> np.ndarray:
    """Physical coordinates [M x 3] (mm) of an even subset of PET voxels above `fraction_of_max` of the max."""
    array = sitk.GetArrayViewFromImage(pet)
    xyz = np.argwhere(array > fraction_of_max * array.max())[:, ::-1].astype(float)
    xyz = xyz[:: max(1, len(xyz) // max_points)]
    direction = np.array(pet.GetDirection()).reshape(3, 3)
    return np.array(pet.GetOrigin()) + (xyz * np.array(pet.GetSpacing())) @ direction.T


def mean_displacement_mm(a: sitk.Transform, b: sitk.Transform, points: np.ndarray) -> float:
    """Mean distance (mm) between where transforms `a` and `b` send each of `points` [M x 3]."""
    moved_a = np.array([a.TransformPoint(p) for p in points])
    moved_b = np.array([b.TransformPoint(p) for p in points])
    return float(np.linalg.norm(moved_a - moved_b, axis=1).mean())
