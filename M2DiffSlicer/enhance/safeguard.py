"""Never worse than the input: blend the network's output with the input when the input is cleaner than the
data the model was trained on.

A network trained on one noise level removes that much noise whatever it is given, so a 25 %-dose scan comes out
over-smoothed. The safeguard keeps a fraction w of the network's correction, output = input + w (network - input),
with w rising linearly from 0 at noise level `noise_off` to 1 at `noise_full` (imaging/input_profile.noise_level).
Both are chosen on validation subjects (benchmarks/robustness.py --calibrate) and stored in the catalogue entry's
training.safeguard; a model without that record is used as is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk



@dataclass(frozen=True)
class Safeguard:
    """The blend weight's ramp over the input's noise level."""

    noise_off: float  # at or below: the input is returned unchanged
    noise_full: float  # at or above: the network's full correction

    def __post_init__(self) -> None:
        if not 0 <= self.noise_off < self.noise_full:
            raise ValueError(f"need 0 <= noise_off < noise_full, got {self.noise_off}, {self.noise_full}")

    def weight(self, noise_level: float) -> float:
        """Share of the network's correction kept for an input of `noise_level` (1 when it cannot be measured)."""
        if not math.isfinite(noise_level):
            return 1.0
        return float(np.clip((noise_level - self.noise_off) / (self.noise_full - self.noise_off), 0.0, 1.0))


def safeguard_for(training: dict[str, Any] | None) -> Safeguard | None:
    """The calibrated safeguard in a catalogue entry's training record (input_check.training_record), or None."""
    values = None if training is None else training.get("safeguard")
    return None if values is None else Safeguard(float(values["noise_off"]), float(values["noise_full"]))


def blend(pet: sitk.Image, enhanced: sitk.Image, weight: float) -> sitk.Image:
    """input + weight (enhanced - input), voxel by voxel on the input's grid (float32, the input's geometry)."""
    pet_array = sitk.GetArrayViewFromImage(pet).astype(np.float32)
    out = pet_array + np.float32(weight) * (sitk.GetArrayViewFromImage(enhanced) - pet_array)
    image = sitk.GetImageFromArray(out.astype(np.float32))
    image.CopyInformation(enhanced)
    return image
