"""One simulated subject end to end (anatomy -> activity -> PET physics -> OSEM) and the subject-folder writer.

Seeds: training subjects use seeds 1000+, held-out test subjects 9000+, the committed sample subject seed 7.
The folder format is the contract of docs/DEVELOPING.md "Subject folders".
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from . import activity as act
from . import anatomy as ana
from .projector import Geometry, Projector
from .reconstruction import osem, post_filter

BONE_MU, TISSUE_MU = 0.0151, 0.0096  # 511 keV linear attenuation, 1/mm


@dataclass(frozen=True)
class SimulationConfig:
    """Every knob of one subject; defaults follow DATA.md. `reduced()` is a fast coarse variant for tests."""

    anatomy_mm: float = 1.5
    pet_size: tuple[int, int, int] = (112, 112, 80)      # x, y, z voxels
    pet_spacing: tuple[float, float, float] = (2.0, 2.0, 2.0)
    pet_centre_mni: tuple[float, float, float] = (0.0, 18.0, 15.0)  # LPS mm of the PET FOV centre before misalignment
    views: int = 128
    bins: int = 128
    subsets: int = 16
    iterations: int = 4
    psf_fwhm_mm: float = 4.5
    post_filter_mm: float = 4.0
    # Direct-plane counts. DATA.md's 2-5e8 gave LD100 ~15 dB here (SD vs noise-free ~35 dB); 6x more restores its
    # measured difficulty (LD100 ~23 dB, SD ~41 dB): a 2D-only model lacks the oblique LORs of a 3D scanner.
    true_counts: tuple[float, float] = (1.2e9, 3.0e9)
    scatter_fraction: float = 0.30        # scatter / (trues + scatter)
    randoms_fraction: float = 0.15        # randoms / prompts
    efficiency_sd: float = 0.05           # per-LOR detector efficiency spread
    misalign_deg: float = 5.0
    misalign_mm: float = 6.0
    drfs: tuple[int, ...] = (20, 100)
    group: str | None = None              # CN / MCI / AD, or None to draw (40/30/30 %)
    severity: float | None = None         # hypometabolism severity, or None to draw from the group's range
    noise_free: bool = False              # also reconstruct the expected sinogram (for benchmarks/tests)
    warp: ana.WarpConfig = field(default_factory=ana.WarpConfig)
    t1: ana.T1Config = field(default_factory=ana.T1Config)
    activity: act.ActivityConfig = field(default_factory=act.ActivityConfig)

    def __post_init__(self):
        if self.group is not None and self.group not in {g.value for g in act.Group}:
            raise ValueError(f"group={self.group!r} must be one of {[g.value for g in act.Group]} or None")
        if self.severity is not None and not 0.0 <= self.severity < 1.0:
            raise ValueError(f"severity={self.severity} must be in [0, 1)")
        if any(d < 1 for d in self.drfs):
            raise ValueError(f"drfs={self.drfs} must be >= 1")
        if self.views % self.subsets:
            raise ValueError(f"subsets={self.subsets} must divide views={self.views}")

    @classmethod
    def reduced(cls, **overrides) -> "SimulationConfig":
        """3 mm anatomy, 4 mm PET on a 56x56x40 grid: seconds per subject, same physics."""
        values = dict(anatomy_mm=3.0, pet_size=(56, 56, 40), pet_spacing=(4.0, 4.0, 4.0), views=64, bins=64,
                      subsets=8)
        values.update(overrides)
        return cls(**values)


@dataclass
class Subject:
    """Arrays [Z, Y, X] and their grids. pets: name -> PET image ('sd', 'ld_drf020', ..., optional 'noise_free')."""

    seed: int
    t1: np.ndarray
    t1_brain: np.ndarray
    roi_t1: np.ndarray
    t1_grid: ana.Grid
    pets: dict[str, np.ndarray]
    truth: np.ndarray
    roi_pet: np.ndarray
    brain_pet: np.ndarray
    pet_grid: ana.Grid
    transform: dict
    meta: dict


def simulate_subject(seed: int, config: SimulationConfig = SimulationConfig()) -> Subject:
    """Simulate one subject from `seed` (same seed and config -> identical arrays)."""
    rng = np.random.default_rng(seed)
    group = act.Group(config.group) if config.group else act.Group(rng.choice(["CN", "MCI", "AD"], p=[.4, .3, .3]))
    severity = float(rng.uniform(*act.SEVERITY[group]))
    severity = severity if config.severity is None else float(config.severity)

    anatomy = ana.random_warp(ana.load_template(config.anatomy_mm), rng, config.warp)
    t1 = ana.t1_appearance(anatomy, rng, config.t1)
    suvr = act.target_suvr(rng, group, severity, config.activity)
    activity, activity_info = act.activity_map(anatomy, suvr, rng, config.activity)

    pet_grid, transform = _pet_frame(config, rng)
    source_index = anatomy.grid.to_index(_apply_transform(transform, pet_grid.points()))
    # Pre-filter by a PET voxel's box width (sigma = width / sqrt(12)) before point sampling: partial volume.
    box = [p / np.sqrt(12.0) / config.anatomy_mm for p in config.pet_spacing[::-1]]
    truth = ndimage.map_coordinates(ndimage.gaussian_filter(activity, box), source_index, order=1)
    head_fraction = ndimage.map_coordinates(anatomy.head, source_index, order=1)
    bone = ndimage.map_coordinates(anatomy.bone, source_index, order=1)
    mu = head_fraction * TISSUE_MU + bone * (BONE_MU - TISSUE_MU)
    roi_pet = ndimage.map_coordinates(_reported(anatomy.regions), source_index, order=0)
    brain_pet = ndimage.map_coordinates(anatomy.brain, source_index, order=1) >= 0.5

    pets, counts_info = _acquire_and_reconstruct(truth, mu, pet_grid, config, rng)

    names = act.region_names()
    suvr_of = {name: _regional_suvr(image, roi_pet, names) for name, image in [("truth", truth), *pets.items()]}
    meta = {
        "seed": seed, "group": group.value, "severity": severity,
        "counts": counts_info, "transform": transform, "activity": activity_info,
        "target_suvr": {names[k]: float(suvr[k]) for k in names},
        "regional_suvr": suvr_of, "reference_region": "pons",
        "labels": {str(k): v for k, v in names.items()},
        "units": "Bq/ml", "config": _jsonable(dataclasses.asdict(config)),
    }
    return Subject(seed=seed, t1=t1, t1_brain=(t1 * (anatomy.brain > 0.5)).astype(np.float32),
                   roi_t1=_reported(anatomy.regions).astype(np.uint8), t1_grid=anatomy.grid, pets=pets,
                   truth=truth.astype(np.float32), roi_pet=roi_pet.astype(np.uint8),
                   brain_pet=brain_pet, pet_grid=pet_grid,
                   transform=transform, meta=meta)


def _reported(regions: np.ndarray) -> np.ndarray:
    """Region ids with simulator-only classes (>= 100) removed."""
    return np.where(regions < act.OTHER_DEEP_GM, regions, 0).astype(np.int16)


def _pet_frame(config: SimulationConfig, rng: np.random.Generator) -> tuple[ana.Grid, dict]:
    """The scanner grid and a random rigid PET->T1 transform (ITK resampling convention), as Euler3D parameters."""
    import SimpleITK as sitk

    centre = np.asarray(config.pet_centre_mni, dtype=float)
    size = np.asarray(config.pet_size)
    spacing = np.asarray(config.pet_spacing, dtype=float)
    origin = centre - spacing * (size - 1) / 2.0
    grid = ana.Grid(size=tuple(int(n) for n in size), spacing=tuple(float(s) for s in spacing),
                    origin=tuple(float(o) for o in origin))
    angles = np.deg2rad(rng.uniform(-config.misalign_deg, config.misalign_deg, 3))
    translation = rng.uniform(-config.misalign_mm, config.misalign_mm, 3)
    euler = sitk.Euler3DTransform(tuple(centre), *angles, tuple(translation))
    transform = {"type": "Euler3DTransform", "center": list(map(float, centre)),
                 "angles_rad": list(map(float, angles)), "translation_mm": list(map(float, translation)),
                 "matrix": list(map(float, euler.GetMatrix())), "convention": "maps PET points to T1 points"}
    return grid, transform


def transform_to_sitk(transform: dict):
    """The sitk.Euler3DTransform of a `meta.json` transform dict."""
    import SimpleITK as sitk

    return sitk.Euler3DTransform(tuple(transform["center"]), *transform["angles_rad"],
                                 tuple(transform["translation_mm"]))


def _apply_transform(transform: dict, points: np.ndarray) -> np.ndarray:
    """T(p) = R (p - c) + c + t for points [3, ...] (x, y, z)."""
    matrix = np.reshape(transform["matrix"], (3, 3))
    centre = np.asarray(transform["center"])[:, None]
    flat = points.reshape(3, -1)
    moved = matrix @ (flat - centre) + centre + np.asarray(transform["translation_mm"])[:, None]
    return moved.reshape(points.shape).astype(np.float32)


def _acquire_and_reconstruct(truth: np.ndarray, mu: np.ndarray, grid: ana.Grid, config: SimulationConfig,
                             rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict]:
    """PSF, attenuation, efficiencies, scatter, randoms, Poisson counts at SD and each DRF; OSEM + post-filter."""
    geometry = Geometry(nx=grid.size[0], ny=grid.size[1], pixel_mm=grid.spacing[0], views=config.views,
                        bins=config.bins, bin_mm=grid.spacing[0] * grid.size[0] / config.bins)
    projector = _projector(geometry, config.subsets)
    psf_sigma = [config.psf_fwhm_mm / 2.3548 / s for s in grid.spacing[::-1]]
    emission = projector.forward(ndimage.gaussian_filter(truth, psf_sigma))
    attenuation = np.exp(-projector.forward(mu))
    efficiency = np.exp(config.efficiency_sd * rng.standard_normal(emission.shape[1:]))[None] \
        * np.exp(0.02 * rng.standard_normal(emission.shape[0]))[:, None, None]

    n_trues = float(rng.uniform(*config.true_counts))
    trues = efficiency * attenuation * emission
    kappa = n_trues / float(trues.sum())
    multiplicative = (kappa * efficiency * attenuation).astype(np.float32)
    # Scatter: a broad, attenuated blur of the emission along the detector and between planes.
    scatter_shape = efficiency * ndimage.gaussian_filter(emission * attenuation.mean(), (2.0, 2.0, config.bins / 8))
    n_scatter = n_trues * config.scatter_fraction / (1 - config.scatter_fraction)
    scatter = scatter_shape * (n_scatter / float(scatter_shape.sum()))
    n_randoms = (n_trues + n_scatter) * config.randoms_fraction / (1 - config.randoms_fraction)
    randoms = np.full(emission.shape, n_randoms / emission.size)
    additive = (scatter + randoms).astype(np.float32)
    expected = multiplicative * emission + additive

    yy, xx = np.mgrid[: geometry.ny, : geometry.nx]
    radius = np.hypot(xx - (geometry.nx - 1) / 2.0, yy - (geometry.ny - 1) / 2.0) * geometry.pixel_mm
    support = radius <= geometry.bins * geometry.bin_mm / 2.0

    def reconstruct(counts: np.ndarray, dose: float) -> np.ndarray:
        image = osem(counts, multiplicative * dose, additive * dose, projector, config.iterations, support)
        return post_filter(image, config.post_filter_mm, grid.spacing)

    pets = {"sd": reconstruct(rng.poisson(expected).astype(np.float32), 1.0)}
    for drf in config.drfs:
        pets[f"ld_drf{drf:03d}"] = reconstruct(rng.poisson(expected / drf).astype(np.float32), 1.0 / drf)
    if config.noise_free:
        pets["noise_free"] = reconstruct(expected.astype(np.float32), 1.0)
    info = {"sd_trues": n_trues, "sd_prompts": float(expected.sum()), "scatter": n_scatter, "randoms": n_randoms,
            "ld_prompts": {str(drf): float(expected.sum() / drf) for drf in config.drfs}}
    return pets, info


_PROJECTORS: dict = {}


def _projector(geometry: Geometry, subsets: int) -> Projector:
    """One projector per geometry and process (building it costs a few tenths of a second)."""
    key = (geometry, subsets)
    if key not in _PROJECTORS:
        _PROJECTORS[key] = Projector(geometry, subsets)
    return _PROJECTORS[key]


def _regional_suvr(image: np.ndarray, labels: np.ndarray, names: dict[int, str]) -> dict[str, float]:
    """Regional mean / pons mean for every region present in `labels`."""
    n = max(names) + 1
    counts = np.bincount(labels.ravel(), minlength=n)[:n]
    sums = np.bincount(labels.ravel(), weights=image.ravel().astype(np.float64), minlength=n)[:n]
    pons = [k for k, v in names.items() if v == "pons"][0]
    reference = sums[pons] / max(counts[pons], 1)
    return {names[k]: float(sums[k] / counts[k] / reference) for k in names if counts[k] > 0}


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _image(array: np.ndarray, grid: ana.Grid):
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    image.SetSpacing(grid.spacing)
    image.SetOrigin(grid.origin)
    return image


def write_subject(subject: Subject, folder: str | os.PathLike) -> Path:
    """Write the DEVELOPING.md subject folder (+ t1_brain skull-stripped T1 and brain_pet mask on the PET grid)."""
    import SimpleITK as sitk

    from ..atomic import atomic_path, write_text_atomic
    from ..imaging.volumes import write_image_atomic

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_image_atomic(_image(np.round(subject.t1).astype(np.int16), subject.t1_grid), folder / "t1.nii.gz")
    write_image_atomic(_image(np.round(subject.t1_brain).astype(np.int16), subject.t1_grid),
                       folder / "t1_brain.nii.gz")
    write_image_atomic(_image(subject.roi_t1, subject.t1_grid), folder / "roi_t1.nii.gz")
    write_image_atomic(_image(subject.roi_pet, subject.pet_grid), folder / "roi_pet.nii.gz")
    write_image_atomic(_image(subject.brain_pet.astype(np.uint8), subject.pet_grid), folder / "brain_pet.nii.gz")
    for name, array in subject.pets.items():
        if name != "noise_free":
            # Whole Bq/ml (1e-4 of white matter) zeroes the float mantissa's noise bits: files shrink ~2x.
            write_image_atomic(_image(np.round(array).astype(np.float32), subject.pet_grid),
                               folder / f"pet_{name}.nii.gz")
    with atomic_path(folder / "t1_to_pet.tfm") as temp:
        sitk.WriteTransform(transform_to_sitk(subject.transform), str(temp))
    write_text_atomic(folder / "meta.json", json.dumps(subject.meta, indent=1))
    return folder


def subject_folder_name(seed: int) -> str:
    """`sub-NNNN`, named by the subject's seed so a folder says how to regenerate it."""
    return f"sub-{seed:04d}"


def _simulate_and_write(job: tuple[int, SimulationConfig, str]) -> str:
    seed, config, out = job
    return str(write_subject(simulate_subject(seed, config), Path(out) / subject_folder_name(seed)))


def simulate_many(out: str | os.PathLike, seeds: list[int], config: SimulationConfig = SimulationConfig(),
                  workers: int = 2, progress: bool = True) -> list[Path]:
    """Simulate and write one folder per seed under `out`, on `workers` processes, with a tqdm bar."""
    from multiprocessing import get_context

    from tqdm import tqdm

    if workers < 1:
        raise ValueError(f"workers={workers} must be >= 1")
    Path(out).mkdir(parents=True, exist_ok=True)
    jobs = [(seed, config, str(out)) for seed in seeds]
    bar = tqdm(total=len(jobs), unit="subject", disable=not progress)
    folders = []
    if workers == 1 or len(jobs) == 1:
        for job in jobs:
            folders.append(Path(_simulate_and_write(job)))
            bar.update()
    else:
        # spawn: fork after torch/BLAS threads exist can deadlock; the template is loaded once per worker.
        with get_context("spawn").Pool(workers, initializer=_limit_threads) as pool:
            for folder in pool.imap(_simulate_and_write, jobs):
                folders.append(Path(folder))
                bar.update()
    bar.close()
    return folders


def _limit_threads() -> None:
    # Each worker process is one core: single-threaded BLAS/OpenMP so two workers do not oversubscribe two cores.
    os.environ["OMP_NUM_THREADS"] = "1"
