"""Baseline post-filters: Gaussian smoothing and the MR-guided filter."""

import numpy as np
import pytest

from filters import gaussian_postfilter, guided_filter


def test_gaussian_postfilter_preserves_the_total_and_reduces_noise():
    rng = np.random.default_rng(0)
    noisy = 10.0 + rng.normal(0, 1, (24, 24, 24)).astype(np.float32)
    smoothed = gaussian_postfilter(noisy, 6.0, (2.0, 2.0, 2.0))
    assert smoothed.mean() == pytest.approx(noisy.mean(), rel=1e-3)
    assert smoothed[4:-4, 4:-4, 4:-4].std() < 0.3 * noisy.std()


def test_gaussian_postfilter_of_zero_fwhm_is_the_identity():
    data = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
    np.testing.assert_array_equal(gaussian_postfilter(data, 0.0, (1, 1, 1)), data)


def test_guided_filter_keeps_an_edge_the_guide_shares_and_removes_noise():
    rng = np.random.default_rng(1)
    truth = np.zeros((20, 32, 32), np.float32)
    truth[:, :, 16:] = 4.0
    noisy = truth + rng.normal(0, 0.5, truth.shape).astype(np.float32)
    guided = guided_filter(noisy, truth, radius_mm=6.0, epsilon=1e-3, spacing_zyx=(2, 2, 2))
    blurred = gaussian_postfilter(noisy, 6.0 * 2.3548 / 2, (2, 2, 2))
    assert np.abs(guided - truth).mean() < 0.5 * np.abs(blurred - truth).mean()
    assert np.abs(guided - truth).mean() < 0.25 * np.abs(noisy - truth).mean()


def test_guided_filter_rejects_mismatched_grids():
    with pytest.raises(ValueError, match="share a grid"):
        guided_filter(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)), 2.0, 0.1, (1, 1, 1))
