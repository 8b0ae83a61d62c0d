"""Read and write volumes (NIfTI, NRRD, DICOM series folders) with SimpleITK; writes are atomic."""

from __future__ import annotations

import os
from pathlib import Path

import SimpleITK as sitk

from ..atomic import atomic_path
from ..errors import BadInputError


def read_image(path: str | os.PathLike) -> sitk.Image:
    """Read a volume file (any format SimpleITK reads) or a folder holding one DICOM series.

    Raises BadInputError for a missing path, an unreadable file or a folder with no single DICOM series.
    """
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"input not found: {path}")
    if path.is_dir():
        return _read_dicom_series(path)
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise BadInputError(f"cannot read {path} as an image: {_first_line(error)}") from error


def is_dicom_series_folder(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder in which GDCM finds at least one DICOM series."""
    return Path(path).is_dir() and bool(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path)))


def dicom_series_files(folder: str | os.PathLike) -> list[str]:
    """The files of the one DICOM series in `folder`, in GDCM's slice order (the order read_image stacks them).

    Raises BadInputError when the folder holds no series or more than one.
    """
    series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series_ids:
        raise BadInputError(f"no DICOM series found in folder {folder}")
    if len(series_ids) > 1:
        raise BadInputError(
            f"folder {folder} holds {len(series_ids)} DICOM series ({', '.join(series_ids)}); give one series' folder"
        )
    return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_ids[0]))


def _read_dicom_series(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(dicom_series_files(folder))
    try:
        return reader.Execute()
    except RuntimeError as error:
        raise BadInputError(f"cannot read the DICOM series in {folder}: {_first_line(error)}") from error


def write_image_atomic(image: sitk.Image, path: str | os.PathLike) -> Path:
    """Write `image` to `path` through a temporary file in the same folder, so no partial file is ever visible."""
    with atomic_path(path) as temp:
        sitk.WriteImage(image, str(temp), useCompression=True)
    return Path(path)


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
