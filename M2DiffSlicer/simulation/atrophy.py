"""Age- and disease-related atrophy of a subject's anatomy: ventricle enlargement and cortical grey-matter loss.

Every subject derives from one template, so without this the ventricles and cortex would only vary by the random
warp. Atrophy fraction a = per_year * max(age - onset, 0) + a group term (MCI, AD > CN); the ventricle walls move
out by up to `ventricle_mm_per_atrophy * a` and a fraction `gm_loss_per_atrophy * a` of the cortical grey matter
becomes CSF (the T1 darkens there accordingly). Regional FDG is calibrated afterwards (activity.activity_map), so
the PET's regional means still follow the table: atrophy changes the shapes, not the target SUVRs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from . import activity as act
from .anatomy import Anatomy, pull_anatomy


@dataclass(frozen=True)
class AtrophyConfig:
    """Ranges of the per-subject atrophy draw (ages in years, atrophy fractions 0..1)."""

    age_years: tuple[float, float] = (55.0, 85.0)
    onset_years: float = 50.0
    per_year: float = 0.003                          # ~0.3 % grey-matter loss a year after onset
    mci: tuple[float, float] = (0.01, 0.04)          # extra atrophy of the group on top of age
    ad: tuple[float, float] = (0.03, 0.08)
    ventricle_mm_per_atrophy: float = 40.0           # wall displacement: a = 0.2 moves the walls ~8 mm
    gm_loss_per_atrophy: float = 1.0
    ventricle_smoothing_mm: float = 8.0              # reach of the ventricle push into the surrounding tissue

    def __post_init__(self):
        for name in ("age_years", "mci", "ad"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(f"{name}={getattr(self, name)} must be an increasing non-negative range")


def draw_atrophy(rng: np.random.Generator, group: act.Group, config: AtrophyConfig) -> dict[str, float]:
    """Age (years) and atrophy fraction of one subject of `group`: dict with keys `age_years`, `atrophy`."""
    age = float(rng.uniform(*config.age_years))
    extra = {act.Group.CN: (0.0, 0.0), act.Group.MCI: config.mci, act.Group.AD: config.ad}[group]
    atrophy = config.per_year * max(age - config.onset_years, 0.0) + float(rng.uniform(*extra))
    return {"age_years": age, "atrophy": atrophy}


def atrophied(anatomy: Anatomy, atrophy: float, config: AtrophyConfig) -> Anatomy:
    """`anatomy` with its ventricles enlarged and cortical grey matter thinned by the atrophy fraction."""
    if atrophy <= 0:
        return anatomy
    return _thin_cortex(_enlarge_ventricles(anatomy, config.ventricle_mm_per_atrophy * atrophy, config),
                        min(config.gm_loss_per_atrophy * atrophy, 0.9))


def _enlarge_ventricles(anatomy: Anatomy, push_mm: float, config: AtrophyConfig) -> Anatomy:
    """Pull every field from closer to the ventricles (up the gradient of a smoothed ventricle mask)."""
    spacing = anatomy.grid.spacing[0]
    smooth = ndimage.gaussian_filter((anatomy.regions == act.VENTRICLE).astype(np.float32),
                                     config.ventricle_smoothing_mm / spacing)
    gradient = np.stack(np.gradient(smooth))
    gradient *= (push_mm / spacing) / max(float(np.sqrt((gradient ** 2).sum(0)).max()), 1e-12)
    index = np.indices(smooth.shape, dtype=np.float32) + gradient
    return pull_anatomy(anatomy, index)


def _thin_cortex(anatomy: Anatomy, loss: float) -> Anatomy:
    """Turn a fraction `loss` of the cortical grey matter into CSF; the T1 moves from GM towards CSF intensity."""
    names = act.region_names()
    cortical = [k for k, v in names.items() if v.rsplit("_", 1)[0] not in act.WHOLE_LABEL and v not in act.WHOLE_LABEL]
    where = np.isin(anatomy.regions, cortical) * anatomy.brain
    lost = loss * anatomy.gm * where
    pure = anatomy.brain > 0.9
    gm_level = float(np.median(anatomy.t1[pure & (anatomy.gm > 0.9)]))
    csf_level = float(np.median(anatomy.t1[pure & (anatomy.csf > 0.9)]))
    return Anatomy(grid=anatomy.grid, t1=(anatomy.t1 - lost * (gm_level - csf_level)).astype(np.float32),
                   brain=anatomy.brain, gm=(anatomy.gm - lost).astype(np.float32), wm=anatomy.wm,
                   csf=(anatomy.csf + lost).astype(np.float32), bone=anatomy.bone, head=anatomy.head,
                   regions=anatomy.regions)
