"""Never worse than the input: blend the network's output with the input when the input is cleaner than the
data the model was trained on, and keep the input's coarse uptake.

A network trained on one noise level removes that much noise whatever it is given, so a 25 %-dose scan comes out
over-smoothed. The safeguard keeps a fraction w of the network's correction, output = input + w (network - input),
with w rising linearly from 0 at noise level `noise_off` to 1 at `noise_full` (imaging/input_profile.noise_level).

A network also imposes the resolution it was trained at, which moves uptake between neighbouring regions (lobar
SUVR bias) on a sharper or smoother scanner. A low-dose scan measures coarse uptake without bias (Poisson counts
keep their mean; only the noise grows), so the uptake anchor gives the output back the input's content coarser
than a FWHM: output + G (input - output), G a Gaussian of that FWHM. The network keeps the finer detail, where
the noise is. A noisier input needs a coarser anchor (the input's own noise comes back with it), so the FWHM grows
with the noise level as a power law, anchor_fwhm_mm x (noise / ANCHOR_REFERENCE_NOISE) ^ anchor_power, within
ANCHOR_FWHM_RANGE_MM (the range it was calibrated over).

All four numbers are chosen on validation subjects (benchmarks/robustness.py --calibrate) and stored in the catalogue
entry's training.safeguard; a model without that record is used as is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk

from ..imaging.head_mask import head_mask
from ..imaging.smoothing import FWHM_PER_SIGMA

ANCHOR_REFERENCE_NOISE = 0.02  # noise level (input_profile.noise_level) at which the anchor has anchor_fwhm_mm
ANCHOR_FWHM_RANGE_MM = (4.0, 30.0)  # finer: the input's noise; coarser: hardly any uptake moves


@dataclass(frozen=True)
class Safeguard:
    """The blend weight's ramp over the input's noise level, and the uptake anchor's scale."""

    noise_off: float  # at or below: the input is returned unchanged
    noise_full: float  # at or above: the network's full correction
    anchor_fwhm_mm: float | None = None  # the uptake anchor's FWHM at ANCHOR_REFERENCE_NOISE; None: no anchor
    anchor_power: float = 0.0  # how fast the anchor's FWHM grows with the noise level

    def __post_init__(self) -> None:
        if not 0 <= self.noise_off < self.noise_full:
            raise ValueError(f"need 0 <= noise_off < noise_full, got {self.noise_off}, {self.noise_full}")
        if self.anchor_fwhm_mm is not None and not self.anchor_fwhm_mm > 0:
            raise ValueError(f"anchor_fwhm_mm must be > 0 (or None), got {self.anchor_fwhm_mm}")

    def anchor_fwhm(self, noise_level: float) -> float | None:
        """The uptake anchor's FWHM (mm) for an input of `noise_level`; None without an anchor (or a noise level
        that cannot be measured)."""
        if self.anchor_fwhm_mm is None or not math.isfinite(noise_level) or noise_level <= 0:
            return None
        fwhm = self.anchor_fwhm_mm * (noise_level / ANCHOR_REFERENCE_NOISE) ** self.anchor_power
        return float(np.clip(fwhm, *ANCHOR_FWHM_RANGE_MM))

    def weight(self, noise_level: float) -> float:
        """Share of the network's correction kept for an input of `noise_level` (1 when it cannot be measured)."""
        if not math.isfinite(noise_level):
            return 1.0
        return float(np.clip((noise_level - self.noise_off) / (self.noise_full - self.noise_off), 0.0, 1.0))


def safeguard_for(training: dict[str, Any] | None) -> Safeguard | None:
    """The calibrated safeguard in a catalogue entry's training record (input_check.training_record), or None."""
    values = None if training is None else training.get("safeguard")
    if values is None:
        return None
    anchor = values.get("anchor_fwhm_mm")
    return Safeguard(float(values["noise_off"]), float(values["noise_full"]), None if anchor is None else float(anchor),
                     float(values.get("anchor_power", 0.0)))


def blend(pet: sitk.Image, enhanced: sitk.Image, weight: float) -> sitk.Image:
    """input + weight (enhanced - input), voxel by voxel on the input's grid (float32, the input's geometry)."""
    pet_array = sitk.GetArrayViewFromImage(pet).astype(np.float32)
    out = pet_array + np.float32(weight) * (sitk.GetArrayViewFromImage(enhanced) - pet_array)
    image = sitk.GetImageFromArray(out.astype(np.float32))
    image.CopyInformation(enhanced)
    return image


def anchor_uptake(pet: sitk.Image, enhanced: sitk.Image, fwhm_mm: float) -> tuple[sitk.Image, float]:
    """enhanced + G (pet - enhanced), G a Gaussian of `fwhm_mm` (physical mm, any voxel size), on the input grid;
    and the size of that correction, its mean |value| over the head as a percentage of the head's mean uptake.
    Uptake is never negative, and the smooth correction would leak a little below zero around the head: clamped."""
    pet_float = sitk.Cast(pet, sitk.sitkFloat32)
    correction = sitk.SmoothingRecursiveGaussian(pet_float - sitk.Cast(enhanced, sitk.sitkFloat32),
                                                 fwhm_mm / FWHM_PER_SIGMA)
    anchored = sitk.Maximum(sitk.Cast(enhanced, sitk.sitkFloat32) + correction, 0.0)
    anchored.CopyInformation(enhanced)
    pet_array = sitk.GetArrayViewFromImage(pet_float)
    head = head_mask(pet_array)
    shift = 100.0 * float(np.abs(sitk.GetArrayViewFromImage(correction)[head]).mean()) / max(
        float(pet_array[head].mean()), 1e-12) if head.any() else 0.0
    return anchored, shift
