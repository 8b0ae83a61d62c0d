"""Domain randomisation (issue 17): per-subject simulator parameters drawn from documented ranges.

`DomainConfig` holds the ranges; `draw_subject_config(seed, domain, base)` turns them into one subject's concrete
`SimulationConfig` plus the drawn values (recorded in meta.json under "domain"). The draws use their own
generator, seeded by (seed, DOMAIN_STREAM), so they never shift the subject's main random stream.

- FIXED: every range None. `base` comes back unchanged and nothing is drawn, so today's configuration (PSF 4.5 mm,
  OSEM 4 x 16, 4 mm filter, 112 x 112 x 80 at 2 mm, DRF 20/100) reproduces bit for bit.
- RANDOMISED: the training domain. Today's configuration is one point inside every range
  (Testing/engine/simulation checks this).

Ranges (uniform unless stated; mm are FWHM for resolutions):

| parameter | RANDOMISED | today (FIXED) |
|---|---|---|
| PSF in-plane / axial (independent) | 2.5-7 / 2.5-7 mm | 4.5 / 4.5 |
| OSEM iterations x subsets | 2-8 x {8, 16, 32} (128 views) | 4 x 16 |
| post-filter | 0-6 mm | 4 |
| SD true counts (direct planes) | 0.8-4.0e9 (5x) | 1.2-3.0e9 |
| continuous DRF (one extra LD image) | log-uniform 2-200, 2 decimals | none (the --drf list only) |
| scatter / randoms fraction | 0.20-0.45 / 0.05-0.35 | 0.30 / 0.15 |
| mu-map error: scale / shift per axis | +-10 % / +-3 mm | 0 / 0 |
| PET voxel in-plane / axial | 1.0-3.0 / 1.0-3.0 mm | 2 / 2 |
| PET FOV in-plane / axial (matrix cap) | 220-300 / 150-230 mm (256 / 160) | 224 / 160 |
| neck/shoulder block | always; uptake 0.25-0.6 x WM, neck 30-80 mm | none |
| head offset x, y / tilt pitch, roll, yaw | +-20 mm / +-12, 4, 4 deg | 0 / 0 |
| T1 voxel in-plane / slice | 0.8-1.5 / 0.8-1.5 mm | 1.5 (anatomy grid) |
| T1 field strength | 1.5 T or 3 T (contrast, bias, noise below) | 1.5 T-like point |
| T1 neck below the template / defaced | 0-60 mm / 30 % | 0 / no |
| age, atrophy | 55-85 y; 0.3 %/y after 50 + MCI 1-4 %, AD 3-8 % | none |

Limits: 2D direct-plane physics only; every head is the MNI 2009c template warped and atrophied (the wheels ship
no second full-head template); the neck/shoulder block is an analytic elliptic cylinder, not anatomy.

The named scanner models and fields of view (SCANNER_MODELS, FIELDS_OF_VIEW) are held-out TEST configurations for
the robustness benchmark; they are recorded as meta["held_out"] and must never be used for training.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .atrophy import AtrophyConfig
from .body import BodyConfig

Range = tuple[float, float]
DOMAIN_STREAM = 1            # child stream of the domain draws: np.random.default_rng((seed, DOMAIN_STREAM))
MAX_MATRIX_XY = 256          # matrix caps keep 1 mm voxels affordable (the FOV shrinks to fit, >= 256 mm)
MAX_PLANES = 160
BRAIN_Z_MM = (-72.0, 81.0)   # template brain extent along z (LPS mm) that every FOV must cover when it can
SCALP_TOP_MM = 105.0
MAX_HEADROOM_MM = 40.0       # the FOV top stays at most this far above the scalp
HEAD_HALF_WIDTH_MM = (93.0, 105.0)  # template head half-extent in x, y (y about the FOV centre 18 mm)


@dataclass(frozen=True)
class FieldStrength:
    """T1 appearance ranges of one field strength: GM/CSF contrast scale, bias amplitude, noise (x WM)."""

    contrast_scale: Range
    bias: Range
    noise_of_wm: Range


# 3 T: crisper GM/WM contrast, stronger B1 bias, higher SNR; 1.5 T: flatter contrast, weaker bias, noisier.
FIELD_STRENGTHS = {1.5: FieldStrength((0.8, 1.0), (0.05, 0.15), (0.02, 0.05)),
                   3.0: FieldStrength((1.0, 1.3), (0.10, 0.30), (0.01, 0.03))}


@dataclass(frozen=True)
class DomainConfig:
    """Per-subject ranges; None keeps the base configuration's value (see the module docstring's table)."""

    name: str = "fixed"
    psf_inplane_fwhm_mm: Range | None = None
    psf_axial_fwhm_mm: Range | None = None
    iterations: tuple[int, int] | None = None        # inclusive integer range
    subsets: tuple[int, ...] | None = None           # choices; each must divide the base's views
    post_filter_mm: Range | None = None
    true_counts: Range | None = None                 # SD true counts; drawn in the main stream as today
    random_drf: Range | None = None                  # log-uniform continuous DRF added to the base DRFs
    scatter_fraction: Range | None = None
    randoms_fraction: Range | None = None
    mu_error: Range | None = None                    # relative error of the reconstruction's mu map
    mu_shift_mm: float | None = None                 # max |shift| of the mu map per axis (PET/CT misregistration)
    voxel_xy_mm: Range | None = None
    voxel_z_mm: Range | None = None
    fov_xy_mm: Range | None = None
    fov_z_mm: Range | None = None
    body_uptake: Range | None = None                 # neck/shoulder block uptake (x WM); None: no block
    neck_length_mm: Range | None = None
    head_offset_mm: float | None = None              # max |x|, |y| offset of the head from the FOV centre
    tilt_deg: tuple[float, float, float] | None = None  # max |pitch|, |roll|, |yaw|
    t1_voxel_mm: Range | None = None                 # in-plane and slice drawn separately
    t1_field_strengths: tuple[float, ...] | None = None
    t1_neck_mm: Range | None = None
    deface_probability: float | None = None
    atrophy: AtrophyConfig | None = None

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name.endswith("_mm") and isinstance(value, tuple) and value[0] > value[1]:
                raise ValueError(f"{field.name}={value} must be (low, high) with low <= high")
        if self.random_drf is not None and self.random_drf[0] < 1:
            raise ValueError(f"random_drf={self.random_drf} must be >= 1")
        if self.t1_field_strengths is not None and not set(self.t1_field_strengths) <= set(FIELD_STRENGTHS):
            raise ValueError(f"t1_field_strengths={self.t1_field_strengths} must be among {sorted(FIELD_STRENGTHS)}")

    def reduced(self) -> "DomainConfig":
        """The same ranges on coarse grids (PET voxels 3.5-4.5 mm, T1 2-3 mm), for SimulationConfig.reduced()."""
        coarse = {name: value for name, value in (("voxel_xy_mm", (3.5, 4.5)), ("voxel_z_mm", (3.5, 4.5)),
                                                  ("t1_voxel_mm", (2.0, 3.0))) if getattr(self, name) is not None}
        return dataclasses.replace(self, **coarse)


FIXED = DomainConfig()
RANDOMISED = DomainConfig(
    name="randomised", psf_inplane_fwhm_mm=(2.5, 7.0), psf_axial_fwhm_mm=(2.5, 7.0), iterations=(2, 8),
    subsets=(8, 16, 32), post_filter_mm=(0.0, 6.0), true_counts=(0.8e9, 4.0e9), random_drf=(2.0, 200.0),
    scatter_fraction=(0.20, 0.45), randoms_fraction=(0.05, 0.35), mu_error=(-0.10, 0.10), mu_shift_mm=3.0,
    voxel_xy_mm=(1.0, 3.0), voxel_z_mm=(1.0, 3.0), fov_xy_mm=(220.0, 300.0), fov_z_mm=(150.0, 230.0),
    body_uptake=(0.25, 0.6), neck_length_mm=(30.0, 80.0), head_offset_mm=20.0, tilt_deg=(12.0, 4.0, 4.0),
    t1_voxel_mm=(0.8, 1.5), t1_field_strengths=(1.5, 3.0), t1_neck_mm=(0.0, 60.0), deface_probability=0.3,
    atrophy=AtrophyConfig())
DOMAINS = {"fixed": FIXED, "randomised": RANDOMISED}

# Held-out TEST configurations (robustness benchmark): SimulationConfig overrides. Never train on them.
SCANNER_MODELS: dict[str, dict] = {
    "default": {},
    "sharp": {"psf_fwhm_mm": 3.0, "iterations": 6, "post_filter_mm": 2.0},
    "smooth": {"psf_fwhm_mm": 6.0, "post_filter_mm": 5.0},
}
FIELDS_OF_VIEW: dict[str, dict] = {
    "brain": {},
    # 1.6 x 1.6 x 2 mm, 180 x 180 x 110: the head off-centre (12 mm left, 10 mm anterior, low in the FOV) and
    # pitched 6 deg, above a warm neck whose shoulders enter the lowest planes.
    "clinical": {"pet_size": (180, 180, 110), "pet_spacing": (1.6, 1.6, 2.0), "pet_centre_mni": (12.0, 8.0, -10.0),
                 "tilt_deg": (6.0, 0.0, 0.0), "body": BodyConfig(neck_length_mm=30.0), "bins": None},
}


def held_out_overrides(scanner: str = "default", fov: str = "brain") -> dict:
    """SimulationConfig overrides of a held-out test configuration, with its name under `held_out`."""
    if scanner not in SCANNER_MODELS or fov not in FIELDS_OF_VIEW:
        raise ValueError(f"scanner={scanner!r} must be one of {sorted(SCANNER_MODELS)} and fov={fov!r} one of "
                         f"{sorted(FIELDS_OF_VIEW)}")
    name = None if (scanner, fov) == ("default", "brain") else f"scanner={scanner},fov={fov}"
    return {**SCANNER_MODELS[scanner], **FIELDS_OF_VIEW[fov], "held_out": name}


class _Draws:
    """Draws from one generator, each recorded under its name (the meta.json "domain" record)."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.values: dict = {}

    def _keep(self, name: str, value):
        self.values[name] = value
        return value

    def uniform(self, name: str, bounds: Range) -> float:
        return self._keep(name, float(self.rng.uniform(*bounds)))

    def symmetric(self, name: str, limits: tuple[float, ...]) -> tuple[float, ...]:
        """One uniform draw in [-m, m] per limit m."""
        return self._keep(name, tuple(float(self.rng.uniform(-m, m)) for m in limits))

    def log_uniform(self, name: str, bounds: Range, decimals: int) -> float:
        return self._keep(name, round(float(np.exp(self.rng.uniform(*np.log(bounds)))), decimals))

    def integer(self, name: str, bounds: tuple[int, int]) -> int:
        return self._keep(name, int(self.rng.integers(bounds[0], bounds[1] + 1)))

    def choice(self, name: str, options: tuple):
        return self._keep(name, options[int(self.rng.integers(len(options)))])

    def chance(self, name: str, probability: float) -> bool:
        return self._keep(name, bool(self.rng.random() < probability))


# Domain range -> SimulationConfig field, for the ranges drawn plainly (uniform).
_UNIFORM_FIELDS = {"psf_inplane_fwhm_mm": "psf_fwhm_mm", "psf_axial_fwhm_mm": "psf_axial_fwhm_mm",
                   "post_filter_mm": "post_filter_mm", "scatter_fraction": "scatter_fraction",
                   "randoms_fraction": "randoms_fraction", "mu_error": "mu_error"}


def is_fixed(domain: DomainConfig) -> bool:
    """True when every range is None: the base configuration is used as it is."""
    return all(getattr(domain, f.name) is None for f in dataclasses.fields(domain) if f.name != "name")


def draw_subject_config(seed: int, domain: DomainConfig, base):
    """One subject's concrete SimulationConfig under `domain`, and the drawn values (dict, JSON-ready).

    base: the SimulationConfig whose values the unset ranges keep (and whose DRF list the continuous DRF joins).
    """
    if is_fixed(domain):
        return base, {}
    draws = _Draws(np.random.default_rng((seed, DOMAIN_STREAM)))
    updates = {target: draws.uniform(source, getattr(domain, source))
               for source, target in _UNIFORM_FIELDS.items() if getattr(domain, source) is not None}
    updates.update(_reconstruction(draws, domain, base))
    updates.update(_field_of_view(draws, domain, base))
    if domain.atrophy is not None:
        updates["atrophy"] = domain.atrophy
    updates["t1"] = dataclasses.replace(base.t1, **_t1(draws, domain))
    return dataclasses.replace(base, **updates), draws.values


def _reconstruction(draws: _Draws, domain: DomainConfig, base) -> dict:
    """OSEM iterations and subsets, SD counts range, the continuous DRF and the mu-map shift."""
    updates: dict = {}
    if domain.iterations is not None:
        updates["iterations"] = draws.integer("iterations", domain.iterations)
    if domain.subsets is not None:
        updates["subsets"] = draws.choice("subsets", domain.subsets)
    if domain.true_counts is not None:
        updates["true_counts"] = domain.true_counts
    if domain.random_drf is not None:
        drf = draws.log_uniform("random_drf", domain.random_drf, decimals=2)
        updates["drfs"] = tuple(base.drfs) + ((drf,) if drf not in base.drfs else ())
    if domain.mu_shift_mm is not None:
        updates["mu_shift_mm"] = draws.symmetric("mu_shift_mm", (domain.mu_shift_mm,) * 3)
    return updates


def _field_of_view(draws: _Draws, domain: DomainConfig, base) -> dict:
    """PET voxel size and matrix, the head's position and tilt in the FOV, and the neck/shoulder block."""
    updates: dict = {}
    spacing, size = np.asarray(base.pet_spacing, dtype=float), np.asarray(base.pet_size)
    if domain.voxel_xy_mm is not None:
        spacing[:2] = draws.uniform("voxel_xy_mm", domain.voxel_xy_mm)
    if domain.voxel_z_mm is not None:
        spacing[2] = draws.uniform("voxel_z_mm", domain.voxel_z_mm)
    extent = spacing * size
    if domain.fov_xy_mm is not None:
        extent[:2] = draws.uniform("fov_xy_mm", domain.fov_xy_mm)
    if domain.fov_z_mm is not None:
        extent[2] = draws.uniform("fov_z_mm", domain.fov_z_mm)
    size = np.minimum(np.maximum(np.round(extent / spacing), 2), [MAX_MATRIX_XY, MAX_MATRIX_XY, MAX_PLANES])
    if not (np.array_equal(size, base.pet_size) and np.allclose(spacing, base.pet_spacing)):
        updates.update(pet_size=tuple(int(n) for n in size), pet_spacing=tuple(float(s) for s in spacing),
                       bins=None)
    if domain.head_offset_mm is not None:
        updates["pet_centre_mni"] = _fov_centre(draws, domain.head_offset_mm, size * spacing, base.pet_centre_mni)
    if domain.tilt_deg is not None:
        updates["tilt_deg"] = draws.symmetric("tilt_deg", domain.tilt_deg)
    if domain.body_uptake is not None:
        length = (base.body or BodyConfig()).neck_length_mm if domain.neck_length_mm is None else \
            draws.uniform("neck_length_mm", domain.neck_length_mm)
        updates["body"] = BodyConfig(uptake=draws.uniform("body_uptake", domain.body_uptake), neck_length_mm=length)
    return updates


def _fov_centre(draws: _Draws, max_offset_mm: float, extent_mm: np.ndarray,
                base_centre: tuple[float, float, float]) -> tuple[float, float, float]:
    """The FOV centre in the template frame: x, y off-centre while the head fits; z keeps the brain inside.

    z: uniform over the centres that cover BRAIN_Z_MM with the top at most MAX_HEADROOM_MM above the scalp
    (the midpoint when the FOV is shorter than the brain: both ends lose the same).
    """
    slack = np.maximum((extent_mm[:2] - 2 * np.asarray(HEAD_HALF_WIDTH_MM)) / 2.0, 0.0)
    offset = draws.symmetric("head_offset_mm", tuple(float(m) for m in np.minimum(slack, max_offset_mm)))
    half = extent_mm[2] / 2.0
    low, high = BRAIN_Z_MM[1] - half, min(BRAIN_Z_MM[0] + half, SCALP_TOP_MM + MAX_HEADROOM_MM - half)
    z = draws.uniform("fov_centre_z_mm", (low, high)) if low <= high else float(np.mean(BRAIN_Z_MM))
    return float(base_centre[0] + offset[0]), float(base_centre[1] + offset[1]), z


def _t1(draws: _Draws, domain: DomainConfig) -> dict:
    """T1Config updates: field-strength contrast, bias and noise, voxel size, neck extent, defacing."""
    updates: dict = {}
    if domain.t1_field_strengths is not None:
        strength = FIELD_STRENGTHS[draws.choice("t1_field_strength_t", domain.t1_field_strengths)]
        updates.update(contrast_scale=draws.uniform("t1_contrast_scale", strength.contrast_scale),
                       bias=draws.uniform("t1_bias", strength.bias),
                       noise_of_wm=draws.uniform("t1_noise_of_wm", strength.noise_of_wm))
    if domain.t1_voxel_mm is not None:
        in_plane = draws.uniform("t1_voxel_xy_mm", domain.t1_voxel_mm)
        updates["voxel_mm"] = (in_plane, in_plane, draws.uniform("t1_voxel_z_mm", domain.t1_voxel_mm))
    if domain.t1_neck_mm is not None:
        updates["neck_mm"] = draws.uniform("t1_neck_mm", domain.t1_neck_mm)
    if domain.deface_probability is not None:
        updates["deface"] = draws.chance("t1_defaced", domain.deface_probability)
    return updates
