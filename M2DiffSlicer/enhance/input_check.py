"""Out-of-distribution warnings: an input whose profile lies outside what the model was trained on.

The catalogue entry of a model records, under training.input_ranges, the [min, max] of each input_profile
statistic (and of the registration's NMI) over its training subjects (scripts/measure_input_ranges.py). A user's
own checkpoint file has no such record: its report.json lists the profile without trained ranges, and no warning
is given.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..model.catalogue import load_catalogue

# Slack around the trained [min, max] (the training set is a sample, so its extremes are not hard edges): each
# bound moves away from the statistic's natural origin by this fraction (noise 0; contrast and NMI 1, their least).
RANGE_SLACK = 0.15
_ORIGIN = {"noise_level": 0.0, "brain_contrast": 1.0, "registration_nmi": 1.0}

_MEANING = {
    "noise_level": ("noise level (relative, on the model grid)",
                    "the scan is cleaner than the training data (higher dose, or a smoother reconstruction): the "
                    "model may over-smooth it",
                    "the scan is noisier than the training data (lower dose, or a sharper reconstruction): "
                    "residual noise or artefacts are likely"),
    "brain_contrast": ("brain contrast (95th / 50th percentile)",
                       "the uptake pattern is flatter than in training (another tracer, a strongly smoothed image, or "
                       "severe hypometabolism)",
                       "the uptake pattern is more contrasted than in training (another tracer or a sharper scanner)"),
    "registration_nmi": ("T1-to-PET registration quality (normalised mutual information)",
                         "the T1 fits the PET worse than in training: check the registration before trusting the MRI "
                         "guidance, or run MRI-free",
                         "the T1 fits the PET better than in any training subject"),
}


def training_record(model_path: str | Path) -> dict[str, Any] | None:
    """The catalogue's `training` record of the model at `model_path`, or None for a file it does not list."""
    resolved = Path(model_path).resolve()
    for entry in load_catalogue():
        if entry.path.resolve() == resolved:
            return entry.training
    return None


def trained_ranges(model_path: str | Path) -> dict[str, list[float]] | None:
    """The input ranges the catalogue records for the model at `model_path`, or None when there are none."""
    record = training_record(model_path)
    return None if record is None else record.get("input_ranges")


def out_of_range_messages(profile: dict[str, float], ranges: dict[str, list[float]] | None) -> list[str]:
    """One plain warning per statistic of `profile` outside its trained range (widened by RANGE_SLACK)."""
    if ranges is None:  # a user's own checkpoint: report.json shows the profile with no trained range beside it
        return []
    messages = []
    for name, value in profile.items():
        if name not in ranges or value is None or not math.isfinite(value):
            continue
        low, high = ranges[name]
        label, below, above = _MEANING[name]
        origin = _ORIGIN[name]
        if value < origin + (low - origin) * (1 - RANGE_SLACK) or value > origin + (high - origin) * (1 + RANGE_SLACK):
            consequence = below if value < low else above
            messages.append(f"input {label} {value:.3g} is outside what the model was trained on "
                            f"({low:.3g} to {high:.3g}): {consequence}")
    return messages


def profile_for_report(profile: dict[str, float], ranges: dict[str, list[float]] | None) -> dict[str, Any]:
    """The profile with the trained ranges beside it, for report.json."""
    return {name: {"value": value if math.isfinite(value) else None,
                   "trained_range": None if ranges is None else ranges.get(name)}
            for name, value in profile.items()}
