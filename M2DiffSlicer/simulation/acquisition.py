"""PET physics and reconstruction of one subject: PSF, attenuation (with optional mu-map errors), detector
efficiencies, scatter, randoms, Poisson counts at standard dose and each DRF, then OSEM + post-filter.

Runs on the reconstruction grid (`recon_grid`): the PET grid itself when its in-plane pixel is at least
`recon_min_pixel_mm`, else a coarser grid over the same field of view whose images are resampled onto the PET grid
afterwards. Why: the projector's cost grows with the square of the matrix and 2D direct-plane OSEM at 1.0-1.6 mm
pixels would take minutes per subject on one core, while a 2.0 mm grid already resolves a >= 2.5 mm PSF plus
post-filter; real scanners too reconstruct on their own native grid and resample.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from scipy import ndimage

from ..subject_files import ld_name
from .anatomy import Grid
from .projector import Geometry, Projector
from .reconstruction import osem, post_filter

FWHM_PER_SIGMA = 2.3548


class AcquisitionSettings(Protocol):
    """The SimulationConfig fields this module reads (see subject.SimulationConfig for units)."""

    views: int
    bins: int
    subsets: int
    iterations: int
    psf_fwhm_mm: float
    psf_axial_fwhm_mm: float | None
    post_filter_mm: float
    true_counts: tuple[float, float]
    scatter_fraction: float
    randoms_fraction: float
    efficiency_sd: float
    mu_error: float
    mu_shift_mm: tuple[float, float, float]
    drfs: tuple[float, ...]
    noise_free: bool
    recon_min_pixel_mm: float


def recon_grid(pet_grid: Grid, min_pixel_mm: float) -> Grid:
    """The grid reconstruction runs on: `pet_grid`, or the same field of view at `min_pixel_mm` per axis if finer.

    The coarser grid has one extra voxel per axis so it covers every PET voxel centre when resampled back.
    """
    spacing = np.maximum(np.asarray(pet_grid.spacing), min_pixel_mm)
    spacing[1] = spacing[0]  # the projector needs square in-plane pixels
    if np.allclose(spacing, pet_grid.spacing):
        return pet_grid
    extent = np.asarray(pet_grid.spacing) * np.asarray(pet_grid.size)
    size = np.ceil(extent / spacing).astype(int) + 1
    origin = pet_grid.centre() - spacing * (size - 1) / 2.0
    return Grid(size=tuple(int(n) for n in size), spacing=tuple(float(s) for s in spacing),
                origin=tuple(float(o) for o in origin))


def sinogram_bins(nx: int) -> int:
    """Radial bins for an nx-pixel plane: today's ratio (128 bins for 112 pixels), rounded to an even number."""
    return int(2 * round(nx * 4 / 7))


def acquire_and_reconstruct(truth: np.ndarray, mu: np.ndarray, grid: Grid, config: AcquisitionSettings,
                            rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict]:
    """SD, LD (each DRF) and optionally noise-free images [Z, Y, X] on `grid`, and the count statistics.

    truth: activity [Z, Y, X] (Bq/ml); mu: true attenuation map [Z, Y, X] (1/mm) on `grid`. Returns
    (images by name: 'sd', ld_name(drf)..., 'noise_free'; info with SD trues/prompts, scatter, randoms counts).
    """
    geometry = Geometry(nx=grid.size[0], ny=grid.size[1], pixel_mm=grid.spacing[0], views=config.views,
                        bins=config.bins, bin_mm=grid.spacing[0] * grid.size[0] / config.bins)
    projector = _projector(geometry, config.subsets)
    axial = config.psf_fwhm_mm if config.psf_axial_fwhm_mm is None else config.psf_axial_fwhm_mm
    psf_sigma = [fwhm / FWHM_PER_SIGMA / s for fwhm, s in zip((axial, config.psf_fwhm_mm, config.psf_fwhm_mm),
                                                                grid.spacing[::-1])]
    emission = projector.forward(ndimage.gaussian_filter(truth, psf_sigma))
    attenuation = np.exp(-projector.forward(mu))
    efficiency = np.exp(config.efficiency_sd * rng.standard_normal(emission.shape[1:]))[None] \
        * np.exp(0.02 * rng.standard_normal(emission.shape[0]))[:, None, None]

    n_trues = float(rng.uniform(*config.true_counts))
    trues = efficiency * attenuation * emission
    kappa = n_trues / float(trues.sum())
    multiplicative = (kappa * efficiency * attenuation).astype(np.float32)
    if config.mu_error != 0 or any(config.mu_shift_mm):
        # The reconstruction corrects with a wrong mu map (CT/MR-based AC errors, PET/CT misregistration).
        estimate = np.exp(-projector.forward(_mu_estimate(mu, grid, config)))
        recon_multiplicative = (kappa * efficiency * estimate).astype(np.float32)
    else:
        recon_multiplicative = multiplicative
    additive, n_scatter, n_randoms = _scatter_and_randoms(emission, attenuation, efficiency, n_trues, config)
    expected = multiplicative * emission + additive
    support = _support(geometry)

    def reconstruct(counts: np.ndarray, dose: float) -> np.ndarray:
        image = osem(counts, recon_multiplicative * dose, additive * dose, projector, config.iterations, support)
        return post_filter(image, config.post_filter_mm, grid.spacing)

    pets = {"sd": reconstruct(rng.poisson(expected).astype(np.float32), 1.0)}
    for drf in config.drfs:
        pets[ld_name(drf)] = reconstruct(rng.poisson(expected / drf).astype(np.float32), 1.0 / drf)
    if config.noise_free:
        pets["noise_free"] = reconstruct(expected.astype(np.float32), 1.0)
    info = {"sd_trues": n_trues, "sd_prompts": float(expected.sum()), "scatter": n_scatter, "randoms": n_randoms,
            "ld_prompts": {str(drf): float(expected.sum() / drf) for drf in config.drfs}}
    return pets, info


def _scatter_and_randoms(emission: np.ndarray, attenuation: np.ndarray, efficiency: np.ndarray, n_trues: float,
                         config: AcquisitionSettings) -> tuple[np.ndarray, float, float]:
    """Expected additive counts [Z, views, bins] (scatter + randoms) and the scatter and randoms totals."""
    # Scatter: a broad, attenuated blur of the emission along the detector and between planes.
    scatter_shape = efficiency * ndimage.gaussian_filter(emission * attenuation.mean(), (2.0, 2.0, config.bins / 8))
    n_scatter = n_trues * config.scatter_fraction / (1 - config.scatter_fraction)
    scatter = scatter_shape * (n_scatter / float(scatter_shape.sum()))
    n_randoms = (n_trues + n_scatter) * config.randoms_fraction / (1 - config.randoms_fraction)
    randoms = np.full(emission.shape, n_randoms / emission.size)
    return (scatter + randoms).astype(np.float32), n_scatter, n_randoms


def _mu_estimate(mu: np.ndarray, grid: Grid, config: AcquisitionSettings) -> np.ndarray:
    """The reconstruction's mu map: scaled by (1 + mu_error) and shifted by mu_shift_mm (x, y, z)."""
    shift = [-s / spacing for s, spacing in zip(config.mu_shift_mm[::-1], grid.spacing[::-1])]
    return ndimage.shift(mu * (1.0 + config.mu_error), shift, order=1, mode="nearest")


def _support(geometry: Geometry) -> np.ndarray:
    """[ny, nx] bool: the pixels inside the scanner's transaxial field of view."""
    yy, xx = np.mgrid[: geometry.ny, : geometry.nx]
    radius = np.hypot(xx - (geometry.nx - 1) / 2.0, yy - (geometry.ny - 1) / 2.0) * geometry.pixel_mm
    return radius <= geometry.bins * geometry.bin_mm / 2.0


_PROJECTORS: dict = {}
# Randomised subjects each bring their own geometry; a clinical-size projector holds ~0.2 GB, so keep only a few.
MAX_CACHED_PROJECTORS = 2


def _projector(geometry: Geometry, subsets: int) -> Projector:
    """A projector per geometry, cached per process (building one costs a few tenths of a second)."""
    key = (geometry, subsets)
    if key not in _PROJECTORS:
        while len(_PROJECTORS) >= MAX_CACHED_PROJECTORS:
            _PROJECTORS.pop(next(iter(_PROJECTORS)))
        _PROJECTORS[key] = Projector(geometry, subsets)
    return _PROJECTORS[key]
