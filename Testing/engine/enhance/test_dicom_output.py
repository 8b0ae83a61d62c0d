"""`m2diff enhance` from a DICOM PET series to a DICOM PET series: read back with SimpleITK and pydicom, the
geometry is the input's, the values the float output's within 16-bit quantisation, SUVbw unchanged, UIDs new."""

import numpy as np
import pytest
import SimpleITK as sitk
from pydicom.uid import UID

import dicom_series as ds
import enhance_subjects as es
import synthetic_brain as sb
from M2DiffSlicer.cli import main
from M2DiffSlicer.imaging.volumes import read_image


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """An oblique 4 mm FDG brain as a DICOM PET series, and a tiny untrained checkpoint."""
    root = tmp_path_factory.mktemp("dicom_enhance")
    pet = es.oblique_grid(sb.pet_like((2.0, 2.0, 2.0)), spacing_mm=(4.0, 4.0, 4.0), angle_deg=15.0)
    ds.write_series(pet, root / "pet")
    return {"pet": root / "pet", "weights": es.tiny_checkpoint(root / "tiny.pt")}


def _enhance(series, *args) -> int:
    return main(["enhance", "--pet", str(series["pet"]), "--weights", str(series["weights"]), "--steps", "1",
                 "--batch-size", "32", *map(str, args)])


@pytest.fixture(scope="module")
def both(series, tmp_path_factory):
    out = tmp_path_factory.mktemp("both")
    assert _enhance(series, "--out", out / "enhanced.nii.gz", "--out-dicom", out / "dicom") == 0
    return out


def test_the_series_lies_on_the_input_series_geometry(series, both):
    written, source = read_image(both / "dicom"), read_image(series["pet"])
    assert written.GetSize() == source.GetSize()
    for name in ("GetOrigin", "GetSpacing", "GetDirection"):
        np.testing.assert_allclose(getattr(written, name)(), getattr(source, name)(), atol=1e-6)


def test_the_values_are_the_float_output_within_16_bit_quantisation(both):
    written = sitk.GetArrayFromImage(read_image(both / "dicom"))
    expected = sitk.GetArrayFromImage(sitk.ReadImage(str(both / "enhanced.nii.gz")))
    slopes = [float(d.RescaleSlope) for d in ds.read_slices(both / "dicom")]
    for index, slope in enumerate(slopes):
        assert np.abs(written[index] - expected[index]).max() <= slope / 2 * 1.001, index
    assert np.abs(expected).max() > 0


def test_suvbw_from_the_copied_tags_equals_the_inputs_and_uids_are_new(series, both):
    originals, derived = ds.read_slices(series["pet"]), ds.read_slices(both / "dicom")
    by_position = {tuple(d.ImagePositionPatient): d for d in originals}
    old_uids = {d.SOPInstanceUID for d in originals} | {originals[0].SeriesInstanceUID}
    for item in derived:
        source = by_position[tuple(item.ImagePositionPatient)]
        assert ds.suv_bw_factor(item) == ds.suv_bw_factor(source)
        assert item.SOPInstanceUID not in old_uids and UID(item.SOPInstanceUID).is_valid
        assert item.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
        assert "sha256" in item.DerivationDescription
    assert len({d.SeriesInstanceUID for d in derived}) == 1 and derived[0].SeriesInstanceUID not in old_uids


def test_a_dicom_input_with_a_folder_as_out_writes_only_a_dicom_series(series, tmp_path, capsys):
    assert _enhance(series, "--out", tmp_path / "enhanced") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["enhanced"]
    assert len(list((tmp_path / "enhanced").iterdir())) == len(list(series["pet"].iterdir()))
    printed = capsys.readouterr().out
    assert f"dicom: {tmp_path / 'enhanced'}" in printed and "output:" not in printed


def test_out_dicom_alone_writes_only_the_series(series, tmp_path, capsys):
    assert _enhance(series, "--out-dicom", tmp_path / "dicom") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dicom"]
    assert len(list((tmp_path / "dicom").iterdir())) == len(list(series["pet"].iterdir()))


def test_neither_out_nor_out_dicom_is_a_clear_error(series, capsys):
    assert main(["enhance", "--pet", str(series["pet"])]) == 2
    assert "--out-dicom" in capsys.readouterr().err


def test_out_dicom_without_a_dicom_input_is_refused(series, tmp_path, capsys):
    nifti = tmp_path / "pet.nii.gz"
    sitk.WriteImage(read_image(series["pet"]), str(nifti))
    code = main(["enhance", "--pet", str(nifti), "--out", str(tmp_path / "e.nii.gz"),
                 "--out-dicom", str(tmp_path / "dicom")])
    assert code == 2 and "is not a DICOM series folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pet.nii.gz"]


def test_a_non_empty_dicom_destination_is_refused_before_the_enhance(series, tmp_path, capsys):
    (tmp_path / "dicom").mkdir()
    (tmp_path / "dicom" / "old.dcm").write_bytes(b"keep")
    assert _enhance(series, "--out", tmp_path / "e.nii.gz", "--out-dicom", tmp_path / "dicom") == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dicom"]
    assert [p.name for p in (tmp_path / "dicom").iterdir()] == ["old.dcm"]


def test_a_folder_with_two_series_is_refused(series, tmp_path, capsys):
    mixed = tmp_path / "mixed"
    ds.write_series(read_image(series["pet"]), mixed, prefix="a")
    ds.write_series(read_image(series["pet"]), mixed, prefix="b")
    code = main(["enhance", "--pet", str(mixed), "--out", str(tmp_path / "out")])
    assert code == 2 and "2 DICOM series" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_m2diff_dicom_writes_the_same_series_from_a_finished_volume(series, both, tmp_path, capsys):
    code = main(["dicom", "--volume", str(both / "enhanced.nii.gz"), "--source", str(series["pet"]),
                 "--out", str(tmp_path / "series"), "--weights", str(series["weights"])])
    assert code == 0 and f"dicom: {tmp_path / 'series'}" in capsys.readouterr().out
    again, first = ds.read_slices(tmp_path / "series"), ds.read_slices(both / "dicom")
    assert [d.pixel_array.tolist() for d in again] == [d.pixel_array.tolist() for d in first]
    assert {d.SeriesInstanceUID for d in again}.isdisjoint({d.SeriesInstanceUID for d in first})


def test_m2diff_dicom_stores_a_volume_in_suv_as_the_sources_bq_per_ml(series, both, tmp_path):
    from M2DiffSlicer.imaging.suv import suv_bw_factor

    factor = suv_bw_factor(ds.read_slices(series["pet"])[0])
    suv = sitk.ReadImage(str(both / "enhanced.nii.gz")) * factor
    sitk.WriteImage(suv, str(tmp_path / "suv.nii.gz"))
    assert main(["dicom", "--volume", str(tmp_path / "suv.nii.gz"), "--source", str(series["pet"]),
                 "--out", str(tmp_path / "series"), "--volume-units", "SUVbw"]) == 0
    written = sitk.GetArrayFromImage(read_image(tmp_path / "series"))
    expected = sitk.GetArrayFromImage(sitk.ReadImage(str(both / "enhanced.nii.gz")))
    slope = max(float(d.RescaleSlope) for d in ds.read_slices(tmp_path / "series"))
    assert np.abs(written - expected).max() <= slope
