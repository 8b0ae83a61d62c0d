"""Gaussian smoothing in millimetres: the FWHM/sigma ratio and the anti-alias blur before a coarser grid."""

from __future__ import annotations

import math
from collections.abc import Sequence

import SimpleITK as sitk

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))  # ~2.3548


def antialias(image: sitk.Image, target_spacing_mm: Sequence[float]) -> sitk.Image:
    """`image` blurred to the resolution of a grid of `target_spacing_mm` (x, y, z) before resampling onto it.

    Each axis gets the Gaussian of the missing FWHM, sqrt(target^2 - source^2); axes already as coarse are left
    alone, and an image already as coarse everywhere (to a tenth of a voxel) is returned as is.
    """
    sigmas = [
        math.sqrt(max(target**2 - source**2, 0.0)) / FWHM_PER_SIGMA
        for source, target in zip(image.GetSpacing(), target_spacing_mm)
    ]
    if max(sigmas) < 0.1 * min(image.GetSpacing()):
        return image
    # SmoothingRecursiveGaussian rejects a zero sigma; 1 um leaves an axis as it is.
    return sitk.SmoothingRecursiveGaussian(image, [max(s, 1e-3) for s in sigmas])
