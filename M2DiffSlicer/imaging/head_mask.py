"""The head of a PET or T1 volume: voxels above a fraction of the 99.5th percentile (robust to a few hot voxels)."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

HEAD_FRACTION = 0.1


def head_threshold(array: np.ndarray, fraction: float = HEAD_FRACTION) -> float:
    """`fraction` of the array's 99.5th percentile: the intensity above which a voxel belongs to the head."""
    return fraction * float(np.percentile(array, 99.5))


def head_mask(array: np.ndarray, fraction: float = HEAD_FRACTION) -> np.ndarray:
    """Boolean mask (same shape as `array`) of the voxels above `head_threshold`."""
    return np.asarray(array) > head_threshold(array, fraction)


def head_mask_image(image: sitk.Image, fraction: float = HEAD_FRACTION) -> sitk.Image:
    """`head_mask` of an image as a uint8 image on the same grid (for ITK masks and label statistics)."""
    mask = sitk.GetImageFromArray(head_mask(sitk.GetArrayViewFromImage(image), fraction).astype(np.uint8))
    mask.CopyInformation(image)
    return mask
