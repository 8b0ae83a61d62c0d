"""The subject's T1: contrast (1.5 T / 3 T-like), smooth bias field, Rician noise, output voxel grid, neck, defacing.

Built from the (warped, atrophied) template intensity on the anatomy grid. With the default T1Config (today's
configuration) the T1 stays on the anatomy grid and every step reproduces the original simulator bit for bit;
other voxel sizes are resampled from the anatomy grid (the template itself is 1 mm, so finer voxels interpolate).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .anatomy import Anatomy, Grid, resample_to_grid
from .body import BodyConfig, body_fraction

MUSCLE_OF_WM = 0.55        # neck muscle on a T1, relative to white matter
DEFACE_BRAIN_MARGIN_MM = 8.0
DEFACE_BELOW_Z_MM = 20.0   # template frame: face and jaw lie below the frontal lobe's floor ...
DEFACE_ANTERIOR_OF_Y_MM = -20.0  # ... and in front of the ears (LPS -y = anterior)


@dataclass(frozen=True)
class T1Config:
    """T1 appearance (DATA.md): gamma, GM/WM contrast, smooth bias field, Rician noise, and the output grid."""

    gamma: tuple[float, float] = (0.8, 1.25)
    contrast: float = 0.10        # +- relative change of GM and WM intensity
    bias: float = 0.10            # +- amplitude of the multiplicative bias field
    noise_of_wm: float = 0.02     # Rician noise sigma as a fraction of the WM intensity
    contrast_scale: float = 1.0   # scales GM/CSF deviations from WM: < 1 flatter (1.5 T-like), > 1 crisper (3 T)
    voxel_mm: tuple[float, float, float] | None = None  # (x, y, z) output spacing; None: the anatomy grid
    neck_mm: float = 0.0          # FOV extension below the template's bottom, filled by the neck block
    deface: bool = False          # zero the face (and jaw) as defacing tools do, never the brain

    def __post_init__(self):
        if self.voxel_mm is not None and not all(0.5 <= v <= 3.0 for v in self.voxel_mm):
            raise ValueError(f"voxel_mm={self.voxel_mm} must be 3 spacings in [0.5, 3] mm or None")
        if self.neck_mm < 0 or self.contrast_scale <= 0:
            raise ValueError(f"neck_mm={self.neck_mm} must be >= 0 and contrast_scale={self.contrast_scale} > 0")


@dataclass
class T1Image:
    """The written T1 [Z, Y, X] (0..~1000 units) on `grid`, with its brain fraction and region ids on the same grid."""

    grid: Grid
    t1: np.ndarray
    brain: np.ndarray
    regions: np.ndarray


def t1_image(anatomy: Anatomy, rng: np.random.Generator, config: T1Config = T1Config(),
             body: BodyConfig | None = None) -> T1Image:
    """A clinical-looking full-head T1 of `anatomy`. body: the neck block's shape (default shape when None)."""
    t1 = _tissue_contrast(anatomy, rng, config)
    grid = output_grid(anatomy.grid, config)
    brain, wm, regions = anatomy.brain, anatomy.wm, anatomy.regions
    if grid != anatomy.grid:
        t1, brain, wm = (resample_to_grid(a, anatomy.grid, grid) for a in (t1, brain, wm))
        regions = resample_to_grid(regions, anatomy.grid, grid, order=0)
        t1 = _add_neck(t1, grid, anatomy.grid, float(np.median(t1[wm * brain > 0.9])), body or BodyConfig())
    t1 = t1 * (1.0 + config.bias * _bias_field(rng, t1.shape))
    wm_level = float(np.median(t1[wm * brain > 0.8]))
    sigma = config.noise_of_wm * wm_level
    t1 = np.hypot(t1 + sigma * rng.standard_normal(t1.shape), sigma * rng.standard_normal(t1.shape))
    if config.deface:
        t1 = np.where(_face_mask(anatomy, grid), 0.0, t1)
    t1 = (1000.0 * t1 / max(float(np.percentile(t1, 99.9)), 1e-6)).astype(np.float32)
    return T1Image(grid=grid, t1=t1, brain=brain.astype(np.float32), regions=regions.astype(np.int16))


def output_grid(anatomy_grid: Grid, config: T1Config) -> Grid:
    """The T1's grid: the anatomy grid's extent (plus `neck_mm` below) at `voxel_mm`; the anatomy grid if unset."""
    if config.voxel_mm is None and config.neck_mm == 0:
        return anatomy_grid
    spacing = np.asarray(config.voxel_mm or anatomy_grid.spacing, dtype=float)
    low = np.asarray(anatomy_grid.origin) - np.asarray(anatomy_grid.spacing) / 2.0 - [0.0, 0.0, config.neck_mm]
    high = (np.asarray(anatomy_grid.origin) + np.asarray(anatomy_grid.spacing)
            * (np.asarray(anatomy_grid.size) - 0.5))
    size = np.ceil((high - low) / spacing).astype(int)
    return Grid(size=tuple(int(n) for n in size), spacing=tuple(float(s) for s in spacing),
                origin=tuple(float(o) for o in low + spacing / 2.0))


def _tissue_contrast(anatomy: Anatomy, rng: np.random.Generator, config: T1Config) -> np.ndarray:
    """Noise-free T1 on the anatomy grid: brain p99 = 1, field-strength contrast, GM/WM jitter, gamma."""
    brain = anatomy.brain
    t1 = anatomy.t1 / max(float(np.percentile(anatomy.t1[brain > 0.5], 99)), 1e-6)
    if config.contrast_scale != 1.0:
        wm_level = float(np.median(t1[anatomy.wm * brain > 0.9]))
        t1 = np.clip(t1 + brain * (config.contrast_scale - 1.0) * (t1 - wm_level), 0, None)
    t1 = t1 * (1.0 + brain * (rng.uniform(-config.contrast, config.contrast) * anatomy.gm
                              + rng.uniform(-config.contrast, config.contrast) * anatomy.wm))
    return np.clip(t1, 0, None) ** rng.uniform(*config.gamma)


def _bias_field(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """A smooth field in [-1, 1] of `shape`, from a 4 x 4 x 4 random lattice."""
    coarse = ndimage.gaussian_filter(rng.standard_normal((4, 4, 4)), 1.0, mode="wrap")
    coarse /= max(float(np.abs(coarse).max()), 1e-12)
    return ndimage.zoom(coarse, [n / 4 for n in shape], order=1)


def _add_neck(t1: np.ndarray, grid: Grid, anatomy_grid: Grid, wm_level: float, body: BodyConfig) -> np.ndarray:
    """Fill the planes below the template with the neck block at muscle intensity (no template data there)."""
    top = anatomy_grid.origin[2] - anatomy_grid.spacing[2] / 2.0
    planes = int(np.sum(grid.origin[2] + grid.spacing[2] * np.arange(grid.size[2]) < top))
    if planes == 0:
        return t1
    slab = Grid(size=(grid.size[0], grid.size[1], planes), spacing=grid.spacing, origin=grid.origin)
    t1 = t1.copy()
    t1[:planes] = np.maximum(t1[:planes], MUSCLE_OF_WM * wm_level * body_fraction(slab.points(), top, body))
    return t1


def _face_mask(anatomy: Anatomy, grid: Grid) -> np.ndarray:
    """True on `grid` where defacing removes the face: anterior-inferior, > 8 mm from the brain."""
    distance = ndimage.distance_transform_edt(anatomy.brain < 0.5, sampling=anatomy.grid.spacing[::-1])
    points = anatomy.grid.points()
    face = ((distance > DEFACE_BRAIN_MARGIN_MM) & (points[2] < DEFACE_BELOW_Z_MM)
            & (points[1] < DEFACE_ANTERIOR_OF_Y_MM))
    return resample_to_grid(face.astype(np.uint8), anatomy.grid, grid, order=0) > 0
