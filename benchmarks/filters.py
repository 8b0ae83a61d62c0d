"""Classical post-filters used as baselines: Gaussian smoothing and the MR-guided filter (He et al., 2013).

Both work on [z, y, x] arrays with physical voxel spacing so a sigma or radius means the same in any grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from M2DiffSlicer.imaging.smoothing import FWHM_PER_SIGMA


def gaussian_postfilter(pet: np.ndarray, fwhm_mm: float, spacing_zyx: Sequence[float]) -> np.ndarray:
    """Gaussian smoothing of `pet` with an isotropic FWHM in mm (the usual clinical post-filter)."""
    if fwhm_mm < 0:
        raise ValueError(f"fwhm_mm must be >= 0, got {fwhm_mm}")
    if fwhm_mm == 0:
        return np.asarray(pet, dtype=np.float32).copy()
    sigma_voxels = [fwhm_mm / FWHM_PER_SIGMA / s for s in spacing_zyx]
    return ndimage.gaussian_filter(np.asarray(pet, dtype=np.float32), sigma_voxels, mode="nearest")


def guided_filter(
    pet: np.ndarray, guide: np.ndarray, radius_mm: float, epsilon: float, spacing_zyx: Sequence[float]
) -> np.ndarray:
    """Edge-preserving smoothing of `pet` steered by an aligned T1 `guide` (guided filter, He et al. TPAMI 2013).

    Within each box window the output is a linear function a * guide + b fitted to the PET by least squares
    with ridge `epsilon` (in squared guide units, guide normalised to [0, 1]): PET edges that coincide with T1
    edges survive, noise elsewhere is averaged away.
    """
    if radius_mm <= 0 or epsilon <= 0:
        raise ValueError(f"radius_mm and epsilon must be positive, got {radius_mm}, {epsilon}")
    if pet.shape != guide.shape:
        raise ValueError(f"pet {pet.shape} and guide {guide.shape} must share a grid")
    size = [max(1, 2 * int(round(radius_mm / s)) + 1) for s in spacing_zyx]
    p = np.asarray(pet, dtype=np.float64)
    g = np.asarray(guide, dtype=np.float64)
    g = (g - g.min()) / max(float(np.ptp(g)), 1e-12)

    def box(array: np.ndarray) -> np.ndarray:
        return ndimage.uniform_filter(array, size=size, mode="nearest")

    mean_g, mean_p = box(g), box(p)
    covariance = box(g * p) - mean_g * mean_p
    variance = box(g * g) - mean_g * mean_g
    a = covariance / (variance + epsilon)
    b = mean_p - a * mean_g
    return (box(a) * g + box(b)).astype(np.float32)
