"""What an input PET looks like to the network: noise level and intensity profile on the model grid.

Measured on the prepared LD-PET (model grid, divided by its robust head mean), so the numbers are unit- and
dose-agnostic and comparable with the same numbers measured on a model's training inputs (the catalogue records
their range; enhance/input_check.py warns when an input falls outside it).
"""

from __future__ import annotations

import numpy as np

from .head_mask import head_mask
from .model_grid import BRAIN_FRACTION

_MAD_TO_SIGMA = 1.4826  # MAD of a Gaussian -> its standard deviation


def noise_level(pet: np.ndarray) -> float:
    """Robust relative noise of a [z, y, x] PET inside the brain: the MAD-based standard deviation of second
    differences along x (x[i-1] - 2 x[i] + x[i+1], whose variance is 6 sigma^2 for white noise), over the brain
    mean.

    Second differences cancel the smooth part of the uptake, and the median ignores the few edges, so on the
    simulator's scanners this rises about fivefold from a 25 %-dose to a 1 %-dose scan, and more for a sharper
    reconstruction (benchmarks/results/input_ranges.md).
    """
    brain = head_mask(pet, BRAIN_FRACTION)
    triples = brain[:, :, 2:] & brain[:, :, 1:-1] & brain[:, :, :-2]
    if triples.sum() < 100:
        return float("nan")
    second = (pet[:, :, 2:] - 2.0 * pet[:, :, 1:-1] + pet[:, :, :-2])[triples]
    sigma = _MAD_TO_SIGMA * float(np.median(np.abs(second - np.median(second)))) / np.sqrt(6.0)
    return sigma / float(pet[brain].mean())


def brain_contrast(pet: np.ndarray) -> float:
    """Intensity profile: the 95th over the 50th percentile of the brain's values (grey against white matter
    and partial volume; a foreign tracer or units mix-up moves it far)."""
    values = pet[head_mask(pet, BRAIN_FRACTION)]
    if values.size < 100:
        return float("nan")
    return float(np.percentile(values, 95) / np.percentile(values, 50))


def input_profile(pet: np.ndarray) -> dict[str, float]:
    """{statistic: value} of a prepared LD-PET; the keys are those a catalogue's trained ranges may hold."""
    return {"noise_level": noise_level(pet), "brain_contrast": brain_contrast(pet)}
