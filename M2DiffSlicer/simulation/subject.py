"""One simulated subject end to end (anatomy -> activity -> PET physics -> OSEM) and the subject-folder writer.

Seeds: training subjects use seeds 1000+, held-out test subjects 9000+, the committed sample subject seed 7.
The folder format is the contract of docs/DEVELOPING.md "Subject folders". A DomainConfig (domain.py) draws each
subject's own scanner, dose, field of view and T1 from ranges; the default (FIXED) is today's one configuration.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..subject_files import ld_name
from . import activity as act
from . import anatomy as ana
from . import mri
from .acquisition import acquire_and_reconstruct, recon_grid, sinogram_bins
from .atrophy import AtrophyConfig, atrophied, draw_atrophy
from .body import BodyConfig, body_fraction
from .domain import FIXED, DomainConfig, draw_subject_config

BONE_MU, TISSUE_MU = 0.0151, 0.0096  # 511 keV linear attenuation, 1/mm
ATROPHY_STREAM = 2  # child stream of the atrophy draw: np.random.default_rng((seed, ATROPHY_STREAM))


@dataclass(frozen=True)
class SimulationConfig:
    """Every knob of one subject; defaults follow DATA.md. `reduced()` is a fast coarse variant for tests."""

    anatomy_mm: float = 1.5
    pet_size: tuple[int, int, int] = (112, 112, 80)      # x, y, z voxels
    pet_spacing: tuple[float, float, float] = (2.0, 2.0, 2.0)
    pet_centre_mni: tuple[float, float, float] = (0.0, 18.0, 15.0)  # LPS mm of the PET FOV centre before misalignment
    views: int = 128
    bins: int | None = 128                # radial bins; None: sinogram_bins() of the reconstruction grid
    subsets: int = 16
    iterations: int = 4
    psf_fwhm_mm: float = 4.5              # scanner PSF FWHM in-plane
    psf_axial_fwhm_mm: float | None = None  # axial PSF FWHM; None: the in-plane value
    post_filter_mm: float = 4.0
    # Direct-plane counts. DATA.md's 2-5e8 gave LD100 ~15 dB here (SD vs noise-free ~35 dB); 6x more restores its
    # measured difficulty (LD100 ~23 dB, SD ~41 dB): a 2D-only model lacks the oblique LORs of a 3D scanner.
    true_counts: tuple[float, float] = (1.2e9, 3.0e9)
    scatter_fraction: float = 0.30        # scatter / (trues + scatter)
    randoms_fraction: float = 0.15        # randoms / prompts
    efficiency_sd: float = 0.05           # per-LOR detector efficiency spread
    mu_error: float = 0.0                 # relative error of the mu map the reconstruction corrects with
    mu_shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)  # shift (x, y, z) of that mu map
    recon_min_pixel_mm: float = 2.0       # finer PET grids are reconstructed at this pixel and resampled
    misalign_deg: float = 5.0
    misalign_mm: float = 6.0
    tilt_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)  # head pitch, roll, yaw in the PET (Euler x, y, z)
    drfs: tuple[float, ...] = (20, 100)   # 1 = an independent full-dose replicate
    group: str | None = None              # CN / MCI / AD, or None to draw (40/30/30 %)
    severity: float | None = None         # hypometabolism severity, or None to draw from the group's range
    noise_free: bool = False              # also reconstruct the expected sinogram (for benchmarks/tests)
    warp: ana.WarpConfig = field(default_factory=ana.WarpConfig)
    activity: act.ActivityConfig = field(default_factory=act.ActivityConfig)
    t1: mri.T1Config = field(default_factory=mri.T1Config)
    body: BodyConfig | None = None        # neck/shoulder block below the head; None: the head alone (today)
    atrophy: AtrophyConfig | None = None  # age/disease atrophy ranges; None: the template's brain (today)
    held_out: str | None = None           # name of a held-out TEST configuration (domain.py); never train on it

    def __post_init__(self):
        if self.group is not None and self.group not in {g.value for g in act.Group}:
            raise ValueError(f"group={self.group!r} must be one of {[g.value for g in act.Group]} or None")
        if self.severity is not None and not 0.0 <= self.severity < 1.0:
            raise ValueError(f"severity={self.severity} must be in [0, 1)")
        if any(d < 1 for d in self.drfs):
            raise ValueError(f"drfs={self.drfs} must be >= 1")
        if self.views % self.subsets:
            raise ValueError(f"subsets={self.subsets} must divide views={self.views}")
        if min(self.psf_fwhm_mm, self.psf_axial_fwhm_mm or 1.0) <= 0 or self.post_filter_mm < 0:
            raise ValueError(f"psf_fwhm_mm={self.psf_fwhm_mm}, psf_axial_fwhm_mm={self.psf_axial_fwhm_mm} must be "
                             f"> 0 and post_filter_mm={self.post_filter_mm} >= 0")
        if not (0 <= self.scatter_fraction < 1 and 0 <= self.randoms_fraction < 1 and self.iterations >= 1):
            raise ValueError(f"scatter_fraction={self.scatter_fraction} and randoms_fraction="
                             f"{self.randoms_fraction} must be in [0, 1), iterations={self.iterations} >= 1")

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


def simulate_subject(seed: int, config: SimulationConfig = SimulationConfig(),
                     domain: DomainConfig = FIXED) -> Subject:
    """Simulate one subject from `seed` (same seed, config and domain -> identical arrays).

    domain: the ranges this subject's own configuration is drawn from (FIXED: `config` as it is).
    """
    config, drawn = draw_subject_config(seed, domain, config)
    rng = np.random.default_rng(seed)
    group = act.Group(config.group) if config.group else act.Group(rng.choice(["CN", "MCI", "AD"], p=[.4, .3, .3]))
    severity = float(rng.uniform(*act.SEVERITY[group]))
    severity = severity if config.severity is None else float(config.severity)

    anatomy = ana.random_warp(ana.load_template(config.anatomy_mm), rng, config.warp)
    anatomy_info = {}
    if config.atrophy is not None:
        anatomy_info = draw_atrophy(np.random.default_rng((seed, ATROPHY_STREAM)), group, config.atrophy)
        anatomy = atrophied(anatomy, anatomy_info["atrophy"], config.atrophy)
    t1 = mri.t1_image(anatomy, rng, config.t1, config.body)
    suvr = act.target_suvr(rng, group, severity, config.activity)
    activity, activity_info = act.activity_map(anatomy, suvr, rng, config.activity)

    pet_grid, transform = _pet_frame(config, rng)
    body_bq_ml = 0.0 if config.body is None else \
        config.body.uptake * config.activity.wm_bq_ml * activity_info["global_scale"]
    phantom = _phantom(anatomy, activity, pet_grid, transform, config.body, body_bq_ml)
    native = recon_grid(pet_grid, config.recon_min_pixel_mm)
    if config.bins is None:
        config = dataclasses.replace(config, bins=sinogram_bins(native.size[0]))
    on_native = phantom if native == pet_grid else _phantom(anatomy, activity, native, transform, config.body,
                                                            body_bq_ml)
    pets, counts_info = acquire_and_reconstruct(on_native["truth"], on_native["mu"], native, config, rng)
    if native != pet_grid:
        pets = {name: ana.resample_to_grid(image, native, pet_grid) for name, image in pets.items()}

    names = act.region_names()
    truth, roi_pet = phantom["truth"], phantom["roi"]
    suvr_of = {name: _regional_suvr(image, roi_pet, names) for name, image in [("truth", truth), *pets.items()]}
    meta = {
        "seed": seed, "group": group.value, "severity": severity,
        "counts": counts_info, "transform": transform, "activity": activity_info,
        "target_suvr": {names[k]: float(suvr[k]) for k in names},
        "regional_suvr": suvr_of, "reference_region": "pons",
        "labels": {str(k): v for k, v in names.items()},
        "units": "Bq/ml", "config": _jsonable(dataclasses.asdict(config)),
        "drfs": {ld_name(drf): drf for drf in config.drfs},
        "domain": {"name": domain.name, "drawn": _jsonable(drawn)}, "anatomy": anatomy_info,
        "held_out": config.held_out,
    }
    return Subject(seed=seed, t1=t1.t1, t1_brain=(t1.t1 * (t1.brain > 0.5)).astype(np.float32),
                   roi_t1=_reported(t1.regions).astype(np.uint8), t1_grid=t1.grid, pets=pets,
                   truth=truth.astype(np.float32), roi_pet=roi_pet.astype(np.uint8),
                   brain_pet=phantom["brain"], pet_grid=pet_grid,
                   transform=transform, meta=meta)


def _phantom(anatomy: ana.Anatomy, activity: np.ndarray, grid: ana.Grid, transform: dict,
             body: BodyConfig | None, body_bq_ml: float) -> dict[str, np.ndarray]:
    """The subject seen on a PET `grid`: truth (Bq/ml), mu (1/mm), reported regions and the brain mask [Z, Y, X].

    Activity is pre-filtered by the voxel's box width (sigma = width / sqrt(12)) before point sampling (partial
    volume). With a body, the neck/shoulder block is added and everything outside the scanner's cylindrical
    field of view is cut (activity there would reach sinogram bins the image cannot explain).
    """
    template_points = _apply_transform(transform, grid.points())
    source_index = anatomy.grid.to_index(template_points)
    box = [p / np.sqrt(12.0) / anatomy.grid.spacing[0] for p in grid.spacing[::-1]]
    truth = ndimage.map_coordinates(ndimage.gaussian_filter(activity, box), source_index, order=1)
    head_fraction = ndimage.map_coordinates(anatomy.head, source_index, order=1)
    bone = ndimage.map_coordinates(anatomy.bone, source_index, order=1)
    mu = head_fraction * TISSUE_MU + bone * (BONE_MU - TISSUE_MU)
    if body is not None:
        top = anatomy.grid.origin[2] - anatomy.grid.spacing[2] / 2.0
        block = body_fraction(template_points, top, body) * (1.0 - head_fraction)
        inside = _cylinder(grid)[None]
        truth = (truth + body_bq_ml * block) * inside
        mu = (mu + TISSUE_MU * block) * inside
    return {"truth": truth, "mu": mu,
            "roi": ndimage.map_coordinates(_reported(anatomy.regions), source_index, order=0),
            "brain": ndimage.map_coordinates(anatomy.brain, source_index, order=1) >= 0.5}


def _cylinder(grid: ana.Grid) -> np.ndarray:
    """[Y, X] bool: the largest centred circle of the in-plane field of view."""
    yy, xx = np.mgrid[: grid.size[1], : grid.size[0]]
    radius = np.hypot((xx - (grid.size[0] - 1) / 2.0) * grid.spacing[0], (yy - (grid.size[1] - 1) / 2.0)
                      * grid.spacing[1])
    return radius <= min(grid.size[0] * grid.spacing[0], grid.size[1] * grid.spacing[1]) / 2.0


def _reported(regions: np.ndarray) -> np.ndarray:
    """Region ids with simulator-only classes (>= 100) removed."""
    return np.where(regions < act.OTHER_DEEP_GM, regions, 0).astype(np.int16)


def _pet_frame(config: SimulationConfig, rng: np.random.Generator) -> tuple[ana.Grid, dict]:
    """The scanner grid and a random rigid PET->T1 transform (ITK resampling convention), as Euler3D parameters.

    The head's tilt in the PET (config.tilt_deg) adds to the random misalignment's angles.
    """
    import SimpleITK as sitk

    centre = np.asarray(config.pet_centre_mni, dtype=float)
    size = np.asarray(config.pet_size)
    spacing = np.asarray(config.pet_spacing, dtype=float)
    origin = centre - spacing * (size - 1) / 2.0
    grid = ana.Grid(size=tuple(int(n) for n in size), spacing=tuple(float(s) for s in spacing),
                    origin=tuple(float(o) for o in origin))
    angles = np.deg2rad(rng.uniform(-config.misalign_deg, config.misalign_deg, 3)) + np.deg2rad(config.tilt_deg)
    translation = rng.uniform(-config.misalign_mm, config.misalign_mm, 3)
    euler = sitk.Euler3DTransform(tuple(centre), *angles, tuple(translation))
    transform = {"type": "Euler3DTransform", "center": list(map(float, centre)),
                 "angles_rad": list(map(float, angles)), "translation_mm": list(map(float, translation)),
                 "tilt_deg": list(map(float, config.tilt_deg)),
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


def _simulate_and_write(job: tuple[int, SimulationConfig, DomainConfig, str]) -> str:
    seed, config, domain, out = job
    return str(write_subject(simulate_subject(seed, config, domain), Path(out) / subject_folder_name(seed)))


def simulate_many(out: str | os.PathLike, seeds: list[int], config: SimulationConfig = SimulationConfig(),
                  workers: int = 2, progress: bool = True, domain: DomainConfig = FIXED) -> list[Path]:
    """Simulate and write one folder per seed under `out`, on `workers` processes, with a tqdm bar.

    domain: the ranges each subject's configuration is drawn from (FIXED: every subject uses `config`).
    """
    from multiprocessing import get_context

    from tqdm import tqdm

    if workers < 1:
        raise ValueError(f"workers={workers} must be >= 1")
    Path(out).mkdir(parents=True, exist_ok=True)
    jobs = [(seed, config, domain, str(out)) for seed in seeds]
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
