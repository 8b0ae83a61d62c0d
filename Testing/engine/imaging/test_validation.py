"""Input validation: every bad input gets a BadInputError naming the file; good inputs pass untouched."""

import numpy as np
import pytest
import SimpleITK as sitk

import synthetic_brain as sb
from M2DiffSlicer.imaging import validation
from M2DiffSlicer.errors import BadInputError, OutOfMemoryError

BIG_BUDGET = 64 * 2**30


@pytest.fixture(scope="module")
def pair():
    """A realistic PET (3 mm) and T1 (2 mm) in the same frame."""
    return sb.pet_like((3.0, 3.0, 3.0)), sb.t1_like((2.0, 2.0, 2.0))


def _image(array, spacing=(2.0, 2.0, 2.0)):
    image = sitk.GetImageFromArray(np.asarray(array, dtype=np.float32))
    image.SetSpacing(spacing)
    return image


def _validate(pet, t1, tmp_path, **kwargs):
    return validation.validate_inputs(pet, t1, [tmp_path / "out.nii.gz"], pet_name="pet.nii.gz",
                                      t1_name="t1.nii.gz", available_bytes=BIG_BUDGET, **kwargs)


def test_normal_pet_and_t1_pass_without_warnings_and_stay_unchanged(pair, tmp_path):
    pet, t1 = pair
    before = sitk.GetArrayFromImage(pet).copy()
    assert _validate(pet, t1, tmp_path) == []
    assert _validate(pet, None, tmp_path) == []
    np.testing.assert_array_equal(sitk.GetArrayFromImage(pet), before)


def test_noisy_smooth_and_coarse_pets_are_not_taken_for_t1(tmp_path):
    rng = np.random.default_rng(0)
    for spacing, fwhm in (((2.0, 2.0, 2.0), 4.5), ((4.0, 4.0, 4.0), 9.0)):
        pet = sb.pet_like(spacing, fwhm)
        array = sitk.GetArrayFromImage(pet)
        noisy = sitk.GetImageFromArray(array + rng.normal(0, 0.15 * array.max(), array.shape).astype(np.float32))
        noisy.CopyInformation(pet)
        validation.check_modalities(noisy, sb.t1_like(), "pet", "t1")


def test_t1_given_as_pet_is_rejected(pair, tmp_path):
    _, t1 = pair
    with pytest.raises(BadInputError, match="pet.nii.gz: looks like a T1"):
        _validate(t1, None, tmp_path)


def test_swapped_pet_and_t1_are_reported_as_swapped(pair, tmp_path):
    pet, t1 = pair
    with pytest.raises(BadInputError, match="swapped"):
        _validate(t1, pet, tmp_path)


def test_pet_given_as_t1_is_rejected(pair):
    pet, _ = pair
    with pytest.raises(BadInputError, match="T1b: looks like a PET"):
        validation.check_modalities(pet, pet, "PETa", "T1b")


def test_4d_pet_is_rejected():
    frames = sitk.JoinSeries([_image(np.ones((4, 5, 6)))] * 3)
    with pytest.raises(BadInputError, match="dyn.nii: is 4D"):
        validation.check_geometry(frames, "dyn.nii")


def test_2d_image_and_single_slice_are_rejected():
    with pytest.raises(BadInputError, match="not a 3D volume"):
        validation.check_geometry(sitk.GetImageFromArray(np.ones((8, 8), np.float32)), "a.png")
    with pytest.raises(BadInputError, match="not a 3D volume"):
        validation.check_geometry(_image(np.ones((1, 8, 8))), "slice.nii")


def test_vector_image_is_rejected():
    rgb = sitk.GetImageFromArray(np.ones((4, 5, 6, 3), np.float32), isVector=True)
    with pytest.raises(BadInputError, match="3 components"):
        validation.check_geometry(rgb, "rgb.nrrd")


@pytest.mark.parametrize("spacing", [(0.1, 1.0, 1.0), (2.0, 2.0, 12.0), (1.0, 1.0, 6.0)])
def test_absurd_or_very_anisotropic_spacing_is_rejected(spacing):
    with pytest.raises(BadInputError, match="spacing"):
        validation.check_geometry(_image(np.ones((4, 5, 6)), spacing), "x.nii")


def test_constant_empty_and_nonfinite_volumes_are_rejected():
    with pytest.raises(BadInputError, match="constant"):
        validation.check_values(np.full((4, 4, 4), 7.0), "c.nii")
    with pytest.raises(BadInputError, match="no positive"):
        validation.check_values(-np.arange(64.0).reshape(4, 4, 4), "n.nii")
    with pytest.raises(BadInputError, match="empty"):
        validation.check_values(np.zeros((0, 4, 4)), "e.nii")
    bad = np.arange(64.0).reshape(4, 4, 4)
    bad[1, 2, 3] = np.nan
    bad[0, 0, 0] = np.inf
    with pytest.raises(BadInputError, match="f.nii: has 2 NaN/Inf"):
        validation.check_values(bad, "f.nii")


def test_negative_pet_values_warn_and_are_clipped_only_in_the_copy(pair, tmp_path):
    pet, t1 = pair
    array = sitk.GetArrayFromImage(pet)
    array[0, 0, :10] = -5.0
    negative = sitk.GetImageFromArray(array)
    negative.CopyInformation(pet)
    warnings = _validate(negative, t1, tmp_path)
    assert len(warnings) == 1 and "10 voxels" in warnings[0] and "pet.nii.gz" in warnings[0]
    clipped = validation.nonnegative_copy(negative)
    assert sitk.GetArrayViewFromImage(clipped).min() == 0.0
    assert sitk.GetArrayViewFromImage(negative).min() == -5.0


def test_job_too_large_for_memory_fails_early_with_the_estimate(pair, tmp_path):
    pet, t1 = pair
    needed = validation.estimate_memory_bytes(pet, t1)
    with pytest.raises(OutOfMemoryError, match="needs about"):
        validation.validate_inputs(pet, t1, [], available_bytes=needed - 1)
    validation.check_memory(pet, t1, available_bytes=needed)


def test_unwritable_or_clashing_output_paths_are_rejected(tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(BadInputError, match="does not exist"):
        validation.check_output_paths([tmp_path / "missing" / "out.nii.gz"])
    with pytest.raises(BadInputError, match="does not exist"):
        validation.check_output_paths([a_file / "out.nii.gz"])
    with pytest.raises(BadInputError, match="is a folder"):
        validation.check_output_paths([tmp_path])
    with pytest.raises(BadInputError, match="is also an input"):
        validation.check_output_paths([a_file], inputs=[a_file])
    validation.check_output_paths([None, tmp_path / "ok.nii.gz"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_t1_far_from_the_pet_fails_the_overlap_check(pair):
    pet, t1 = pair
    assert validation.check_overlap(pet, t1, sitk.Transform()) > 0.95
    far = sitk.TranslationTransform(3, (0.0, 0.0, 400.0))
    with pytest.raises(BadInputError, match="do not overlap"):
        validation.check_overlap(pet, t1, far)


def test_4d_or_huge_files_are_rejected_from_the_header_alone(tmp_path):
    frames = sitk.JoinSeries([_image(np.ones((4, 5, 6)))] * 3)
    sitk.WriteImage(frames, str(tmp_path / "dyn.nii.gz"))
    with pytest.raises(BadInputError, match="dyn.nii.gz: is 4D"):
        validation.check_file_header(tmp_path / "dyn.nii.gz")
    sitk.WriteImage(_image(np.ones((40, 50, 60))), str(tmp_path / "vol.nrrd"))
    validation.check_file_header(tmp_path / "vol.nrrd", available_bytes=BIG_BUDGET)
    with pytest.raises(OutOfMemoryError, match="vol.nrrd: size \\(60, 50, 40\\)"):
        validation.check_file_header(tmp_path / "vol.nrrd", available_bytes=1000)
    (tmp_path / "junk.nii.gz").write_bytes(b"not an image")
    with pytest.raises(BadInputError, match="cannot read"):
        validation.check_file_header(tmp_path / "junk.nii.gz")
