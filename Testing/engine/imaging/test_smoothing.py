"""The anti-alias blur: the missing FWHM per axis, nothing on axes already as coarse as the target."""

import math

import numpy as np
import pytest
import SimpleITK as sitk

import synthetic_brain as sb
from M2DiffSlicer.imaging.registration import register_rigid
from M2DiffSlicer.imaging.smoothing import FWHM_PER_SIGMA, antialias


def _impulse(spacing_mm: tuple[float, float, float], size: int = 41) -> sitk.Image:
    array = np.zeros((size, size, size), np.float32)
    array[size // 2, size // 2, size // 2] = 1.0
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing_mm)
    return image


def _sigma_mm(image: sitk.Image, axis_xyz: int) -> float:
    """Standard deviation (mm) of an impulse response along one axis, from its second moment."""
    array = sitk.GetArrayFromImage(image).astype(np.float64)
    profile = array.sum(axis=tuple(a for a in range(3) if a != 2 - axis_xyz))
    position = (np.arange(profile.size) - profile.size // 2) * image.GetSpacing()[axis_xyz]
    return math.sqrt(float((profile * position**2).sum() / profile.sum()))


def test_fwhm_per_sigma_is_the_gaussian_ratio():
    assert FWHM_PER_SIGMA == pytest.approx(2.3548, abs=1e-4)


def test_each_axis_gets_the_gaussian_of_the_missing_fwhm():
    blurred = antialias(_impulse((1.0, 1.0, 1.0)), (3.0, 2.0, 1.0))
    assert _sigma_mm(blurred, 0) == pytest.approx(math.sqrt(3.0**2 - 1.0) / FWHM_PER_SIGMA, rel=0.05)
    assert _sigma_mm(blurred, 1) == pytest.approx(math.sqrt(2.0**2 - 1.0) / FWHM_PER_SIGMA, rel=0.05)
    assert _sigma_mm(blurred, 2) < 0.01  # already at the target spacing: not blurred


def test_an_image_already_as_coarse_as_the_target_is_returned_unchanged():
    image = _impulse((2.0, 2.0, 3.0))
    assert antialias(image, (2.0, 2.0, 2.0)) is image


def test_registration_accepts_a_t1_with_one_axis_already_coarser_than_its_working_spacing():
    # The T1 is brought to 2 mm before the metric; its 2.5 mm axis needs no blur (a zero sigma, which ITK rejects).
    truth = sb.known_rigid((2.0, -2.0, 1.0), (3.0, -2.0, 2.0))
    pet, t1 = sb.pet_like((2.0, 2.0, 2.0)), sb.misaligned_t1(truth, (1.0, 1.0, 2.5))
    result = register_rigid(pet, t1)
    assert sb.mean_displacement_mm(result.transform, truth, sb.brain_points(pet)) < 1.5
