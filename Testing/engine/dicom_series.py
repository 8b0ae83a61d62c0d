"""Synthetic DICOM PET series (pydicom) with the tags a scanner writes and SUV needs, and the SUVbw factor.

The series is an oblique, anisotropic stack of PET Image Storage slices in Bq/ml (Units BQML, DecayCorrection
START, per-slice RescaleSlope), F-18 FDG injected 62 minutes before the series start, patient weight 72.5 kg.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

PET_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.128"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
F18_HALF_LIFE_S = 6586.2


def _radiopharmaceutical() -> Dataset:
    item = Dataset()
    item.Radiopharmaceutical = "Fluorodeoxyglucose"
    item.RadiopharmaceuticalStartTime = "095800.000000"
    item.RadiopharmaceuticalStartDateTime = "20250314095800.000000"
    item.RadionuclideTotalDose = "245000000.0"
    item.RadionuclideHalfLife = str(F18_HALF_LIFE_S)
    item.RadionuclidePositronFraction = "0.9673"
    nuclide = Dataset()
    nuclide.CodeValue, nuclide.CodingSchemeDesignator, nuclide.CodeMeaning = "C-111A1", "SRT", "^18^Fluorine"
    item.RadionuclideCodeSequence = Sequence([nuclide])
    return item


def _series_template(study_uid: str, series_uid: str, frame_uid: str, sop_class: str) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Doe^Jane", "M2D-0001", "19580302", "F"
    ds.PatientWeight, ds.PatientSize, ds.PatientAge = "72.5", "1.68", "067Y"
    ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime, ds.StudyID = study_uid, "20250314", "094500", "1"
    ds.AccessionNumber, ds.ReferringPhysicianName, ds.StudyDescription = "A123", "", "PET Brain FDG"
    ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = series_uid, 3, "PET Brain 1% dose"
    ds.Modality = "PT" if sop_class == PET_IMAGE_STORAGE else "CT"
    ds.SeriesDate, ds.SeriesTime = "20250314", "110000.000000"
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = frame_uid, ""
    ds.Manufacturer, ds.ManufacturerModelName, ds.SoftwareVersions = "SIEMENS", "Biograph128_Vision", "VG80"
    ds.Units, ds.CountsSource, ds.SeriesType = "BQML", "EMISSION", ["STATIC", "IMAGE"]
    ds.CorrectedImage = ["NORM", "DTIM", "ATTN", "SCAT", "DECY", "RAN"]
    ds.DecayCorrection, ds.RandomsCorrectionMethod, ds.ReconstructionMethod = "START", "DLYD", "OSEM3D 8i5s"
    ds.CollimatorType, ds.AttenuationCorrectionMethod = "NONE", "measured"
    ds.RadiopharmaceuticalInformationSequence = Sequence([_radiopharmaceutical()])
    ds.AcquisitionDate, ds.AcquisitionTime = "20250314", "110000.000000"
    ds.ActualFrameDuration, ds.FrameReferenceTime = 600000, "300000.0"
    ds.DecayFactor, ds.DoseCalibrationFactor = "1.0325", "1.0"
    ds.add_new(0x00091001, "LO", "vendor private value")  # private tags must not be copied
    ds.WindowCenter, ds.WindowWidth = "5000", "10000"  # nor the source's display presets
    return ds


def _slice(template: Dataset, image: sitk.Image, index: int, stored: np.ndarray, slope: float) -> Dataset:
    ds = Dataset()
    ds.update(template)
    ds.SOPInstanceUID = generate_uid()
    ds.InstanceNumber = ds.ImageIndex = index + 1
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    direction = np.array(image.GetDirection()).reshape(3, 3)
    ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*direction[:, 0], *direction[:, 1])]
    ds.ImagePositionPatient = [f"{v:.6f}" for v in image.TransformIndexToPhysicalPoint((0, 0, index))]
    ds.PixelSpacing = [f"{image.GetSpacing()[1]:.6f}", f"{image.GetSpacing()[0]:.6f}"]
    ds.SliceThickness = f"{image.GetSpacing()[2]:.6f}"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = f"{slope:.10g}", "0"
    ds.PixelData = stored.astype("<u2").tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def write_series(image: sitk.Image, folder: Path, sop_class: str = PET_IMAGE_STORAGE,
                 prefix: str = "slice") -> list[Path]:
    """Write `image` (Bq/ml, any orientation) as one new DICOM series in `folder` (files `<prefix>NNN.dcm`);
    returns the files in slice order."""
    folder.mkdir(parents=True, exist_ok=True)
    template = _series_template(generate_uid(), generate_uid(), generate_uid(), sop_class)
    paths = []
    for index, plane in enumerate(sitk.GetArrayFromImage(image).astype(np.float64)):
        slope = max(float(plane.max()), 1e-6) / 65535.0
        stored = np.clip(np.rint(plane / slope), 0, 65535)
        path = folder / f"{prefix}{index:03d}.dcm"
        _slice(template, image, index, stored, slope).save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _seconds(dicom_time: str) -> float:
    moment = datetime.datetime.strptime(dicom_time.split(".")[0], "%H%M%S")
    return moment.hour * 3600 + moment.minute * 60 + moment.second + float("0." + (dicom_time.split(".") + ["0"])[1])


def suv_bw_factor(dataset: Dataset) -> float:
    """Bq/ml -> SUVbw for a slice with DecayCorrection START (QIBA vendor-neutral recipe, scan time = SeriesTime)."""
    assert dataset.Units == "BQML" and dataset.DecayCorrection == "START"
    drug = dataset.RadiopharmaceuticalInformationSequence[0]
    elapsed = _seconds(dataset.SeriesTime) - _seconds(drug.RadiopharmaceuticalStartTime)
    dose_at_scan = float(drug.RadionuclideTotalDose) * 2.0 ** (-elapsed / float(drug.RadionuclideHalfLife))
    return float(dataset.PatientWeight) * 1000.0 / dose_at_scan


def read_slices(folder: Path) -> list[Dataset]:
    """Every DICOM file in `folder` (pydicom, with pixels), in file-name order."""
    return [pydicom.dcmread(path) for path in sorted(folder.iterdir())]
