"""OSEM with known multiplicative and additive corrections, plus the Gaussian post-filter; same for SD and LD."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .projector import Projector


def osem(counts: np.ndarray, multiplicative: np.ndarray, additive: np.ndarray, projector: Projector,
         iterations: int, support: np.ndarray | None = None) -> np.ndarray:
    """Ordered-subsets EM for counts ~ Poisson(multiplicative * A x + additive).

    counts, multiplicative, additive: [Z, views, bins] (multiplicative = sensitivity x efficiency x attenuation,
    additive = expected scatter + randoms, both in counts). support: [ny, nx] bool field of view or None.
    Returns the image [Z, ny, nx] in the units the system model was scaled to (activity concentration).
    """
    g = projector.geometry
    image = np.ones((counts.shape[0], g.ny, g.nx), np.float32)
    if support is not None:
        image *= support
    subsets = [projector.views_of[k] for k in range(projector.subsets)]
    sensitivity = [projector.back(np.ascontiguousarray(multiplicative[:, views]), subset=k)
                   for k, views in enumerate(subsets)]
    for _ in range(iterations):
        for k, views in enumerate(subsets):
            m, a, y = multiplicative[:, views], additive[:, views], counts[:, views]
            expected = m * projector.forward(image, subset=k) + a
            ratio = np.where(expected > 0, y / np.maximum(expected, 1e-12), 0.0).astype(np.float32)
            update = projector.back(np.ascontiguousarray(m * ratio), subset=k)
            image = np.where(sensitivity[k] > 0, image * update / np.maximum(sensitivity[k], 1e-12), 0.0)
    return image.astype(np.float32)


def post_filter(image: np.ndarray, fwhm_mm: float, spacing_mm: tuple[float, float, float]) -> np.ndarray:
    """3D Gaussian filter of `fwhm_mm` on an image [Z, Y, X] with voxel `spacing_mm` given as (x, y, z)."""
    sigma = [fwhm_mm / 2.3548 / s for s in spacing_mm[::-1]]
    return ndimage.gaussian_filter(image, sigma).astype(np.float32)
