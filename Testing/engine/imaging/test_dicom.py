"""The derived DICOM PET series: geometry, values, SUV tags, UIDs and references; every refusal leaves nothing."""

import os

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import UID

import dicom_series as ds
from M2DiffSlicer.errors import BadInputError
from M2DiffSlicer.imaging import dicom
from M2DiffSlicer.imaging.volumes import read_image


def _phantom(angle_deg: float = 12.0) -> sitk.Image:
    """A 24 x 20 x 9 oblique, anisotropic Bq/ml volume: a bright blob on a warm background, one empty slice."""
    z, y, x = np.mgrid[0:9, 0:20, 0:24].astype(float)
    array = 4000.0 + 20000.0 * np.exp(-((x - 12) ** 2 + (y - 9) ** 2 + 4 * (z - 4) ** 2) / 30.0)
    array[0] = 0.0
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing((2.5, 2.2, 3.27))
    image.SetOrigin((-31.0, -22.5, 41.0))
    a = np.deg2rad(angle_deg)
    image.SetDirection((np.cos(a), 0.0, np.sin(a), 0.0, 1.0, 0.0, -np.sin(a), 0.0, np.cos(a)))
    return image


@pytest.fixture
def source(tmp_path):
    folder = tmp_path / "pet_dicom"
    ds.write_series(_phantom(), folder)
    return folder


def _enhanced(source_folder):
    """A float volume on the source grid (SimpleITK's reading of it), scaled so it differs from the input."""
    image = read_image(source_folder)
    return sitk.Cast(image, sitk.sitkFloat32) * 0.731 + 12.345


def test_series_has_the_source_geometry_and_the_float_values_within_quantisation(source, tmp_path):
    enhanced = _enhanced(source)
    files = dicom.write_pet_series(enhanced, dicom.read_source_series(source), tmp_path / "out", "test", "0.1")
    assert len(files) == 9
    back = read_image(tmp_path / "out")
    reference = read_image(source)
    assert back.GetSize() == reference.GetSize()
    np.testing.assert_allclose(back.GetOrigin(), reference.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(back.GetSpacing(), reference.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(back.GetDirection(), reference.GetDirection(), atol=1e-6)
    written, expected = sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(enhanced)
    for index, slice_ds in enumerate(ds.read_slices(tmp_path / "out")):
        slope = float(slice_ds.RescaleSlope)
        assert slice_ds.RescaleIntercept == 0 and slice_ds.PixelRepresentation == 1
        assert np.abs(written[index] - expected[index]).max() <= slope / 2 * 1.001
        assert np.abs(slice_ds.pixel_array).max() >= 32000  # the slope uses the 16-bit range


def test_suv_tags_are_copied_so_suvbw_equals_the_inputs(source, tmp_path):
    dicom.write_pet_series(_enhanced(source), dicom.read_source_series(source), tmp_path / "out", "test", "0.1")
    for original, derived in zip(ds.read_slices(source), ds.read_slices(tmp_path / "out")):
        assert ds.suv_bw_factor(derived) == pytest.approx(ds.suv_bw_factor(original), rel=1e-12)
        assert derived.Units == "BQML" and derived.DecayCorrection == "START"
        assert derived.CorrectedImage == original.CorrectedImage
        assert derived.DecayFactor == original.DecayFactor
        assert derived.RadiopharmaceuticalInformationSequence == original.RadiopharmaceuticalInformationSequence
        for keyword in ("PatientName", "PatientID", "PatientWeight", "StudyInstanceUID", "FrameOfReferenceUID",
                        "SeriesDate", "SeriesTime", "AcquisitionTime", "ImagePositionPatient"):
            assert derived[keyword].value == original[keyword].value, keyword


def test_uids_are_new_valid_and_the_source_slices_are_referenced(source, tmp_path):
    dicom.write_pet_series(_enhanced(source), dicom.read_source_series(source), tmp_path / "out",
                           "M2Diff test model", "0.1")
    originals, derived = ds.read_slices(source), ds.read_slices(tmp_path / "out")
    old_uids = {d.SOPInstanceUID for d in originals} | {originals[0].SeriesInstanceUID}
    new_uids = [d.SOPInstanceUID for d in derived]
    series_uids = {d.SeriesInstanceUID for d in derived}
    assert len(series_uids) == 1 and not series_uids & old_uids
    assert len(set(new_uids)) == len(new_uids) and not set(new_uids) & old_uids
    assert all(UID(uid).is_valid for uid in [*new_uids, *series_uids])
    for original, item in zip(originals, derived):
        assert item.SOPClassUID == dicom.PET_IMAGE_STORAGE == item.file_meta.MediaStorageSOPClassUID
        assert item.file_meta.MediaStorageSOPInstanceUID == item.SOPInstanceUID
        assert list(item.ImageType) == ["DERIVED", "SECONDARY"]
        assert "M2Diff" in item.SeriesDescription and "RESEARCH" in item.SeriesDescription
        assert item.DerivationDescription == "M2Diff test model"
        (reference,) = item.SourceImageSequence
        assert reference.ReferencedSOPInstanceUID == original.SOPInstanceUID
        assert reference.PurposeOfReferenceCodeSequence[0].CodeValue == "121322"
        assert item.ContributingEquipmentSequence[0].Manufacturer == "SIEMENS"


def test_private_tags_and_display_presets_are_not_copied(source, tmp_path):
    dicom.write_pet_series(_enhanced(source), dicom.read_source_series(source), tmp_path / "out", "test", "0.1")
    derived = ds.read_slices(tmp_path / "out")[3]
    assert not any(element.tag.is_private for element in derived)
    assert "WindowCenter" not in derived and "WindowWidth" not in derived


def test_an_all_zero_slice_is_encoded_with_slope_one():
    pixels, slope = dicom.encode_slice(np.zeros((4, 5)))
    assert slope == 1.0 and pixels.dtype == np.int16 and not pixels.any()


def test_encoding_error_is_at_most_half_a_slope_and_negatives_survive():
    plane = np.random.default_rng(0).normal(100.0, 400.0, size=(30, 40))
    pixels, slope = dicom.encode_slice(plane)
    assert np.abs(pixels * slope - plane).max() <= slope / 2 * 1.001
    assert (pixels < 0).any() and np.abs(pixels).max() <= 32767


def _listing(folder):
    return sorted(os.listdir(folder))


def test_a_folder_with_two_series_is_refused(source, tmp_path):
    ds.write_series(_phantom(angle_deg=0.0), source, prefix="other")  # a second series beside it
    with pytest.raises(BadInputError, match="2 DICOM series"):
        dicom.read_source_series(source)


def test_a_non_pet_series_is_refused(tmp_path):
    ds.write_series(_phantom(), tmp_path / "ct", sop_class=ds.CT_IMAGE_STORAGE)
    with pytest.raises(BadInputError, match="not a single-frame PET Image Storage"):
        dicom.read_source_series(tmp_path / "ct")


def test_a_non_empty_destination_is_refused_and_left_alone(source, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(BadInputError, match="not an empty folder"):
        dicom.write_pet_series(_enhanced(source), dicom.read_source_series(source), tmp_path / "out", "t", "0.1")
    assert _listing(tmp_path / "out") == ["keep.txt"]


def test_an_unwritable_parent_is_refused(tmp_path, monkeypatch):
    # CI runs as root, for whom every folder is writable: the permission answer is what is under test.
    monkeypatch.setattr(dicom.os, "access", lambda path, mode: False)
    with pytest.raises(BadInputError, match="not writable"):
        dicom.check_series_destination(tmp_path / "out")


def test_a_missing_parent_is_refused(tmp_path):
    with pytest.raises(BadInputError, match="does not exist"):
        dicom.check_series_destination(tmp_path / "nowhere" / "out")


def test_a_volume_off_the_source_grid_is_refused_and_nothing_is_left(source, tmp_path):
    moved = _enhanced(source)
    moved.SetOrigin([o + 1.0 for o in moved.GetOrigin()])
    before = _listing(tmp_path)
    with pytest.raises(BadInputError, match="does not lie on source slice"):
        dicom.write_pet_series(moved, dicom.read_source_series(source), tmp_path / "out", "t", "0.1")
    assert _listing(tmp_path) == before


def test_a_failure_while_writing_leaves_no_partial_series(source, tmp_path, monkeypatch):
    calls = []
    original_save = pydicom.dataset.Dataset.save_as

    def failing_save(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise OSError("disk full")
        return original_save(self, *args, **kwargs)

    monkeypatch.setattr(pydicom.dataset.Dataset, "save_as", failing_save)
    before = _listing(tmp_path)
    with pytest.raises(OSError, match="disk full"):
        dicom.write_pet_series(_enhanced(source), dicom.read_source_series(source), tmp_path / "out", "t", "0.1")
    assert _listing(tmp_path) == before
