"""Rigid T1 -> PET registration on a realistic synthetic pair with a known misalignment."""

import numpy as np
import pytest
import SimpleITK as sitk

import synthetic_brain as sb
from M2DiffSlicer.errors import BadInputError
from M2DiffSlicer.imaging.registration import register_rigid

TRUTH = sb.known_rigid(rotation_deg=(5.0, -4.0, 3.0), translation_mm=(6.0, -5.0, 4.0))


@pytest.fixture(scope="module")
def pair():
    """PET at 2 mm (FDG-like, 6 mm FWHM) and a T1 at 1.5 mm misaligned by TRUTH."""
    return sb.pet_like((2.0, 2.0, 2.0)), sb.misaligned_t1(TRUTH, (1.5, 1.5, 1.5))


@pytest.fixture(scope="module")
def registered(pair):
    """One default registration of the pair, with the progress calls it made: (result, [(iteration, level)])."""
    pet, t1 = pair
    calls = []
    result = register_rigid(pet, t1, progress=lambda i, metric, level: calls.append((i, level)))
    return result, calls


def test_recovers_a_known_rigid_misalignment_within_1_mm(pair, registered):
    pet, _ = pair
    result, _ = registered
    error = sb.mean_displacement_mm(result.transform, TRUTH, sb.brain_points(pet))
    assert error < 1.0
    assert result.nmi_after > result.nmi_before
    assert result.iterations > 0 and np.isfinite(result.metric)


def test_result_transform_puts_the_t1_on_the_pet_grid(pair, registered):
    pet, t1 = pair
    result, _ = registered
    on_pet = sitk.Resample(t1, pet, result.transform)
    expected = sitk.Resample(sb.template("t1"), pet)
    brain = sitk.GetArrayViewFromImage(pet) > 0.2 * sitk.GetArrayViewFromImage(pet).max()
    correlation = np.corrcoef(sitk.GetArrayViewFromImage(on_pet)[brain],
                              sitk.GetArrayViewFromImage(expected)[brain])[0, 1]
    assert correlation > 0.97


def test_progress_callback_is_called_once_per_iteration(registered):
    result, calls = registered
    assert [i for i, _ in calls] == list(range(1, result.iterations + 1))
    assert {level for _, level in calls} == {0, 1, 2}


def test_a_supplied_transform_is_kept_when_optimisation_is_skipped(pair):
    pet, t1 = pair
    result = register_rigid(pet, t1, initial_transform=TRUTH, optimize=False)
    assert result.iterations == 0 and result.stop_condition == "skipped"
    assert sb.mean_displacement_mm(result.transform, TRUTH, sb.brain_points(pet)) == 0.0


def test_a_supplied_starting_transform_is_refined(pair):
    pet, t1 = pair
    start = sb.known_rigid((3.0, -2.0, 1.0), (2.0, -1.0, 1.0))
    result = register_rigid(pet, t1, initial_transform=sitk.Transform(start))
    assert sb.mean_displacement_mm(result.transform, TRUTH, sb.brain_points(pet)) < 1.0


def test_non_rigid_supplied_transform_is_rejected_for_optimisation(pair):
    pet, t1 = pair
    scaling = sitk.AffineTransform(3)
    scaling.SetMatrix((1.2, 0, 0, 0, 1, 0, 0, 0, 1))
    with pytest.raises(BadInputError, match="not rigid"):
        register_rigid(pet, t1, initial_transform=scaling)
