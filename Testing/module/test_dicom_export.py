"""Export enhanced PET as DICOM, on real MRML: the Logic gathers the source series from the DICOM database, runs
the engine's writer in a PythonSlicer process, and the series it writes is the enhanced volume in Bq/ml."""

import os

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import slicer

import dicom_series
from M2DiffModuleLib import VolumeIO
from M2DiffModuleLib.DicomExport import DicomExportError, DicomExportLogic, seriesFolderName
from M2DiffModuleLib.EnhanceLogic import EnhanceLogic


def _phantom() -> sitk.Image:
    z, y, x = np.mgrid[0:6, 0:14, 0:16].astype(float)
    image = sitk.GetImageFromArray((3000.0 + 9000.0 * np.exp(-((x - 8) ** 2 + (y - 7) ** 2) / 20.0)).astype(np.float32))
    image.SetSpacing((2.5, 2.5, 3.0))
    image.SetOrigin((-20.0, -17.5, 30.0))
    return image


@pytest.fixture
def study(scene, tmp_path):
    """The PET as Slicer's DICOM module would load it (voxels from the series, DICOM.instanceUIDs set) and a
    fake DICOM database (uid -> file)."""
    files = dicom_series.write_series(_phantom(), tmp_path / "series")
    database = {pydicom.dcmread(path).SOPInstanceUID: str(path) for path in files}
    sitk.WriteImage(sitk.ReadImage([str(p) for p in files]), str(tmp_path / "pet.nii.gz"))
    pet = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "PET")
    VolumeIO.readVolumeInto(str(tmp_path / "pet.nii.gz"), pet)
    pet.SetAttribute("DICOM.instanceUIDs", " ".join(database))
    enhanced = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "PET enhanced")
    VolumeIO.readVolumeInto(str(tmp_path / "pet.nii.gz"), enhanced)
    slicer.util.arrayFromVolume(enhanced)[:] *= 0.5
    slicer.util.arrayFromVolumeModified(enhanced)
    logic = DicomExportLogic(environment=EnhanceLogic().workerEnvironment, fileForInstance=database.get)
    return {"pet": pet, "enhanced": enhanced, "logic": logic, "files": files, "out": tmp_path / "export"}


def _written(folder) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(sorted(str(p) for p in folder.iterdir())))


def _setUnits(volume, code: str, meaning: str) -> None:
    units = slicer.vtkCodedEntry()
    units.SetValueSchemeMeaning(code, "UCUM", meaning)
    volume.SetVoxelValueUnits(units)


def test_export_writes_the_enhanced_volume_as_a_derived_series(study):
    folder = study["logic"].exportOrRaise(study["enhanced"], study["pet"], str(study["out"]))
    assert folder == str(study["out"]) and len(os.listdir(folder)) == len(study["files"])
    expected = 0.5 * sitk.GetArrayFromImage(sitk.ReadImage([str(p) for p in study["files"]]))
    slope = max(float(pydicom.dcmread(p).RescaleSlope) for p in study["out"].iterdir())
    assert np.abs(_written(study["out"]) - expected).max() <= slope
    first = pydicom.dcmread(sorted(study["out"].iterdir())[0])
    assert list(first.ImageType) == ["DERIVED", "SECONDARY"] and "M2Diff" in first.SeriesDescription


def test_a_volume_shown_in_suv_is_stored_as_bq_per_ml(study):
    from M2DiffSlicer.imaging.suv import suv_bw_factor

    factor = suv_bw_factor(pydicom.dcmread(study["files"][0]))
    slicer.util.arrayFromVolume(study["enhanced"])[:] *= factor
    slicer.util.arrayFromVolumeModified(study["enhanced"])
    _setUnits(study["enhanced"], "{SUVbw}g/ml", "Standardized Uptake Value body weight")
    study["logic"].exportOrRaise(study["enhanced"], study["pet"], str(study["out"]))
    expected = 0.5 * sitk.GetArrayFromImage(sitk.ReadImage([str(p) for p in study["files"]]))
    slope = max(float(pydicom.dcmread(p).RescaleSlope) for p in study["out"].iterdir())
    assert np.abs(_written(study["out"]) - expected).max() <= slope


def test_a_pet_not_loaded_from_dicom_is_refused_with_what_to_do(study):
    study["pet"].RemoveAttribute("DICOM.instanceUIDs")
    with pytest.raises(ValueError, match="was not loaded from DICOM.*DICOM module"):
        study["logic"].exportOrRaise(study["enhanced"], study["pet"], str(study["out"]))
    assert not study["out"].exists()


def test_source_files_gone_from_the_database_are_refused(study):
    os.remove(study["files"][2])
    with pytest.raises(ValueError, match="1 of the 6 DICOM files"):
        study["logic"].exportOrRaise(study["enhanced"], study["pet"], str(study["out"]))


def test_units_a_pet_series_cannot_hold_are_refused(study):
    _setUnits(study["enhanced"], "mg/dl", "milligram per decilitre")
    with pytest.raises(ValueError, match="is in mg/dl"):
        study["logic"].exportOrRaise(study["enhanced"], study["pet"], str(study["out"]))


def test_the_engines_refusal_reaches_the_caller_and_the_folder_is_left_alone(study):
    study["out"].mkdir()
    (study["out"] / "mine.txt").write_text("keep")
    with pytest.raises(DicomExportError, match="not an empty folder"):
        study["logic"].exportOrRaise(study["enhanced"], study["pet"], str(study["out"]))
    assert os.listdir(study["out"]) == ["mine.txt"]



def test_the_module_logic_exports_through_the_worker_python(study, monkeypatch):
    from M2DiffModule import M2DiffModuleLogic

    database = {pydicom.dcmread(path).SOPInstanceUID: str(path) for path in study["files"]}
    monkeypatch.setattr(DicomExportLogic, "fileForInstance", lambda self, uid: database[uid])
    folder = M2DiffModuleLogic().exportDicomOrRaise(study["enhanced"], study["pet"], str(study["out"]))
    assert folder == str(study["out"]) and len(os.listdir(folder)) == len(study["files"])


def test_the_export_button_says_why_it_is_off(study):
    from M2DiffModule import M2DiffModuleLogic, exportDicomProblem

    parameterNode = M2DiffModuleLogic().getParameterNode()
    parameterNode.ldPet = study["pet"]
    assert "Enhance first" in exportDicomProblem(parameterNode)
    parameterNode.outputVolume = study["enhanced"]
    assert exportDicomProblem(parameterNode) is None
    study["pet"].RemoveAttribute("DICOM.instanceUIDs")
    assert "not loaded with the DICOM module" in exportDicomProblem(parameterNode)


@pytest.mark.parametrize("name, folder", [("PET enhanced", "PET_enhanced"), ("sub-01/ses:1 (M2Diff)", "sub-01_ses_1_M2Diff"),
                                          ("///", "M2Diff_enhanced")])
def test_series_folder_names_keep_only_safe_characters(name, folder):
    assert seriesFolderName(name) == folder
