"""SUVbw factors from DICOM PET tags (QIBA vendor-neutral recipe), and a series written from SUV values."""

import copy

import numpy as np
import pytest
import SimpleITK as sitk

import dicom_series as ds
from M2DiffSlicer.errors import BadInputError
from M2DiffSlicer.imaging import dicom
from M2DiffSlicer.imaging.suv import suv_bw_factor
from M2DiffSlicer.imaging.volumes import read_image

# The helper series: 72.5 kg, 245 MBq of F-18 injected at 09:58:00, series start 11:00:00 (3,720 s later).
EXPECTED = 72500.0 / (245e6 * 2.0 ** (-3720.0 / ds.F18_HALF_LIFE_S))


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    folder = tmp_path_factory.mktemp("suv") / "pet"
    image = sitk.GetImageFromArray(np.full((3, 6, 7), 5000.0, np.float32) + np.arange(7, dtype=np.float32))
    ds.write_series(image, folder)
    return folder


@pytest.fixture
def slice_ds(source):
    return copy.deepcopy(dicom.read_source_series(source)[0])


def test_factor_decays_the_dose_from_injection_to_the_series_start(slice_ds):
    assert suv_bw_factor(slice_ds) == pytest.approx(EXPECTED, rel=1e-12)
    assert suv_bw_factor(slice_ds) == pytest.approx(ds.suv_bw_factor(slice_ds), rel=1e-12)


def test_start_date_time_wins_over_start_time_and_spans_midnight(slice_ds):
    slice_ds.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartDateTime = "20250313235800"
    slice_ds.SeriesDate, slice_ds.SeriesTime = "20250314", "010000"
    assert suv_bw_factor(slice_ds) == pytest.approx(EXPECTED, rel=1e-12)


def test_admin_decay_correction_uses_the_injected_dose_itself(slice_ds):
    slice_ds.DecayCorrection = "ADMIN"
    assert suv_bw_factor(slice_ds) == pytest.approx(72500.0 / 245e6, rel=1e-12)


@pytest.mark.parametrize("change, message", [
    (lambda d: setattr(d, "Units", "CNTS"), "Units BQML"),
    (lambda d: setattr(d, "DecayCorrection", "NONE"), "DecayCorrection START or ADMIN"),
    (lambda d: delattr(d, "PatientWeight"), "PatientWeight"),
    (lambda d: setattr(d, "PatientWeight", "0"), "positive"),
])
def test_tags_an_suv_cannot_be_computed_from_are_named(slice_ds, change, message):
    change(slice_ds)
    with pytest.raises(BadInputError, match=message):
        suv_bw_factor(slice_ds)


def test_a_volume_in_suv_is_stored_as_the_sources_bq_per_ml(source, tmp_path):
    slices = dicom.read_source_series(source)
    bq = sitk.Cast(read_image(source), sitk.sitkFloat32)
    suv = bq * suv_bw_factor(slices[0])
    dicom.write_pet_series(suv, slices, tmp_path / "out", "test", "0.1", suv_bw=True)
    written = sitk.GetArrayFromImage(read_image(tmp_path / "out"))
    slope = max(float(d.RescaleSlope) for d in ds.read_slices(tmp_path / "out"))
    assert np.abs(written - sitk.GetArrayFromImage(bq)).max() <= slope  # quantisation plus float32 rounding
