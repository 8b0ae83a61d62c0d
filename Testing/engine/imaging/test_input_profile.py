"""Input profile statistics: the noise level follows the noise, not the smooth uptake pattern."""

import numpy as np
import pytest

from M2DiffSlicer.imaging.input_profile import brain_contrast, input_profile, noise_level


def _brain(noise: float, seed: int = 0) -> np.ndarray:
    """A smooth ellipsoidal 'brain' (mean ~1, a gentle grey/white gradient) with white noise of std `noise`."""
    z, y, x = np.mgrid[:40, :48, :40].astype(np.float32)
    radius = ((x - 20) / 16) ** 2 + ((y - 24) / 20) ** 2 + ((z - 20) / 15) ** 2
    uptake = np.where(radius < 1, 0.6 + 0.8 * radius, 0.0)  # brighter towards the cortex
    return (uptake + np.random.default_rng(seed).normal(0.0, noise, uptake.shape) * (radius < 1)).astype(np.float32)


def test_noise_level_recovers_white_noise_relative_to_the_brain_mean():
    pet = _brain(0.05)
    mean = pet[pet > 0.4 * np.percentile(pet, 99.5)].mean()
    assert noise_level(pet) == pytest.approx(0.05 / mean, rel=0.15)


def test_noise_level_ignores_the_smooth_uptake_and_grows_with_noise():
    levels = [noise_level(_brain(sigma)) for sigma in (0.0, 0.02, 0.08)]
    assert levels[0] < 0.005  # the gradient alone is not noise
    assert levels[0] < levels[1] < levels[2]
    assert levels[2] / levels[1] == pytest.approx(4.0, rel=0.2)


def test_statistics_are_nan_without_a_brain():
    assert np.isnan(noise_level(np.zeros((8, 8, 8), np.float32)))
    assert np.isnan(brain_contrast(np.zeros((8, 8, 8), np.float32)))


def test_profile_names_the_statistics_the_catalogue_ranges_use():
    assert set(input_profile(_brain(0.02))) == {"noise_level", "brain_contrast"}
