"""Read and write volumes (NIfTI, NRRD, DICOM series folders) with SimpleITK; writes are atomic."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from nibabel.filebasedimages import ImageFileError
from nibabel.openers import ImageOpener
from nibabel.spatialimages import HeaderDataError

from ..atomic import atomic_path
from ..errors import BadInputError

# ITK's NIfTI reader turns NaN/Inf voxels into 0, so these files are checked on disk with nibabel.
NIFTI_SUFFIXES = (".nii", ".nii.gz", ".hdr", ".img", ".hdr.gz", ".img.gz")
NIFTI_CHECK_CHUNK_VOXELS = 1 << 22  # 16 MiB of float32 at a time: the check never holds a second volume


def read_image(path: str | os.PathLike) -> sitk.Image:
    """Read a volume file (any format SimpleITK reads) or a folder holding one DICOM series.

    Raises BadInputError for a missing path, an unreadable file, a folder with no single DICOM series, or a NIfTI
    file with NaN/Inf voxels (other formats keep them, and `validation.check_values` reports them).
    """
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"input not found: {path}")
    if path.is_dir():
        return _read_dicom_series(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise BadInputError(f"cannot read {path} as an image: {_first_line(error)}") from error
    if path.name.lower().endswith(NIFTI_SUFFIXES):
        nonfinite = count_nonfinite_nifti(path)
        if nonfinite:
            raise BadInputError(f"{path}: has {nonfinite} NaN/Inf voxels; fix or mask them before enhancing")
    return image


def count_nonfinite_nifti(path: str | os.PathLike) -> int:
    """Number of NaN/Inf voxels stored in a NIfTI (or Analyze) file, read from disk in chunks with nibabel.

    The stored values are checked before scaling: a finite scl_slope/scl_inter keeps finite values finite.
    """
    try:
        image = nib.load(str(path))
    except (ImageFileError, HeaderDataError) as error:
        raise BadInputError(f"cannot read {path} as NIfTI to check for NaN/Inf voxels: {error}") from error
    dtype = image.get_data_dtype()
    if dtype.kind not in "fc":  # integer voxels cannot be NaN/Inf
        return 0
    proxy = image.dataobj
    remaining, nonfinite = int(np.prod(proxy.shape)), 0
    with ImageOpener(proxy.file_like) as stream:
        stream.seek(proxy.offset)
        while remaining:
            count = min(remaining, NIFTI_CHECK_CHUNK_VOXELS)
            chunk = np.frombuffer(stream.read(count * dtype.itemsize), dtype=dtype)
            if chunk.size != count:
                raise BadInputError(f"{path}: the file ends before its last voxel (truncated?)")
            nonfinite += count - int(np.count_nonzero(np.isfinite(chunk)))
            remaining -= count
    return nonfinite


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
