"""Reading volumes: NaN/Inf voxels are a clear error in every format, although ITK's NIfTI reader zeroes them."""

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from M2DiffSlicer.errors import BadInputError
from M2DiffSlicer.imaging import volumes
from M2DiffSlicer.imaging.validation import check_values
from M2DiffSlicer.imaging.volumes import count_nonfinite_nifti, read_image

NIFTI = [".nii", ".nii.gz", ".hdr"]  # .hdr: a NIfTI pair, voxels in the .img beside it
BAD_VALUES = [np.nan, np.inf, -np.inf]


def _volume(bad: float | None = None) -> sitk.Image:
    array = np.linspace(1.0, 2.0, 6 * 7 * 8, dtype=np.float32).reshape(6, 7, 8)
    if bad is not None:
        array[1, 2, 3] = array[4, 5, 6] = bad
    return sitk.GetImageFromArray(array)


@pytest.mark.parametrize("suffix", NIFTI)
@pytest.mark.parametrize("bad", BAD_VALUES)
def test_nifti_with_nan_or_inf_is_rejected_with_the_file_and_the_count(tmp_path, suffix, bad):
    path = tmp_path / f"pet{suffix}"
    sitk.WriteImage(_volume(bad), str(path))
    assert (sitk.GetArrayFromImage(sitk.ReadImage(str(path))) == 0).sum() == 2  # what ITK alone would give
    with pytest.raises(BadInputError, match=rf"{path.name}: has 2 NaN/Inf voxels"):
        read_image(path)


@pytest.mark.parametrize("suffix", NIFTI)
def test_a_finite_nifti_is_read_unchanged(tmp_path, suffix):
    path = tmp_path / f"pet{suffix}"
    sitk.WriteImage(_volume(), str(path))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_image(path)), sitk.GetArrayFromImage(_volume()))


def test_the_check_reads_the_file_in_chunks(tmp_path, monkeypatch):
    path = tmp_path / "pet.nii.gz"
    sitk.WriteImage(_volume(np.nan), str(path))
    monkeypatch.setattr(volumes, "NIFTI_CHECK_CHUNK_VOXELS", 5)  # 336 voxels: many chunks and a partial last one
    assert count_nonfinite_nifti(path) == 2


def test_scaled_nifti_values_are_checked_as_stored(tmp_path):
    array = np.ones((6, 7, 8), np.float32)
    array[0, 0, 0] = np.nan
    image = nib.Nifti1Image(array, np.eye(4))
    image.header.set_slope_inter(2.0, 10.0)
    path = tmp_path / "scaled.nii"
    nib.save(image, path)
    assert count_nonfinite_nifti(path) == 1


def test_an_integer_nifti_needs_no_check(tmp_path):
    path = tmp_path / "labels.nii.gz"
    sitk.WriteImage(sitk.Cast(_volume() * 10, sitk.sitkInt16), str(path))
    assert count_nonfinite_nifti(path) == 0
    assert read_image(path).GetPixelID() == sitk.sitkInt16


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
@pytest.mark.parametrize("bad", BAD_VALUES)
def test_other_formats_keep_nan_and_inf_for_the_value_check(tmp_path, suffix, bad):
    # NRRD and MetaImage keep non-finite voxels as they are, so validation.check_values sees and reports them.
    path = tmp_path / f"pet{suffix}"
    sitk.WriteImage(_volume(bad), str(path))
    image = read_image(path)  # kept referenced: a view of a freed image reads released memory
    array = sitk.GetArrayViewFromImage(image)
    assert (~np.isfinite(array)).sum() == 2
    with pytest.raises(BadInputError, match=rf"{path.name}: has 2 NaN/Inf voxels"):
        check_values(array, str(path))
