"""The head mask: voxels above a fraction of the 99.5th percentile, so a few hot voxels do not hide the head."""

import numpy as np
import pytest
import SimpleITK as sitk

from M2DiffSlicer.imaging.head_mask import head_mask, head_mask_image, head_threshold


def _head_with_hot_voxels() -> tuple[np.ndarray, np.ndarray]:
    """(array, true head): background 5, head 100 over 60 % of the voxels, 3 hot voxels (0.3 %) at 5000."""
    array = np.full((10, 10, 10), 5.0, np.float32)
    head = np.zeros(array.shape, bool)
    head[:6] = True
    array[head] = 100.0
    array[0, 0, :3] = 5000.0
    return array, head


def test_the_threshold_is_a_tenth_of_the_99_5th_percentile():
    array, _ = _head_with_hot_voxels()
    assert head_threshold(array) == pytest.approx(0.1 * np.percentile(array, 99.5))
    assert head_threshold(array, fraction=0.2) == pytest.approx(0.2 * np.percentile(array, 99.5))


def test_a_few_hot_voxels_do_not_hide_the_head():
    array, head = _head_with_hot_voxels()
    np.testing.assert_array_equal(head_mask(array), head)
    # A max-based threshold would keep the hot voxels alone.
    np.testing.assert_array_equal(array > 0.1 * array.max(), array == 5000.0)


def test_a_larger_fraction_keeps_fewer_voxels():
    array, head = _head_with_hot_voxels()
    np.testing.assert_array_equal(head_mask(array, fraction=0.04), np.ones_like(head))
    assert not head_mask(array, fraction=1.0)[head & (array < 5000)].any()


def test_the_mask_image_is_uint8_on_the_same_grid():
    array, head = _head_with_hot_voxels()
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((2.0, 2.5, 3.0))
    image.SetOrigin((-10.0, 4.0, 7.0))
    mask = head_mask_image(image)
    assert mask.GetPixelID() == sitk.sitkUInt8
    assert (mask.GetSpacing(), mask.GetOrigin()) == (image.GetSpacing(), image.GetOrigin())
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mask), head.astype(np.uint8))
