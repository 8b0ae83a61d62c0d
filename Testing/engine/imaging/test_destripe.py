"""Wavelet-Fourier stripe removal on a synthetic head with slice-offset stripes."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from M2DiffSlicer.imaging.destripe import remove_stripes


def _head(shape=(96, 112, 96), seed=0):
    """Model-grid-sized smooth ellipsoidal 'head' with 20 % low-frequency texture, [z, y, x]."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape, dtype=np.float32)
    centre = [(n - 1) / 2 for n in shape]
    radius = [0.4 * n for n in shape]
    inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radius)) < 1
    texture = gaussian_filter(rng.standard_normal(shape).astype(np.float32), 3)
    texture /= texture.std()
    return np.clip(gaussian_filter(inside.astype(np.float32), 1.5) * (1 + 0.2 * texture), 0, None)


def _jump_energy(residual, axis):
    """Energy of the slice-to-slice jumps of the per-slice sum: what a reader sees as stripes."""
    other = tuple(a for a in range(3) if a != axis)
    return float((np.diff(residual.sum(axis=other)) ** 2).sum())


@pytest.mark.parametrize("stack_axis, plane_axis", [(0, 2), (1, 0), (2, 1)])
def test_slice_offset_stripes_lose_most_of_their_energy(stack_axis, plane_axis):
    head = _head()
    gains = 0.05 * np.random.default_rng(1).standard_normal(head.shape[stack_axis]).astype(np.float32)
    shape = [1, 1, 1]
    shape[stack_axis] = -1
    stripes = gains.reshape(shape) * head  # per-slice gain error, as independently generated slices have
    out = remove_stripes(head + stripes, stack_axis, plane_axis)
    assert _jump_energy(out - head, stack_axis) < 0.2 * _jump_energy(stripes, stack_axis)


def test_unstriped_volume_is_almost_unchanged():
    head = _head()
    out = remove_stripes(head, 0, 2)
    assert np.linalg.norm(out - head) / np.linalg.norm(head) < 0.015
    assert abs(out.sum() / head.sum() - 1) < 0.005


def test_odd_sized_volume_keeps_its_shape():
    vol = _head(shape=(97, 101, 83))
    assert remove_stripes(vol, 1, 2).shape == (97, 101, 83)


def test_planes_smaller_than_the_wavelet_are_still_filtered():
    head = _head(shape=(32, 32, 32))
    gains = 0.05 * np.random.default_rng(2).standard_normal(32).astype(np.float32)
    stripes = gains[:, None, None] * head
    out = remove_stripes(head + stripes, 0, 2)
    assert out.shape == head.shape
    assert _jump_energy(out - head, 0) < 0.5 * _jump_energy(stripes, 0)


@pytest.mark.parametrize(
    "kwargs, word",
    [({"stack_axis": 0, "plane_axis": 0}, "differ"), ({"stack_axis": 0, "plane_axis": 1, "sigma": 0}, "sigma")],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, word):
    with pytest.raises(ValueError, match=word):
        remove_stripes(_head(), **kwargs)


def test_two_dimensional_input_is_rejected():
    with pytest.raises(ValueError, match="3D"):
        remove_stripes(np.zeros((16, 16), np.float32), 0, 1)
