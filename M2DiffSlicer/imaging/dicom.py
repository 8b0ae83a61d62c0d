"""Write an enhanced volume as a DICOM PET Image Storage series derived from the input PET series (pydicom).

The new series keeps the source's patient, study, frame-of-reference, PET series and PET isotope modules (so the
RadiopharmaceuticalInformationSequence, Units, DecayCorrection, SeriesDate/Time and the patient's weight, i.e.
everything an SUV calculation reads, are those of the acquisition), the source's slice geometry and per-slice
timing, and gets new Series/SOP Instance UIDs, ImageType DERIVED\\SECONDARY, 16-bit signed pixels with a per-slice
RescaleSlope and RescaleIntercept 0 (PET Image module), a SeriesDescription saying it is M2Diff-enhanced and for
research use, a DerivationDescription and a SourceImageSequence pointing at each source slice. Private tags,
window presets and pixel statistics of the source are not copied. General Equipment names this software; the
scanner moves to ContributingEquipmentSequence as the acquisition equipment.
"""

from __future__ import annotations

import datetime
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

from ..errors import BadInputError
from .suv import suv_bw_factor
from .volumes import dicom_series_files

PET_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.128"
# Attributes copied from each source slice, by module (PS3.3 A.21.3). Series-level values are equal across a
# series' slices, so copying per slice keeps both the series modules and each slice's own timing factors.
COPIED_KEYWORDS: tuple[str, ...] = (
    # SOP Common / character set (PatientName's encoding)
    "SpecificCharacterSet", "TimezoneOffsetFromUTC",
    # Patient, Patient Study
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex", "PatientAge",
    "PatientSize", "PatientWeight", "EthnicGroup", "PatientIdentityRemoved", "DeidentificationMethod",
    # General Study
    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
    "StudyDescription",
    # General Series (the acquisition's date and time stay: SUV decay correction starts at SeriesDate/Time)
    "Modality", "SeriesDate", "SeriesTime", "BodyPartExamined", "PatientPosition", "Laterality",
    "ProtocolName", "OperatorsName", "PerformingPhysicianName",
    # Frame of Reference
    "FrameOfReferenceUID", "PositionReferenceIndicator",
    # PET Series
    "Units", "CountsSource", "SeriesType", "ReprojectionMethod", "NumberOfRRIntervals", "NumberOfTimeSlots",
    "NumberOfTimeSlices", "NumberOfSlices", "CorrectedImage", "RandomsCorrectionMethod",
    "AttenuationCorrectionMethod", "ScatterCorrectionMethod", "DecayCorrection", "ReconstructionDiameter",
    "ConvolutionKernel", "ReconstructionMethod", "DetectorLinesOfResponseUsed", "AcquisitionStartCondition",
    "AcquisitionTerminationCondition", "FieldOfViewShape", "FieldOfViewDimensions", "GantryDetectorTilt",
    "TypeOfDetectorMotion", "CollimatorType", "AxialAcceptance", "AxialMash", "TransverseMash",
    "DetectorElementSize", "CoincidenceWindowWidth", "EnergyWindowRangeSequence", "SecondaryCountsType",
    # PET Isotope, NM/PET Patient Orientation
    "RadiopharmaceuticalInformationSequence", "InterventionDrugInformationSequence",
    "PatientOrientationCodeSequence", "PatientGantryRelationshipCodeSequence",
    # General Acquisition, PET Image timing and correction factors (per slice)
    "AcquisitionNumber", "AcquisitionDate", "AcquisitionTime", "AcquisitionDateTime", "FrameReferenceTime",
    "TriggerTime", "FrameTime", "ActualFrameDuration", "NominalInterval", "IntervalsAcquired",
    "IntervalsRejected", "PrimaryPromptsCountsAccumulated", "SliceSensitivityFactor", "DecayFactor",
    "DoseCalibrationFactor", "ScatterFractionFactor", "DeadTimeFactor", "ImageIndex",
    # Image Plane (checked against the volume; copied so the geometry is the source's to the digit)
    "PixelSpacing", "ImageOrientationPatient", "ImagePositionPatient", "SliceThickness", "SliceLocation",
)
SOURCE_EQUIPMENT_KEYWORDS = ("Manufacturer", "InstitutionName", "StationName", "ManufacturerModelName",
                             "DeviceSerialNumber", "SoftwareVersions")
SERIES_NUMBER_OFFSET = 1000
# 32766 rather than 32767: the DS-formatted slope may round down, which must not push the maximum past int16.
INT16_TOP = 32766
GEOMETRY_TOLERANCE_MM = 0.01


def read_source_series(folder: str | os.PathLike) -> list[Dataset]:
    """The slices of the one PET Image Storage series in `folder`, in the order SimpleITK stacks them.

    Raises BadInputError when the folder holds no series, several, unreadable files, or a series that is not
    single-frame PET Image Storage (a derived series needs a PET source for its PET modules).
    """
    slices = []
    for name in dicom_series_files(folder):
        try:
            dataset = pydicom.dcmread(name, stop_before_pixels=True)
        except (pydicom.errors.InvalidDicomError, OSError) as error:
            raise BadInputError(f"cannot read DICOM file {name}: {error}") from None
        if dataset.get("SOPClassUID") != PET_IMAGE_STORAGE or int(dataset.get("NumberOfFrames", 1) or 1) != 1:
            raise BadInputError(
                f"{name} is not a single-frame PET Image Storage instance (SOP class {dataset.get('SOPClassUID')}, "
                f"modality {dataset.get('Modality')}); DICOM output needs a PET series as its source")
        slices.append(dataset)
    return slices


def check_series_destination(folder: str | os.PathLike) -> Path:
    """`folder` as a Path if a new series can be written there (absent or empty, parent writable).

    Raises BadInputError otherwise, before any work is done.
    """
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise BadInputError(f"DICOM output folder {folder} already exists and is not an empty folder")
    parent = folder.parent
    if not parent.is_dir():
        raise BadInputError(f"cannot write the DICOM series: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadInputError(f"cannot write the DICOM series: folder {parent} is not writable")
    return folder


def write_pet_series(image: sitk.Image, source: Sequence[Dataset], folder: str | os.PathLike,
                     derivation: str, software_version: str, suv_bw: bool = False) -> list[Path]:
    """Write `image` (float, on the source series' grid) as a derived PET series into `folder`, atomically.

    :param image: the enhanced volume [z, y, x] on exactly the source's slices (same size, origin per slice,
        orientation and spacing within 0.01 mm).
    :param source: the source slices from read_source_series, in SimpleITK's order.
    :param folder: the new series' folder (absent or empty); written as a temporary sibling, then renamed.
    :param derivation: the DerivationDescription (what made the image: model, version, checksum).
    :param software_version: recorded in SoftwareVersions of the General Equipment module.
    :param suv_bw: the volume holds SUVbw (as Slicer shows a PET loaded with SUV), not the source's Bq/ml: each
        slice is divided by its SUVbw factor (imaging.suv) so the series stores Bq/ml like its source.
    :return: the written files, in slice order.
    :raises BadInputError: a grid mismatch or an unusable destination; nothing is left behind.
    """
    folder = check_series_destination(folder)
    _check_geometry(image, source)
    array = sitk.GetArrayFromImage(image).astype(np.float64)
    if suv_bw:
        array = np.stack([plane / suv_bw_factor(original) for plane, original in zip(array, source)])
    series_uid = generate_uid()
    now = datetime.datetime.now()
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        names = []
        for index, (plane, original) in enumerate(zip(array, source)):
            pixels, slope = encode_slice(plane)
            dataset = _derived_slice(original, pixels, slope, series_uid, now, derivation, software_version)
            name = f"{index + 1:04d}.dcm"
            dataset.save_as(staging / name, enforce_file_format=True)
            names.append(name)
        os.chmod(staging, 0o755)  # mkdtemp creates 0700; a series folder is an ordinary output
        if folder.exists():
            folder.rmdir()  # empty (checked above); os.replace cannot rename a folder onto an existing one on all OSes
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [folder / name for name in names]


def encode_slice(plane: np.ndarray) -> tuple[np.ndarray, float]:
    """int16 pixels and the slope (as written in DS form) such that pixels * slope ~ plane, error <= slope / 2."""
    peak = float(np.max(np.abs(plane))) if plane.size else 0.0
    slope = float(format_number_as_ds(peak / INT16_TOP)) if peak > 0 else 1.0
    pixels = np.clip(np.rint(plane / slope), -32768, 32767).astype(np.int16)
    return pixels, slope


def _check_geometry(image: sitk.Image, source: Sequence[Dataset]) -> None:
    columns, rows, depth = image.GetSize()
    first = source[0] if source else None
    if first is None or depth != len(source) or (rows, columns) != (int(first.Rows), int(first.Columns)):
        shape = "no slices" if first is None else f"{len(source)} slices of {first.Rows} x {first.Columns}"
        raise BadInputError(f"the enhanced volume ({depth} slices of {rows} x {columns}) does not match the "
                            f"source series ({shape})")
    direction = np.array(image.GetDirection()).reshape(3, 3)
    for index, dataset in enumerate(source):
        position = np.array(image.TransformIndexToPhysicalPoint((0, 0, index)))
        orientation = np.concatenate([direction[:, 0], direction[:, 1]])
        spacing = np.array(image.GetSpacing()[:2])
        checks = (np.array(dataset.ImagePositionPatient, float) - position,
                  np.array(dataset.ImageOrientationPatient, float) - orientation,
                  np.array(dataset.PixelSpacing, float)[::-1] - spacing)  # PixelSpacing is row\column
        if max(float(np.max(np.abs(c))) for c in checks) > GEOMETRY_TOLERANCE_MM:
            raise BadInputError(f"the enhanced volume's slice {index} does not lie on source slice "
                                f"{dataset.get('InstanceNumber')} (position, orientation or spacing differ)")


def _derived_slice(original: Dataset, pixels: np.ndarray, slope: float, series_uid: str,
                   now: datetime.datetime, derivation: str, software_version: str) -> Dataset:
    dataset = Dataset()
    for keyword in COPIED_KEYWORDS:
        if keyword in original:
            dataset[keyword] = original[keyword]
    _set_identity(dataset, original, series_uid, now)
    _set_equipment(dataset, original, software_version)
    dataset.DerivationDescription = derivation[:1024]
    dataset.SourceImageSequence = DicomSequence([_source_reference(original)])
    _set_pixels(dataset, pixels, slope)
    dataset.file_meta = _file_meta(dataset.SOPInstanceUID)
    dataset.preamble = b"\0" * 128
    return dataset


def _set_identity(dataset: Dataset, original: Dataset, series_uid: str, now: datetime.datetime) -> None:
    dataset.SOPClassUID = PET_IMAGE_STORAGE
    dataset.SOPInstanceUID = generate_uid()
    dataset.SeriesInstanceUID = series_uid
    dataset.SeriesNumber = int(original.get("SeriesNumber") or 0) + SERIES_NUMBER_OFFSET
    dataset.InstanceNumber = original.get("InstanceNumber")
    dataset.ImageType = ["DERIVED", "SECONDARY"]
    source = str(original.get("SeriesDescription", "")).strip()
    dataset.SeriesDescription = f"M2Diff enhanced RESEARCH USE {source}".strip()[:64]
    dataset.ContentDate = dataset.InstanceCreationDate = now.strftime("%Y%m%d")
    dataset.ContentTime = dataset.InstanceCreationTime = now.strftime("%H%M%S")


def _set_equipment(dataset: Dataset, original: Dataset, software_version: str) -> None:
    scanner = Dataset()
    for keyword in SOURCE_EQUIPMENT_KEYWORDS:
        if keyword in original:
            scanner[keyword] = original[keyword]
    scanner.PurposeOfReferenceCodeSequence = DicomSequence([_code("109101", "Acquisition Equipment")])
    dataset.ContributingEquipmentSequence = DicomSequence([scanner])
    dataset.Manufacturer = "M2Diff for 3D Slicer"
    dataset.ManufacturerModelName = "M2Diff PET enhancement (research use only)"
    dataset.SoftwareVersions = software_version


def _source_reference(original: Dataset) -> Dataset:
    reference = Dataset()
    reference.ReferencedSOPClassUID = original.SOPClassUID
    reference.ReferencedSOPInstanceUID = original.SOPInstanceUID
    reference.PurposeOfReferenceCodeSequence = DicomSequence(
        [_code("121322", "Source image for image processing operation")])
    return reference


def _code(value: str, meaning: str) -> Dataset:
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = value, "DCM", meaning
    return code


def _set_pixels(dataset: Dataset, pixels: np.ndarray, slope: float) -> None:
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.BitsAllocated = dataset.BitsStored = 16
    dataset.HighBit = 15
    dataset.PixelRepresentation = 1
    dataset.RescaleSlope = format_number_as_ds(slope)
    dataset.RescaleIntercept = "0"
    dataset.PixelData = pixels.astype("<i2").tobytes()


def _file_meta(instance_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = PET_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return meta
